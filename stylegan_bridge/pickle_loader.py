"""Load NVlabs StyleGAN3 pickles without running any code from them.

An NVlabs network pickle stores each module as a call `torch_utils.persistence._reconstruct_persistent_obj(meta)`
where `meta = {type, version, module_src, class_name, state}`; NVlabs' loader `exec`s `module_src`. Here a
restricted unpickler resolves an explicit allow-list of globals only: the persistence call becomes a
`PersistentObject` that keeps `meta` and never looks at `module_src`; tensors and numpy arrays are rebuilt
by their data-only constructors. Any other global is refused before it is resolved, so nothing it names
runs. The generator is then rebuilt from `_init_kwargs` and its flat state dict (walked from `_parameters`,
`_buffers`, `_modules`) is loaded with strict=True into our own `Generator`.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.networks import Generator

GENERATOR_KEYS = ("G_ema", "G")  # preferred first: G_ema holds the averaged weights used for sampling


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (raised before anything is imported)."""


class PersistentObject:
    """What `_reconstruct_persistent_obj(meta)` stands for: the class name and its pickled state, inert."""

    def __init__(self, meta: Any) -> None:
        if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
            raise pickle.UnpicklingError("persistent object without a state dict")
        self.class_name = str(meta.get("class_name"))
        self.version = meta.get("version")
        self.state: dict[str, Any] = meta["state"]
        # meta["module_src"] is deliberately dropped unread: it is the code NVlabs would exec.

    def __setstate__(self, state: Any) -> None:
        # A BUILD opcode aimed at this object would overwrite the checked `state` with anything.
        raise pickle.UnpicklingError("refused: pickle rebuilds a persistent object's state")

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name})"


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    # A function, not the class: pickle's NEWOBJ (`cls.__new__(cls)` + BUILD) on the class would make a
    # PersistentObject without the checks of __init__; on a function it fails.
    return PersistentObject(meta)


class _EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access); has a __dict__ for BUILD."""


def _load_storage(data: bytes) -> Any:
    # Each storage is a nested legacy torch.save blob; torch's own hook would load it with weights_only=False.
    if not isinstance(data, bytes | bytearray):
        raise pickle.UnpicklingError("tensor storage is not bytes")
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol 2 writes bytes as _codecs.encode(str, "latin1"); allow exactly that.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin1 byte strings")
    return codecs.encode(text, "latin1")


def _frombuffer(buf: Any, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    # What numpy's own protocol-5 hook does, with the argument types checked first.
    if not isinstance(dtype, np.dtype) or order not in ("C", "F") or not isinstance(shape, tuple):
        raise pickle.UnpicklingError("malformed numpy array in pickle")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _allowed() -> dict[tuple[str, str], Callable[..., Any] | type]:
    table: dict[tuple[str, str], Callable[..., Any] | type] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("torch.storage", "_load_from_bytes"): _load_storage,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("_codecs", "encode"): _codecs_encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    # numpy 2 writes numpy._core.multiarray, numpy 1 numpy.core.multiarray; both resolve to the same
    # functions (imported from numpy._core, never importing the deprecated alias).
    from numpy._core import multiarray

    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{core}.numeric", "_frombuffer")] = _frombuffer  # protocol 5 arrays
    # numpy 2 may name a dtype by its class (numpy.dtypes.Float64DType); those classes are data only.
    import numpy.dtypes

    for name in dir(numpy.dtypes):
        if name.endswith("DType"):
            table[("numpy.dtypes", name)] = getattr(numpy.dtypes, name)
    return table


_ALLOWED = _allowed()


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals an NVlabs network pickle needs (see module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 writes Python 2 names (__builtin__.set); map them as pickle's own find_class does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"refused: pickle asks for {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused: pickle uses persistent ids")


def read_pickle(path: str | Path) -> Any:
    """Unpickle `path` with `SafeUnpickler`; ValueError naming the file when it is refused or unreadable."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            return SafeUnpickler(handle).load()
        except RefusedGlobal as error:
            raise ValueError(f"{path}: {error} (nothing from the file was run)") from None
        except (
            pickle.UnpicklingError,
            EOFError,
            AttributeError,
            ImportError,
            IndexError,
            KeyError,
            TypeError,
            ValueError,
            RuntimeError,
            AssertionError,  # torch's legacy storage reader asserts on corrupt storage keys
            OverflowError,  # a corrupt length field
            MemoryError,
        ) as error:
            raise ValueError(
                f"{path}: not a readable network pickle (truncated or not a pickle?): {type(error).__name__}: {error}"
            ) from None


def flat_state_dict(obj: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """Walk `_parameters`, `_buffers` and `_modules` of a pickled module into a flat, dotted state dict."""
    state = obj.state
    out: dict[str, torch.Tensor] = {}
    non_persistent = set(state.get("_non_persistent_buffers_set") or ())
    for kind in ("_parameters", "_buffers", "_modules"):
        if not isinstance(state.get(kind) or {}, dict):
            raise ValueError(f"module {prefix or '<root>'}: {kind} is not a dict")
    for kind in ("_parameters", "_buffers"):
        for name, tensor in (state.get(kind) or {}).items():
            if tensor is None or (kind == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"{prefix}{name} is a {type(tensor).__name__}, not a tensor")
            out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise ValueError(
                f"module {prefix}{name} is a {type(child).__name__}, not a pickled network module"
            )
        out.update(flat_state_dict(child, prefix=f"{prefix}{name}."))
    return out


def _plain(value: Any) -> Any:
    """EasyDicts to dicts, recursively (init kwargs nest them)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def generator_from_pickle_object(data: Any, source: str) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """(config, flat state dict) of the generator in an unpickled NVlabs file (`G_ema`, else `G`)."""
    if isinstance(data, PersistentObject):
        data = {"G": data}  # a bare module pickled on its own
    if not isinstance(data, dict):
        raise ValueError(
            f"{source}: expected a dict of networks (G, D, G_ema, ...), found {type(data).__name__}"
        )
    key = next((k for k in GENERATOR_KEYS if k in data), None)
    if key is None:
        found = ", ".join(map(str, data)) or "nothing"
        raise ValueError(f"{source}: no generator in the pickle (looked for G_ema, G; found {found})")
    module = data[key]
    if not isinstance(module, PersistentObject):
        raise ValueError(f"{source}: {key} is a {type(module).__name__}, not an NVlabs network module")
    if module.version != 6:
        raise ValueError(
            f"{source}: {key} was written by persistence version {module.version!r}; only 6 is known"
        )
    if module.state.get("_init_args"):
        raise ValueError(f"{source}: {key} has positional init args; expected keyword arguments only")
    kwargs = _plain(module.state.get("_init_kwargs") or {})
    config = GeneratorConfig.from_init_kwargs(kwargs, source=f"{source}: {key} init kwargs")
    try:
        state = flat_state_dict(module)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{source}: {key}: {error}") from None
    if "synthesis.input.freqs" not in state:
        raise ValueError(
            f"{source}: {key} ({module.class_name}) is not a StyleGAN3 generator (no synthesis.input)"
        )
    return config, state


def build_generator(config: GeneratorConfig, state: dict[str, torch.Tensor], source: str) -> Generator:
    """Our Generator for `config` with `state` loaded strictly; ValueError naming `source` on a mismatch."""
    G = Generator(config)
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(
            f"{source}: weights do not match the generator its config describes: {error}"
        ) from None
    return G.eval().requires_grad_(False)


def load_nvlabs_pickle(path: str | Path) -> Generator:
    """Our Generator with the weights of an NVlabs StyleGAN3 .pkl (G_ema, else G); nothing in the file runs."""
    data = read_pickle(path)
    config, state = generator_from_pickle_object(data, str(path))
    return build_generator(config, state, str(path))
