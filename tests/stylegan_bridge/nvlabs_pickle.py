"""Test helper: write pickles with the structure of NVlabs StyleGAN3 network pickles, around our Generator.

No NVlabs code is used. A pure-Python pickler emits the globals NVlabs pickles name
(`torch_utils.persistence._reconstruct_persistent_obj`, `dnnlib.util.EasyDict`) without importing them:
each module becomes `_reconstruct_persistent_obj(meta)` with meta = {type, version 6, module_src,
class_name, state}, where state is the module's torch bookkeeping plus NVlabs-like numpy attributes,
`_init_args` and `_init_kwargs` (EasyDict). `module_src` is source text that would create a file if it
were ever exec'd, so a test can check that loading ran none of it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from stylegan_bridge.networks import Generator

# torch's nn.Module bookkeeping that NVlabs' state carries (attribute names of nn.Module.__dict__).
_TORCH_KEYS_PREFIX = "_"


class GlobalRef:
    """A reference `module.name` written as a pickle GLOBAL, without importing it."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle requires reduce callables to be callable
        raise RuntimeError("GlobalRef is only written, never called")


class EasyDictRef(dict):
    """A dict that pickles as dnnlib.util.EasyDict (NEWOBJ + SETITEMS, as pickle writes dict subclasses)."""


class MaliciousCall:
    """Pickles as `module.name(*args)`: e.g. os.system("touch ...")."""

    def __init__(self, module: str, name: str, *args: Any) -> None:
        self.ref, self.args = GlobalRef(module, name), args


def pwn_source(marker: Path) -> str:
    """Module source that would create `marker` if it were exec'd (it must never be)."""
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\nclass Generator: pass\n"


class NVlabsStylePickler(pickle._Pickler):
    """Pure-Python pickler that writes our modules the way NVlabs' persistence module does."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: Any, protocol: int, module_src: str, numpy_core: str = "numpy._core") -> None:
        super().__init__(file, protocol=protocol)
        self.module_src = module_src
        self.numpy_core = numpy_core
        self._refs: dict[tuple[str, str], GlobalRef] = {}

    def ref(self, module: str, name: str) -> GlobalRef:
        key = (module, name)
        if key not in self._refs:
            self._refs[key] = GlobalRef(module, name)
        return self._refs[key]

    def save_global_ref(self, obj: GlobalRef) -> None:
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def save_easydict(self, obj: EasyDictRef) -> None:
        self.save(self.ref("dnnlib.util", "EasyDict"))
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self._batch_setitems(iter(obj.items()))

    dispatch[GlobalRef] = save_global_ref
    dispatch[EasyDictRef] = save_easydict

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, MaliciousCall):
            return (obj.ref, obj.args)
        if isinstance(obj, nn.Module):
            meta = {
                "type": "class",
                "version": 6,
                "module_src": self.module_src,
                "class_name": type(obj).__name__,
                "state": module_state(obj),
            }
            return (self.ref("torch_utils.persistence", "_reconstruct_persistent_obj"), (meta,), None)
        if isinstance(obj, np.ndarray | np.generic) and self.numpy_core != "numpy._core":
            # numpy 1 names its pickling helpers under numpy.core.
            func, *rest = obj.__reduce_ex__(self.proto)
            module = func.__module__.replace("numpy._core", self.numpy_core)
            return (self.ref(module, func.__name__), *rest)
        return NotImplemented


def module_state(module: nn.Module) -> dict[str, Any]:
    """The `state` NVlabs stores for a module: torch bookkeeping, numpy attributes, init kwargs."""
    state = {k: v for k, v in module.__dict__.items() if k.startswith(_TORCH_KEYS_PREFIX) or k == "training"}
    kwargs: dict[str, Any] = {}
    if isinstance(module, Generator):
        kwargs = module.config.to_init_kwargs()
        kwargs["mapping_kwargs"] = EasyDictRef(kwargs["mapping_kwargs"])
    elif hasattr(module, "spec"):
        spec = module.spec
        # NVlabs layers keep sizes as numpy arrays and rates/cutoffs as numpy floats.
        state["in_size"] = np.broadcast_to(np.asarray(spec.in_size), [2]).copy()
        state["out_size"] = np.broadcast_to(np.asarray(spec.out_size), [2]).copy()
        state["in_cutoff"] = np.float64(spec.in_cutoff)
        state["is_torgb"] = spec.is_torgb
        kwargs = {
            "w_dim": module.w_dim,
            "in_channels": spec.in_channels,
            "in_cutoff": np.float64(spec.in_cutoff),
        }
    state["_init_args"] = ()
    state["_init_kwargs"] = EasyDictRef(kwargs)
    return state


def write_nvlabs_pickle(
    path: Path,
    G: Generator,
    *,
    keys: tuple[str, ...] = ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs"),
    protocol: int = 4,
    numpy_core: str = "numpy._core",
    module_src: str = "class Generator: pass\n",
) -> Path:
    """Write a training-snapshot-like pickle: G_ema/G are G, D a stand-in module, the rest plain values."""
    G = G.eval().requires_grad_(False)
    snapshot: dict[str, Any] = {}
    for key in keys:
        if key in ("G", "G_ema"):
            snapshot[key] = G
        elif key == "D":
            snapshot[key] = nn.Sequential(nn.Linear(4, 1)).requires_grad_(False)
        elif key == "augment_pipe":
            snapshot[key] = None
        else:
            snapshot[key] = EasyDictRef(path="ffhq.zip", resolution=G.img_resolution, xflip=True)
    with open(path, "wb") as handle:
        NVlabsStylePickler(handle, protocol, module_src, numpy_core).dump(snapshot)
    return path


def write_malicious_pickle(path: Path, module: str, name: str, *args: Any, protocol: int = 4) -> Path:
    """A pickle whose loading calls module.name(*args) (inside an otherwise NVlabs-like dict)."""
    with open(path, "wb") as handle:
        NVlabsStylePickler(handle, protocol, "").dump({"G_ema": MaliciousCall(module, name, *args)})
    return path
