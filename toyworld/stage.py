"""One resumable training stage of the toy-world build: the skeleton the VAE, decoder, probe, UNet and GAN
fit all run through.

A trainer says what differs (the module and its optimiser, the learning-rate factor of each step, the
batch of a step and the loss of a batch); the stage owns the rest, top to bottom: resume from its
checkpoint, the wall-time timer, the warm-up schedule, progress, prefetching, periodic checkpoints (every
so many steps or seconds), a cap on this run's minutes, an optional per-step log, and the done report.
Every batch is a pure function of its step, so a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from pair_datasets.atomic import atomic_write_text
from toyworld.training import (
    EMA,
    StageTimer,
    device_report,
    load_checkpoint,
    optimizer_step,
    prefetch,
    save_checkpoint,
    warmup_cosine,
)

T = TypeVar("T")
Loss = Callable[[int, Any], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class Stage:
    """What one trainer trains and how the stage checkpoints it.

    `lr_factor(step)` multiplies the optimiser's learning rate at `step`; `clip` clips the gradient norm
    to 1 over the optimised parameters; `constrain()` runs after each update, before the EMA (the GAN
    fit's structure masks); `on_step(done)` runs after it with the number of steps done. `extra` is saved
    with each checkpoint.
    """

    name: str
    checkpoint: Path
    steps: int
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    lr_factor: Callable[[int], float]
    device: torch.device
    ema: EMA | None = None
    clip: bool = False
    constrain: Callable[[], None] | None = None
    on_step: Callable[[int], None] | None = None
    every_steps: int | None = 50
    every_s: float | None = None
    minutes: float | None = None
    log: Path | None = None
    extra: dict = field(default_factory=dict)


def warmup_cosine_factor(steps: int, warmup: int) -> Callable[[int], float]:
    """`warmup_cosine` of a run of `steps` steps, as a function of the step."""
    return partial(warmup_cosine, total=steps, warmup=warmup)


def stage_done(work: Path, name: str) -> bool:
    """Whether stage `name` has finished under `work` (its done report exists)."""
    return done_path(work, name).exists()


def done_path(work: Path, name: str) -> Path:
    """The stage's done report, `work/<name>_done.json`."""
    return work / f"{name}_done.json"


def write_done(work: Path, name: str, report: dict, device: torch.device) -> None:
    """Write stage `name`'s done report (its figures, the device and the CPU threads) atomically."""
    atomic_write_text(
        done_path(work, name), json.dumps({**report, **device_report(device)}, indent=2, default=str)
    )


def train_stage(stage: Stage, batch_of: Callable[[int], T], loss_of: Loss) -> float:
    """Resume `stage`, train it to its last step (or its time cap), checkpointing; returns its wall seconds.

    `batch_of(step)` must be a pure function of the step (it may run early, in a thread, on a GPU run);
    `loss_of(step, batch)` returns the loss to minimise and figures to show and log.
    """
    start, timer = _resume(stage)
    sched = torch.optim.lr_scheduler.LambdaLR(stage.opt, stage.lr_factor, last_epoch=start - 1)
    params = [p for group in stage.opt.param_groups for p in group["params"]] if stage.clip else None
    log = _open_log(stage.log, start)
    bar = tqdm(range(start, stage.steps), initial=start, total=stage.steps, desc=stage.name, mininterval=10)
    done, saved, saved_at = start, start, time.monotonic()
    batches = prefetch(batch_of, range(start, stage.steps), enabled=stage.device.type == "cuda")
    with closing(batches), closing(bar):
        for step in bar:
            if stage.minutes is not None and timer.run_s > stage.minutes * 60:
                break
            loss, figures = loss_of(step, next(batches))
            lr = stage.opt.param_groups[0]["lr"]  # this step's: the scheduler moves it on in the update
            optimizer_step(loss, stage.opt, sched, clip=params)
            done = step + 1
            if stage.constrain is not None:
                stage.constrain()
            if stage.ema is not None:
                stage.ema.update(stage.model, step)
            figures = {"loss": loss.item(), **figures}
            bar.set_postfix({k: f"{v:.4g}" for k, v in figures.items()})
            if log is not None:
                _log_step(log, done, figures, lr, timer.total_s)
            if stage.on_step is not None:
                stage.on_step(done)
            if _due(stage, done, saved_at):
                _save(stage, done, timer)
                saved, saved_at = done, time.monotonic()
    if done != saved or not stage.checkpoint.exists():
        _save(stage, done, timer)
    if log is not None:
        log.close()
    return timer.total_s


def _resume(stage: Stage) -> tuple[int, StageTimer]:
    """Load the stage's checkpoint into its module, optimiser and EMA; returns (first step, timer)."""
    state = load_checkpoint(stage.checkpoint)
    if state is None:
        return 0, StageTimer()
    base_lrs = [group["lr"] for group in stage.opt.param_groups]
    stage.model.load_state_dict(state["model"])
    stage.opt.load_state_dict(state["opt"] if "opt" in state else state["optimizer"])  # older GAN checkpoints
    for group, lr in zip(stage.opt.param_groups, base_lrs):
        group.setdefault("initial_lr", lr)  # a checkpoint written before the schedule was a LambdaLR
    if stage.ema is not None:
        stage.ema.load_state_dict(state["ema"])
    return int(state["step"]), StageTimer(float(state["wall_s"]))


def _due(stage: Stage, done: int, saved_at: float) -> bool:
    """Whether a periodic checkpoint is due after `done` steps."""
    by_steps = stage.every_steps is not None and done % stage.every_steps == 0
    return by_steps or (stage.every_s is not None and time.monotonic() - saved_at > stage.every_s)


def _save(stage: Stage, step: int, timer: StageTimer) -> None:
    state = {"model": stage.model.state_dict(), "opt": stage.opt.state_dict(), "step": step}
    if stage.ema is not None:
        state["ema"] = stage.ema.state_dict()
    save_checkpoint(stage.checkpoint, {**state, "wall_s": timer.total_s, **stage.extra})


def _open_log(path: Path | None, step: int):
    """The per-step log opened for appending, without the lines of steps after `step` (they run again)."""
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))
    return open(path, "a")


def _log_step(log, step: int, figures: dict[str, float], lr: float, wall_s: float) -> None:
    record = {"step": step, **{k: round(v, 5) for k, v in figures.items()}, "lr": round(lr, 6)}
    log.write(json.dumps({**record, "wall_s": round(wall_s, 1)}) + "\n")
    log.flush()
