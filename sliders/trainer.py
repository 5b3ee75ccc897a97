"""The slider training loop shared by text and visual sliders: setup -> train -> save, top to bottom.

A task (`SliderTask`) owns the objective and its UNet calls; the loop owns the adapter, the optimizer,
accelerate (mixed precision, `accelerate launch` for several GPUs), seeding, checkpoints, resume,
signals, the loss log and the final slider file.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from sliders.checkpoint import (
    capture_rng,
    checkpoint_path,
    load_checkpoint,
    refuse_other_settings,
    restore_rng,
    save_checkpoint,
)
from sliders.config import TrainSettings
from sliders.lora import DEFAULT_ADAPTER, attach_slider, slider_parameters
from sliders.loss_log import loss_paths, plot_loss, write_loss_csv
from sliders.slider_file import factors_from_unet, save_slider, slider_metadata

Backward = Callable[[Tensor], None]


class SliderTask(Protocol):
    """An objective that makes its own UNet calls; `unet` is the UNet the slider is attached to."""

    unet: nn.Module

    def compute_loss(self, model: nn.Module, generator: torch.Generator, backward: Backward) -> Tensor:
        """One iteration: draw data with `generator`, call `backward(loss)`, return the detached loss.

        `model` is the (possibly wrapped) UNet to use for the pass with gradients.
        """

    def state_dict(self) -> dict:
        """What the task carries between iterations (for an exact resume)."""

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`."""

    def metadata_fields(self) -> dict[str, Any]:
        """Keyword arguments of `sliders.slider_file.slider_metadata` the task knows (kind, concept, ...)."""


class NonFiniteLoss(ValueError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


@dataclass
class RunState:
    """Progress of a run: completed steps, their losses, and where and at which step it last checkpointed."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    checkpoint_step: int | None = None
    checkpoint_path: Path | None = None


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal after a checkpoint; `signum` says which (the CLI exits 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signal.Signals(signum).name}")
        self.signum = signum


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it after each step. A second signal stops at once.

    The first signal lets the running step finish (it can take minutes on a CPU) so that a checkpoint
    of it can be written; a second one raises in the middle of the step, which is then abandoned and
    the last checkpoint written before it is kept.
    """

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:
            raise TrainingInterrupted(signum)
        self.signal = signum
        print(
            f"{signal.Signals(signum).name}: stopping after this step with a checkpoint; "
            "send it again to stop at once",
            file=sys.stderr,
            flush=True,
        )


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Turn SIGINT/SIGTERM into a flag for the duration; the previous handlers are restored after."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals can only be handled in the main thread
        return
    previous = {sig: signal.signal(sig, flag) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and python; return the CPU generator every random draw of a task uses."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    return torch.Generator().manual_seed(seed)


class SoloProcess:
    """The part of accelerate's `Accelerator` the loop uses, for a process that trains its slider alone.

    Under a multi-process launch that shards whole sliders (a library build), every process trains other
    sliders: an Accelerator would average their gradients as if they were one slider's data-parallel run.
    """

    num_processes, process_index, is_main_process, scaler = 1, 0, True, None

    def prepare(self, *objects: Any) -> tuple:
        return objects

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def wait_for_everyone(self) -> None:
        pass


def make_accelerator(unet: nn.Module, settings: TrainSettings, data_parallel: bool = True):
    """An Accelerator whose mixed precision follows the UNet's dtype (fp32 and CPU: none).

    `data_parallel=False`: a `SoloProcess` instead, whatever the launch (no gradient averaging).
    """
    if not data_parallel:
        return SoloProcess()
    from accelerate import Accelerator

    on_cpu = next(unet.parameters()).device.type == "cpu"
    precision = settings.mixed_precision
    if precision == "auto":
        precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(unet.dtype, "no")
    return Accelerator(cpu=on_cpu, mixed_precision="no" if on_cpu else precision)


def prepare_slider(
    unet: nn.Module, settings: TrainSettings, adapter_name: str = DEFAULT_ADAPTER
) -> list[nn.Parameter]:
    """Attach the slider (base frozen); factors train in fp32 whatever the UNet's dtype."""
    return prepare_sliders(unet, settings, [adapter_name])


def prepare_sliders(
    unet: nn.Module, settings: TrainSettings, adapter_names: Sequence[str]
) -> list[nn.Parameter]:
    """Attach one slider adapter per name, all trainable (base frozen), factors in fp32."""
    unet.requires_grad_(False)
    with warnings.catch_warnings():  # peft warns when a second adapter joins: here that is the point
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        for name in adapter_names:
            attach_slider(unet, settings.rank, settings.alpha, settings.targets, name)
    # After all attaches: peft leaves only the last-added adapter trainable.
    params = [param for name in adapter_names for param in slider_parameters(unet, name)]
    for param in params:
        param.data = param.data.float()
        param.requires_grad_(True)
    if settings.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return params


def train_step(
    task: SliderTask, model: nn.Module, optimizer, generator: torch.Generator, backward: Backward
) -> float:
    """One optimizer step on the task's loss; a non-finite loss leaves the weights untouched."""
    optimizer.zero_grad(set_to_none=True)
    loss = float(task.compute_loss(model, generator, backward))
    if math.isfinite(loss):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def _named_slider_params(unet: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in unet.named_parameters() if p.requires_grad}


def _settings_key(settings: TrainSettings) -> dict:
    # What must match for a resume to continue the same run (steps may grow; checkpointing is exact).
    return {
        k: v
        for k, v in vars(settings).items()
        if k not in ("steps", "checkpoint_every", "gradient_checkpointing")
    }


def write_checkpoint(path: Path, run: RunState, task: SliderTask, optimizer, generator, settings,
                     scaler=None) -> None:  # fmt: skip
    """Checkpoint the completed steps (call only between steps); `scaler`: fp16's GradScaler, if any."""
    params = {name: p.detach().cpu().clone() for name, p in _named_slider_params(task.unet).items()}
    save_checkpoint(path, {
        "step": run.step, "losses": list(run.losses), "params": params,
        "optimizer": optimizer.state_dict(), "rng": capture_rng(generator),
        "task": task.state_dict(), "settings": _settings_key(settings),
        # fp16's loss scale decides which steps are skipped: without it a resume is not exact.
        "scaler": None if scaler is None else scaler.state_dict(),
    })  # fmt: skip
    run.checkpoint_step = run.step


def resume_run(path: Path, task: SliderTask, optimizer, generator, settings: TrainSettings,
               scaler=None) -> RunState:  # fmt: skip
    """Load a checkpoint into the slider, optimizer, RNGs, task (and GradScaler); refuse one from other settings."""
    state = load_checkpoint(path)
    refuse_other_settings(str(path), "settings", state["settings"], _settings_key(settings))
    if state["step"] > settings.steps:
        raise ValueError(
            f"{path}: checkpoint is at step {state['step']}, past --steps {settings.steps}; "
            f"resume with --steps {state['step']} or more"
        )
    params = _named_slider_params(task.unet)
    if set(state["params"]) != set(params):
        raise ValueError(f"{path}: checkpoint holds other slider modules than this run")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(state["params"][name])
    optimizer.load_state_dict(state["optimizer"])
    task.load_state_dict(state["task"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"], generator)
    return RunState(state["step"], list(state["losses"]), state["step"])


def _last_checkpoint(run: RunState) -> str:
    """Where the last good checkpoint of the run is, for a message."""
    if run.checkpoint_step:
        return f"the last good checkpoint is {run.checkpoint_path} (step {run.checkpoint_step})"
    return "no checkpoint was written (use --checkpoint-every)"


def _non_finite(loss: float, step: int, run: RunState) -> NonFiniteLoss:
    kept = _last_checkpoint(run)
    return NonFiniteLoss(
        f"loss became {loss} at step {step}; training stopped and nothing was saved; {kept}. "
        "Try a lower --lr or a higher-precision dtype."
    )


def save_result(out: Path, task: SliderTask, run: RunState, settings: TrainSettings, base_model: str,
                adapter_name: str = DEFAULT_ADAPTER) -> Path:  # fmt: skip
    """Write the slider file with full metadata, the loss CSV and the loss-curve PNG."""
    fields = task.metadata_fields()
    # The CPU thread count changes the bits of a run: a reproduction needs it (GPU runs record it too).
    fields["extra"] = {**fields.get("extra", {}), "torch_threads": torch.get_num_threads()}
    metadata = slider_metadata(targets=settings.targets, base_model=base_model, steps=run.step, **fields)
    save_slider(out, factors_from_unet(task.unet, adapter_name), metadata)
    csv_path, png_path = loss_paths(out)
    write_loss_csv(csv_path, run.losses)
    plot_loss(png_path, run.losses, title=f"{fields.get('concept', 'slider')}: loss")
    return out


def run_steps(
    task: SliderTask,
    model: nn.Module,
    optimizer,
    generator: torch.Generator,
    backward: Backward,
    settings: TrainSettings,
    run: RunState,
    checkpoint: Callable[[], None],
    on_step_end: Callable[[int, float], None] | None = None,
    show_progress: bool = True,
) -> None:
    """Train from `run.step` to `settings.steps`; signals and interrupts checkpoint between steps."""
    bar = tqdm(total=settings.steps, initial=run.step, desc="training slider", disable=not show_progress)
    with stop_on_signals() as stop, bar:
        in_step = False
        try:
            while run.step < settings.steps:
                in_step = True
                loss = train_step(task, model, optimizer, generator, backward)
                if not math.isfinite(loss):
                    raise _non_finite(loss, run.step + 1, run)
                run.step += 1
                run.losses.append(loss)
                in_step = False
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}")
                if settings.checkpoint_every and run.step % settings.checkpoint_every == 0:
                    checkpoint()
                if on_step_end is not None:
                    on_step_end(run.step, loss)
                if stop.signal is not None:
                    raise TrainingInterrupted(stop.signal)
        except KeyboardInterrupt:
            if not in_step:  # between steps the state is consistent: keep it
                checkpoint()
                bar.write(
                    f"interrupted after step {run.step}; checkpoint {run.checkpoint_path} (continue with --resume)"
                )
            else:
                bar.write(f"stopped during step {run.step + 1}; {_last_checkpoint(run)}")
            raise


def run_training(
    task: SliderTask,
    settings: TrainSettings,
    adapter_names: Sequence[str],
    checkpoint_for: Path,
    *,
    resume: bool = False,
    on_step_end: Callable[[int, float], None] | None = None,
    show_progress: bool = True,
    data_parallel: bool = True,
) -> tuple[RunState, Any]:
    """Seed, attach the adapters, resume if asked and train every step; returns (run, accelerator).

    The checkpoint is the one of a run writing `checkpoint_for` (`sliders.checkpoint.checkpoint_path`).
    """
    generator = seed_everything(settings.seed)
    params = prepare_sliders(task.unet, settings, adapter_names)
    accelerator = make_accelerator(task.unet, settings, data_parallel)
    optimizer = torch.optim.AdamW(params, lr=settings.lr)
    model, optimizer = accelerator.prepare(task.unet, optimizer)
    if accelerator.num_processes > 1:
        generator.manual_seed(settings.seed + accelerator.process_index)  # each process its own draws
    ckpt = checkpoint_path(checkpoint_for, accelerator.process_index)
    scaler = getattr(accelerator, "scaler", None)  # fp16 on GPU only
    if resume:
        run = resume_run(ckpt, task, optimizer, generator, settings, scaler)
    else:
        ckpt.unlink(
            missing_ok=True
        )  # an earlier run's: a later --resume must not continue it with this slider
        run = RunState()
    run.checkpoint_path = ckpt

    def checkpoint() -> None:
        """Write `ckpt`: every process its own (its generator and task state differ from the others')."""
        write_checkpoint(ckpt, run, task, optimizer, generator, settings, scaler)

    run_steps(task, model, optimizer, generator, accelerator.backward, settings, run, checkpoint, on_step_end,
              show_progress)  # fmt: skip
    if settings.checkpoint_every:
        checkpoint()  # so the run can be extended with --resume and more --steps
    return run, accelerator


def slider_out(out: str | Path) -> Path:
    """`out` checked to be a .safetensors path (ValueError naming --out), its folder created."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: a slider file must end in .safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def train_slider(
    task: SliderTask,
    settings: TrainSettings,
    out: str | Path,
    *,
    base_model: str,
    resume: bool = False,
    on_step_end: Callable[[int, float], None] | None = None,
    show_progress: bool = True,
) -> Path:
    """Train the slider of `task` for `settings.steps` steps and save it to `out` (.safetensors)."""
    out = slider_out(out)
    run, accelerator = run_training(task, settings, [DEFAULT_ADAPTER], out, resume=resume, on_step_end=on_step_end,
                                    show_progress=show_progress)  # fmt: skip
    if accelerator.is_main_process:
        save_result(out, task, run, settings, base_model)
    accelerator.wait_for_everyone()
    return out
