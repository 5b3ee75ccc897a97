"""Paired random crop of the visual slider: one window per pair, valid sizes, crop conditioning, resume."""

from __future__ import annotations

import math

import pytest
import torch
from test_visual_slider import RES, _ready, make_corpus

from pair_datasets import Corpus
from sliders.visual_slider import VisualSliderConfig, VisualSliderTask, crop_side

# The tiny SDXL: VAE factor 2, two UNet levels, so 32 px -> 16x16 latents and windows in steps of 2.
LATENT = RES // 2


def _task(tiny_pipe, tmp_path, **config) -> VisualSliderTask:
    root = tmp_path / "c"
    corpus = Corpus.open(root) if root.exists() else make_corpus(root)
    return VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(**config))


def _positions(full: torch.Tensor, crop: torch.Tensor) -> set[tuple[bool, int, int]]:
    """Every (flipped, row, column) at which `crop` [C, h, w] is a window of `full` [C, H, W]."""
    (h, w), (height, width) = crop.shape[-2:], full.shape[-2:]
    found = set()
    for flipped, image in ((False, full), (True, full.flip(-1))):
        for y in range(height - h + 1):
            for x in range(width - w + 1):
                if torch.equal(image[:, y : y + h, x : x + w], crop):
                    found.add((flipped, y, x))
    return found


@pytest.mark.parametrize("augment", [False, True])
def test_the_window_is_the_same_for_before_and_after(tiny_pipe, tmp_path, augment):
    task = _task(tiny_pipe, tmp_path, batch_size=3, crop_scale=0.5, augment=augment)
    generator = torch.Generator().manual_seed(0)
    flips = set()
    for _ in range(4):
        batch = task.draw(generator)
        for k, i in enumerate(batch.indices):
            # Located independently in the full cached latents (random images: one match each).
            where_before = _positions(task.before[i], batch.before[k])
            where_after = _positions(task.after[i], batch.after[k])
            assert len(where_before) == 1 and where_before == where_after
            flipped, y, x = where_before.pop()
            assert batch.top_left[k].tolist() == [y, x]
            flips.add(flipped)
    assert flips == ({False, True} if augment else {False})


@pytest.mark.parametrize(
    ("scale", "window"), [(0.3, 4), (0.5, 8), (0.75, 12), (0.9, 14), (1.0, LATENT), (None, LATENT)]
)
def test_window_sizes_are_valid_and_positions_in_range(tiny_pipe, tmp_path, scale, window):
    task = _task(tiny_pipe, tmp_path, batch_size=3, crop_scale=scale)
    _ready(task)
    generator = torch.Generator().manual_seed(1)
    tops, lefts = set(), set()
    for _ in range(8):
        batch = task.draw(generator)
        assert batch.before.shape == batch.after.shape == batch.noise.shape == (3, 4, window, window)
        assert window % 2 == 0  # the tiny UNet halves its latent once
        tops.update(batch.top_left[:, 0].tolist())
        lefts.update(batch.top_left[:, 1].tolist())
    assert min(tops | lefts) >= 0 and max(tops | lefts) <= LATENT - window
    assert (len(tops) > 1 and len(lefts) > 1) == (window < LATENT)  # positions vary only with a crop
    loss = task.batch_loss(task.unet, batch, lambda loss: loss.backward())  # the UNet accepts the window
    assert math.isfinite(float(loss)) and float(loss) > 0


def test_crop_side_rounds_to_the_unet_multiple():
    # SDXL at 1024 px: latents 128, windows in steps of 4 latent pixels (32 px).
    assert crop_side(128, 0.5, 4) == 64
    assert crop_side(128, 0.7, 4) == 88  # 89.6 -> 88
    assert crop_side(128, 0.72, 4) == 92  # 92.16 -> 92
    assert crop_side(128, 1.0, 4) == 128
    assert crop_side(16, 0.0625, 2) == 2  # exactly half a step rounds up
    assert crop_side(128, 0.01, 4) == 0  # below the minimum: the task refuses it


def _capture_time_ids(
    task: VisualSliderTask, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], object]:
    """Run one loss computation through a wrapper that records the UNet's inputs; also return the draw."""
    calls, shapes = [], []

    def spy(x, t, **kwargs):
        calls.append(kwargs["added_cond_kwargs"]["time_ids"].detach().clone())
        shapes.append(x.shape)
        return task.unet(x, t, **kwargs)

    generator = torch.Generator().manual_seed(seed)
    state = generator.get_state()
    task.compute_loss(spy, generator, lambda loss: None)
    generator.set_state(state)
    task.order, task.position = [], 0
    return calls, shapes, task.draw(generator)  # the same draw again, to know the windows


@pytest.mark.parametrize("separate_passes", [False, True])
def test_time_ids_carry_the_crop(tiny_pipe, tmp_path, separate_passes):
    task = _task(tiny_pipe, tmp_path, batch_size=3, crop_scale=0.5, separate_passes=separate_passes)
    _ready(task)
    calls, shapes, batch = _capture_time_ids(task, seed=2)
    # SDXL: original size = the training resolution, crop (top, left) and target size in pixels.
    expected = torch.tensor([[RES, RES, 2 * y, 2 * x, 16, 16] for y, x in batch.top_left.tolist()])
    assert (batch.top_left != 0).any()
    if separate_passes:
        assert len(calls) == 2 and all(shape == (3, 4, 8, 8) for shape in shapes)
        assert all(torch.equal(ids, expected.float()) for ids in calls)  # before pass, then after pass
    else:
        assert len(calls) == 1 and shapes[0] == (6, 4, 8, 8)
        assert torch.equal(calls[0], torch.cat([expected, expected]).float())  # both halves of the batch


def test_time_ids_without_a_crop_are_the_whole_image(tiny_pipe, tmp_path):
    task = _task(tiny_pipe, tmp_path, batch_size=2)
    _ready(task)
    calls, _, _ = _capture_time_ids(task, seed=2)
    assert calls[0].tolist() == [[RES, RES, 0, 0, RES, RES]] * 4


def test_crop_conditioning_changes_the_prediction(tiny_pipe, tmp_path):
    task = _task(tiny_pipe, tmp_path, batch_size=3, crop_scale=0.5)
    batch = task.draw(torch.Generator().manual_seed(0))
    x, cond = batch.before, task.prompts.batch([""] * 3)
    with torch.no_grad():
        told = task.predict(task.unet, x, batch.timesteps, cond, task.time_ids(batch.top_left))
        untold = task.predict(task.unet, x, batch.timesteps, cond)
    assert not torch.allclose(told, untold)  # the UNet does read the crop it is given


def test_crops_are_deterministic_and_resume_exactly(tiny_pipe, tmp_path):
    corpus = make_corpus(tmp_path / "c")
    config = VisualSliderConfig(batch_size=2, crop_scale=0.5, augment=True)

    def draws(task, generator, n):
        return [task.draw(generator) for _ in range(n)]

    straight = draws(VisualSliderTask(tiny_pipe, corpus, config), torch.Generator().manual_seed(7), 5)
    again = draws(VisualSliderTask(tiny_pipe, corpus, config), torch.Generator().manual_seed(7), 5)
    other = draws(VisualSliderTask(tiny_pipe, corpus, config), torch.Generator().manual_seed(8), 5)
    assert all(
        torch.equal(a.top_left, b.top_left) and torch.equal(a.before, b.before)
        for a, b in zip(straight, again)
    )
    assert not all(torch.equal(a.top_left, b.top_left) for a, b in zip(straight, other))

    # Interrupted after 2 draws: the task state and the generator state continue the same crops.
    first, generator = VisualSliderTask(tiny_pipe, corpus, config), torch.Generator().manual_seed(7)
    draws(first, generator, 2)
    state, rng = first.state_dict(), generator.get_state()
    resumed, generator = VisualSliderTask(tiny_pipe, corpus, config), torch.Generator()
    resumed.load_state_dict(state)
    generator.set_state(rng)
    for a, b in zip(straight[2:], draws(resumed, generator, 3)):
        assert a.indices == b.indices and torch.equal(a.top_left, b.top_left)
        assert torch.equal(a.before, b.before) and torch.equal(a.after, b.after)


def test_resume_refuses_another_crop(tiny_pipe, tmp_path):
    corpus = make_corpus(tmp_path / "c")
    state = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(crop_scale=0.5)).state_dict()
    assert state["config"]["crop_scale"] == 0.5
    VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(crop_scale=0.5)).load_state_dict(state)
    for other in (None, 0.75):
        task = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(crop_scale=other))
        with pytest.raises(ValueError, match="--resume: checkpoint was written with other visual settings"):
            task.load_state_dict(state)

    # A scale of 1 is no crop; a checkpoint from before cropping existed (no key) trained without one.
    uncropped = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(crop_scale=1.0))
    uncropped.load_state_dict(VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig()).state_dict())
    old = {
        **state,
        "config": {k: v for k, v in uncropped.state_dict()["config"].items() if k != "crop_scale"},
    }
    uncropped.load_state_dict(old)
    with pytest.raises(ValueError, match="other visual settings"):
        VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(crop_scale=0.5)).load_state_dict(old)


@pytest.mark.parametrize("scale", [0, -0.5, 1.5, float("nan")])
def test_crop_scale_out_of_range_is_refused(scale):
    with pytest.raises(ValueError, match=r"crop_scale \(--crop-scale\): must be in \(0, 1\], got"):
        VisualSliderConfig(crop_scale=scale)


def test_a_window_below_the_unet_minimum_is_refused(tiny_pipe, tmp_path):
    # 0.05 x 16 latent pixels rounds to 0; the tiny UNet needs at least 2 (4 px).
    with pytest.raises(
        ValueError, match=r"--crop-scale\) 0.05: .* smallest input, 4 px; use at least 0.0625"
    ):
        _task(tiny_pipe, tmp_path, crop_scale=0.05)
    assert _task(tiny_pipe, tmp_path, crop_scale=0.0625).window == (2, 2)  # rounds up to the minimum


def test_metadata_records_the_crop(tiny_pipe, tmp_path):
    extra = _task(tiny_pipe, tmp_path, crop_scale=0.5).metadata_fields()["extra"]
    assert extra["crop_scale"] == 0.5 and extra["crop_size"] == [16, 16]
    extra = _task(tiny_pipe, tmp_path).metadata_fields()["extra"]
    assert extra["crop_scale"] is None and extra["crop_size"] is None
