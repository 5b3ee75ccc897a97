"""The stage skeleton every toy-world trainer runs through: exact resume, checkpoints, time cap, log, report."""

from __future__ import annotations

import json

import pytest
import torch

from toyworld.stage import Stage, stage_done, train_stage, warmup_cosine_factor, write_done
from toyworld.training import EMA, load_checkpoint, save_checkpoint


def _batch(step: int) -> torch.Tensor:
    return torch.randn(4, 3, generator=torch.Generator().manual_seed(step))


def _stage(tmp_path, steps: int, **kwargs) -> Stage:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    defaults = dict(ema=EMA(model, 0.9), clip=True, every_steps=2, log=tmp_path / "log.txt")
    return Stage("toy", tmp_path / "ckpt.pt", steps, model, opt, warmup_cosine_factor(6, 2), torch.device("cpu"),
                 **{**defaults, **kwargs})  # fmt: skip


def _loss(stage: Stage):
    def loss(step: int, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        out = stage.model(batch)
        return out.square().mean(), {"mean": float(out.detach().mean())}

    return loss


def _train(stage: Stage) -> float:
    return train_stage(stage, _batch, _loss(stage))


def test_a_resumed_stage_ends_bit_identical_to_an_uninterrupted_one(tmp_path):
    straight = _stage(tmp_path / "a", 6)
    _train(straight)
    first = _stage(tmp_path / "b", 6, minutes=0.0)  # stops before its first step, leaving a checkpoint
    _train(first)
    assert load_checkpoint(tmp_path / "b" / "ckpt.pt")["step"] == 0
    _train(_stage(tmp_path / "b", 3))  # an interrupted run: the checkpoint holds step 3 of the schedule
    assert load_checkpoint(tmp_path / "b" / "ckpt.pt")["step"] == 3
    resumed = _stage(tmp_path / "b", 6)
    _train(resumed)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    for key, value in straight.ema.state_dict().items():
        assert torch.equal(resumed.ema.state_dict()[key], value), key
    assert straight.opt.param_groups[0]["lr"] == resumed.opt.param_groups[0]["lr"]


def test_the_log_keeps_one_line_per_step_across_a_resume(tmp_path):
    _train(_stage(tmp_path, 3, every_steps=2))  # checkpoints at steps 2 and 3
    lines = (tmp_path / "log.txt").read_text().splitlines()
    state = load_checkpoint(tmp_path / "ckpt.pt")
    state["step"] = 2  # as if the run had died after logging step 3 but before its checkpoint
    save_checkpoint(tmp_path / "ckpt.pt", state)
    _train(_stage(tmp_path, 4))
    records = [json.loads(line) for line in (tmp_path / "log.txt").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert records[0] == json.loads(lines[0]) | {"wall_s": records[0]["wall_s"]}
    assert set(records[0]) == {"step", "loss", "mean", "lr", "wall_s"}
    assert records[0]["lr"] == pytest.approx(0.1 * 0.5)  # the warm-up's first step: half the peak


def test_checkpoints_come_every_n_steps_and_at_the_end(tmp_path):
    stage = _stage(tmp_path, 5, every_steps=2)
    seen = []
    stage.on_step = lambda done: seen.append(load_checkpoint(tmp_path / "ckpt.pt") or {"step": None})
    _train(stage)
    assert [s["step"] for s in seen] == [None, None, 2, 2, 4]  # on_step runs before that step's checkpoint
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 5


def test_an_old_gan_checkpoint_without_a_schedule_resumes(tmp_path):
    """Checkpoints written before the shared skeleton stored the optimiser as `optimizer`, without `initial_lr`."""
    straight = _stage(tmp_path / "a", 4, ema=None, log=None)
    _train(straight)
    _train(_stage(tmp_path / "b", 2, ema=None, log=None))
    state = load_checkpoint(tmp_path / "b" / "ckpt.pt")
    state["optimizer"] = state.pop("opt")
    for group in state["optimizer"]["param_groups"]:
        del group["initial_lr"]
    save_checkpoint(tmp_path / "b" / "ckpt.pt", state)
    resumed = _stage(tmp_path / "b", 4, ema=None, log=None)
    _train(resumed)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_the_done_report_records_figures_device_and_threads(tmp_path):
    assert not stage_done(tmp_path, "vae")
    write_done(tmp_path, "vae", {"steps": 3, "wall_s": 1.5}, torch.device("cpu"))
    assert stage_done(tmp_path, "vae")
    report = json.loads((tmp_path / "vae_done.json").read_text())
    assert report == {"steps": 3, "wall_s": 1.5, "device": "cpu", "threads": torch.get_num_threads()}
