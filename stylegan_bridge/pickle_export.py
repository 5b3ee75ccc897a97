"""Write our Generator as a pickle with the structure of an NVlabs StyleGAN3 network pickle.

So that a generator of ours (the toy StyleGAN3, or any exported one) goes through exactly the `.pkl`
path that FFHQ snapshots take (`load_nvlabs_pickle`, which runs nothing stored in the file). No NVlabs
code is used or embedded: a pure-Python pickler emits the globals NVlabs pickles name
(`torch_utils.persistence._reconstruct_persistent_obj`, `dnnlib.util.EasyDict`) without importing them;
each module becomes `_reconstruct_persistent_obj(meta)` with meta = {type, version 6, module_src,
class_name, state}, where state is the module's torch bookkeeping plus NVlabs-like numpy attributes,
`_init_args` and `_init_kwargs`. `module_src` is a comment, not NVlabs source, so NVlabs' own loader
(which would execute it) cannot rebuild these classes; ours reads the weights and the config.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from pair_datasets.atomic import atomic_write
from stylegan_bridge.networks import Generator

SNAPSHOT_KEYS = ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs")
MODULE_SRC = (
    "# Written by concept-transfer (stylegan_bridge.pickle_export): the structure of an NVlabs StyleGAN3\n"
    "# pickle around weights of its own implementation. No NVlabs code; load it with concept-transfer.\n"
)


class GlobalRef:
    """A reference `module.name` written as a pickle GLOBAL, without importing it."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle requires reduce callables to be callable
        raise RuntimeError("GlobalRef is only written, never called")


class EasyDictRef(dict):
    """A dict that pickles as dnnlib.util.EasyDict (NEWOBJ + SETITEMS, as pickle writes dict subclasses)."""


class NVlabsStylePickler(pickle._Pickler):
    """Pure-Python pickler that writes our modules the way NVlabs' persistence module does."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: Any, protocol: int, module_src: str, numpy_core: str = "numpy._core") -> None:
        super().__init__(file, protocol=protocol)
        self.module_src = module_src
        self.numpy_core = numpy_core
        self._refs: dict[tuple[str, str], GlobalRef] = {}

    def ref(self, module: str, name: str) -> GlobalRef:
        """The one GlobalRef per (module, name), so pickle's memo refers back to it."""
        key = (module, name)
        if key not in self._refs:
            self._refs[key] = GlobalRef(module, name)
        return self._refs[key]

    def save_global_ref(self, obj: GlobalRef) -> None:
        """GLOBAL (protocol < 4) or STACK_GLOBAL, memoized."""
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def save_easydict(self, obj: EasyDictRef) -> None:
        """dnnlib.util.EasyDict() followed by its items."""
        self.save(self.ref("dnnlib.util", "EasyDict"))
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self._batch_setitems(iter(obj.items()))

    dispatch[GlobalRef] = save_global_ref
    dispatch[EasyDictRef] = save_easydict

    def reducer_override(self, obj: Any) -> Any:
        """Modules as NVlabs persistent objects; numpy helpers under `numpy_core` (numpy 1 vs 2 names)."""
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
            func, *rest = obj.__reduce_ex__(self.proto)
            module = func.__module__.replace("numpy._core", self.numpy_core)
            return (self.ref(module, func.__name__), *rest)
        return NotImplemented


def module_state(module: nn.Module) -> dict[str, Any]:
    """The `state` NVlabs stores for a module: torch bookkeeping, numpy attributes, init kwargs."""
    state = {k: v for k, v in module.__dict__.items() if k.startswith("_") or k == "training"}
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


def snapshot_dict(G: Generator, keys: tuple[str, ...] = SNAPSHOT_KEYS) -> dict[str, Any]:
    """A training-snapshot-like dict: G and G_ema are G, D a small stand-in, the rest plain values."""
    snapshot: dict[str, Any] = {}
    for key in keys:
        if key in ("G", "G_ema"):
            snapshot[key] = G
        elif key == "D":
            snapshot[key] = nn.Sequential(nn.Linear(4, 1)).requires_grad_(False)
        elif key == "augment_pipe":
            snapshot[key] = None
        else:
            snapshot[key] = EasyDictRef(path="dataset.zip", resolution=G.img_resolution, xflip=True)
    return snapshot


def write_nvlabs_pickle(
    path: str | Path,
    G: Generator,
    *,
    keys: tuple[str, ...] = SNAPSHOT_KEYS,
    protocol: int = 4,
    numpy_core: str = "numpy._core",
    module_src: str = MODULE_SRC,
) -> Path:
    """Write G (on the CPU, eval mode) as an NVlabs-structured snapshot pickle, atomically; returns the path."""
    if not isinstance(G, Generator):
        raise ValueError(f"can only write our Generator as a pickle, got {type(G).__name__}")
    G = copy.deepcopy(G).to("cpu").eval().requires_grad_(False)  # the caller's module stays as it is
    with atomic_write(Path(path), "wb") as handle:
        NVlabsStylePickler(handle, protocol, module_src, numpy_core).dump(snapshot_dict(G, keys))
    return Path(path)
