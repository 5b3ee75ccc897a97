"""Test helper: NVlabs-structured pickles (the package's writer) and malicious ones.

`stylegan_bridge.pickle_export` writes the regular ones; this adds a pickler that can also write a call
of any global (`os.system(...)`) and module source that would create a file if it were ever exec'd, so
tests can check that loading runs none of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stylegan_bridge.pickle_export import GlobalRef, NVlabsStylePickler, write_nvlabs_pickle

__all__ = ["pwn_source", "write_malicious_pickle", "write_nvlabs_pickle"]


class MaliciousCall:
    """Pickles as `module.name(*args)`: e.g. os.system("touch ...")."""

    def __init__(self, module: str, name: str, *args: Any) -> None:
        self.ref, self.args = GlobalRef(module, name), args


class MaliciousPickler(NVlabsStylePickler):
    """The NVlabs-style pickler that also writes `MaliciousCall`s."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, MaliciousCall):
            return (obj.ref, obj.args)
        return super().reducer_override(obj)


def pwn_source(marker: Path) -> str:
    """Module source that would create `marker` if it were exec'd (it must never be)."""
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\nclass Generator: pass\n"


def write_malicious_pickle(path: Path, module: str, name: str, *args: Any, protocol: int = 4) -> Path:
    """A pickle whose loading calls module.name(*args) (inside an otherwise NVlabs-like dict)."""
    with open(path, "wb") as handle:
        MaliciousPickler(handle, protocol, "").dump({"G_ema": MaliciousCall(module, name, *args)})
    return path
