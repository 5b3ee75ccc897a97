"""Training checkpoints: slider factors, optimizer, every RNG, step, loss log and the task's own state.

One file per process (`<out stem>.ckpt` beside the output for the first), written atomically with
`torch.save` and read back with `weights_only=True` (so it holds only tensors, numbers, strings, lists
and dicts: RNG states are converted accordingly).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pair_datasets.atomic import atomic_save

CHECKPOINT_FORMAT = 1


def checkpoint_path(out: str | Path, process_index: int = 0) -> Path:
    """Where the checkpoint of a run writing `out` lives: `<out stem>.ckpt` in the same folder.

    Under `accelerate launch`, process k > 0 keeps its own `<out stem>.rank<k>.ckpt`: every process draws
    its own data, so its RNG and task state (trajectory pool, epoch order) are its own.
    """
    out = Path(out)
    return out.with_name(out.stem + (f".rank{process_index}" if process_index else "") + ".ckpt")


def capture_rng(generator: torch.Generator) -> dict:
    """Every random state a step may consume: torch (CPU, CUDA), numpy, python, and our generator."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "generator": generator.get_state(),
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, generator: torch.Generator) -> None:
    """Put back the random states recorded by `capture_rng`."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["cached"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` (see `trainer`) atomically: a temp file in the same folder, then os.replace."""
    path = Path(path)
    document = {"format": CHECKPOINT_FORMAT, **state}
    try:
        atomic_save(path, lambda tmp: torch.save(document, tmp))
    except RuntimeError as error:  # torch's writer reports a full disk without the file's name
        raise OSError(f"{path}: could not write the checkpoint, the earlier one is kept ({error})") from error


def differences(saved: Any, current: Any, where: str = "", limit: int = 6) -> list[str]:
    """`name: A in the checkpoint, B now` for each setting that differs (nested by `a.b[0].c` paths)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in list(saved) + [k for k in current if k not in saved]:
            name = f"{where}.{key}" if where else str(key)
            found += differences(saved.get(key), current.get(key), name, limit - len(found))
        return found[:limit]
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)) and len(saved) == len(current):
        found = []
        for index, (old, new) in enumerate(zip(saved, current)):
            found += differences(old, new, f"{where}[{index}]", limit - len(found))
        return found[:limit]
    return (
        [] if saved == current or limit <= 0 else [f"{where}: {saved!r} in the checkpoint, {current!r} now"]
    )


def refuse_other_settings(checkpoint: str, what: str, saved: Any, current: Any) -> None:
    """ValueError naming each setting that differs between the `checkpoint` and this run."""
    found = differences(saved, current)
    if found:
        raise ValueError(
            f"--resume: {checkpoint} was written with other {what}: {'; '.join(found)}. Resume with the "
            "checkpoint's settings, or start afresh with --force"
        )


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by `save_checkpoint` (safe: weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which one
        raise ValueError(f"{path}: not a readable training checkpoint ({error})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a training checkpoint of this version")
    return state
