"""Several visual sliders trained in one loop: their pairs in one batch, each sample routed to its adapter.

Member k (adapter `name_k`) draws its pairs as it would alone (`VisualSliderTask.draw`, from the loop's
one generator, members in order). The batch is [A_1, B_1, A_2, B_2, ...] (before/after images of each
member's pairs) in one UNet pass:

    routing   every peft LoRA layer gets `adapter_names` (one per sample: peft's mixed-batch forward),
              so adapter k runs on member k's samples only and costs what one slider costs;
    scales    adapter k's output is multiplied per sample by -s (before) / +s (after), as alone;
    loss      sum over members of visual_slider_loss(pred_A_k, pred_B_k, eps_k) averaged over k's pairs,
              so adapter k gets exactly the gradient its own pairs give it.

`train_slider_group` runs a group through the one training loop of `sliders.trainer` (`run_training`) and
saves each member's adapter to its own file. A group of one is the single-slider task (tests compare the
two, file for file).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from peft.tuners.lora import LoraLayer
from torch import Tensor, nn

from sliders.config import TrainSettings
from sliders.lora import per_sample_scale
from sliders.objectives import visual_slider_loss
from sliders.prompts import PromptEmbedding
from sliders.trainer import Backward, RunState, run_training, save_result, slider_out
from sliders.visual_slider import PairBatch, VisualSliderTask


@contextmanager
def routed_adapters(unet: nn.Module, adapter_per_sample: Sequence[str]) -> Iterator[None]:
    """Run one pass where sample i goes through adapter `adapter_per_sample[i]` only (peft mixed batch)."""
    names = list(adapter_per_sample)

    def route(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "adapter_names": names}

    hooks = []
    try:
        for module in unet.modules():
            if isinstance(module, LoraLayer):
                hooks.append(module.register_forward_pre_hook(route, with_kwargs=True))
        yield
    finally:
        for hook in hooks:
            hook.remove()


class VisualSliderGroup:
    """The visual-slider objective of several sliders at once (a `sliders.trainer.SliderTask` whose
    `members[name]` is the slider of adapter `name`; `member_losses(name)` its own loss per step)."""

    def __init__(self, members: Mapping[str, VisualSliderTask]):
        if not members:
            raise ValueError("a slider group needs at least one member")
        self.members = dict(members)
        first = next(iter(self.members.values()))
        for name, task in self.members.items():
            if task.unet is not first.unet:
                raise ValueError(f"group member {name!r}: every member must train on the same UNet")
            if task.window != first.window or task.config.crop != first.config.crop:
                raise ValueError(f"group member {name!r}: every member must train at the same size and crop")
        self.unet: nn.Module = first.unet
        self.losses: dict[str, list[float]] = {name: [] for name in self.members}

    def member_losses(self, name: str) -> list[float]:
        """Member `name`'s loss at every completed step."""
        return list(self.losses[name])

    def _stack(self, batches: dict[str, PairBatch]) -> tuple[Tensor, Tensor, PromptEmbedding, Tensor]:
        """Latents, timesteps, prompts and time ids of all members' samples, member by member."""
        xs, ts, captions, ids = [], [], [], []
        for name, batch in batches.items():
            task = self.members[name]
            noise, t = batch.noise.to(task.device), batch.timesteps.to(task.device)
            xs += [
                task.noisy(batch.before.to(task.device), noise, t),
                task.noisy(batch.after.to(task.device), noise, t),
            ]
            ts += [t, t]
            member_captions = [task.captions[i] for i in batch.indices]
            captions += member_captions + member_captions
            ids += [task.time_ids(batch.top_left)] * 2
        first = next(iter(self.members.values()))
        return torch.cat(xs), torch.cat(ts), first.prompts.batch(captions), torch.cat(ids)

    def compute_loss(self, model: nn.Module, generator: torch.Generator, backward: Backward) -> Tensor:
        """One iteration of every member; calls `backward` on the summed loss and returns it detached."""
        batches = {name: task.draw(generator) for name, task in self.members.items()}
        x, t, cond, ids = self._stack(batches)
        route = [name for name, batch in batches.items() for _ in range(2 * len(batch.indices))]
        first = next(iter(self.members.values()))
        with ExitStack() as stack:
            for name, batch in batches.items():
                levels = batch.levels.to(first.device)
                stack.enter_context(per_sample_scale(self.unet, torch.cat([-levels, levels]), name))
            stack.enter_context(routed_adapters(self.unet, route))
            pred = first.predict(model, x, t, cond, ids)
            losses, start = {}, 0
            for name, batch in batches.items():
                n = len(batch.indices)
                pred_a, pred_b = pred[start : start + n], pred[start + n : start + 2 * n]
                losses[name] = visual_slider_loss(pred_a, pred_b, batch.noise.to(pred.device)).mean()
                start += 2 * n
            total = torch.stack(list(losses.values())).sum()
            backward(total)  # inside: a checkpointed forward recomputes with the same routing and scales
        for name, loss in losses.items():
            self.losses[name].append(float(loss.detach()))
        return total.detach()

    def state_dict(self) -> dict:
        """Every member's state and loss log (for an exact resume)."""
        return {"members": {n: t.state_dict() for n, t in self.members.items()}, "losses": self.losses}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`; a checkpoint of another group is refused."""
        if sorted(state.get("members", {})) != sorted(self.members):
            raise ValueError(
                f"--resume: checkpoint was written for the group {sorted(state.get('members', {}))}"
            )
        for name, task in self.members.items():
            task.load_state_dict(state["members"][name])
        self.losses = {name: [float(v) for v in state["losses"][name]] for name in self.members}

    def metadata_fields(self) -> dict[str, Any]:
        """Not used: every member's file gets its member's metadata (`train_slider_group`)."""
        return {}


def train_slider_group(
    group: VisualSliderGroup,
    settings: TrainSettings,
    outs: Mapping[str, str | Path],
    checkpoint_for: Path,
    *,
    base_model: str,
    resume: bool = False,
    show_progress: bool = True,
    data_parallel: bool = True,
) -> list[Path]:
    """Train the members of `group` in one loop (one checkpoint, that of `checkpoint_for`); member `name`
    is saved to `outs[name]` with its own metadata and loss log."""
    paths = {name: slider_out(out) for name, out in outs.items()}
    run, accelerator = run_training(group, settings, list(paths), Path(checkpoint_for), resume=resume,
                                    show_progress=show_progress, data_parallel=data_parallel)  # fmt: skip
    if accelerator.is_main_process:
        for name, out in paths.items():
            member_run = RunState(run.step, group.member_losses(name))
            save_result(out, group.members[name], member_run, settings, base_model, adapter_name=name)
    accelerator.wait_for_everyone()
    return list(paths.values())
