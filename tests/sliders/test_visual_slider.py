"""Visual slider task: loss by hand, batched = separate passes, shared noise/timestep, cached latents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pair_datasets import Corpus, CorpusInfo
from sliders.config import TrainSettings
from sliders.lora import slider_parameters, slider_scale
from sliders.objectives import visual_slider_loss
from sliders.trainer import prepare_slider
from sliders.visual_slider import (
    VisualSliderConfig,
    VisualSliderTask,
    corpus_summary,
    summarize_provenance,
)

RES = 32


def _image(seed: int, shade: float) -> Image.Image:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (RES, RES, 3)).astype(np.float32) * shade
    return Image.fromarray(array.clip(0, 255).astype(np.uint8))


def make_corpus(root: Path, levels=(1.0, 1.0, 2.0), captions=(None, None, None), provenance=None) -> Corpus:
    """A corpus of len(levels) random before/after pairs (after = darker) at 32 px."""
    corpus = Corpus.create(root, CorpusInfo(name="darker", resolution=RES, provenance=provenance or {}))
    for i, (level, caption) in enumerate(zip(levels, captions)):
        corpus.append(f"p{i}", _image(i, 1.0), _image(i, 0.5), level=level, caption=caption)
    return Corpus.open(root)


def _ready(task: VisualSliderTask, seed: int = 0) -> None:
    """Attach the slider and give it non-zero up factors (the default init makes its output zero)."""
    prepare_slider(task.unet, TrainSettings(steps=1))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in slider_parameters(task.unet):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)


def _grads(task: VisualSliderTask) -> list[torch.Tensor]:
    return [p.grad.clone() for p in slider_parameters(task.unet)]


def _zero(task: VisualSliderTask) -> None:
    for p in slider_parameters(task.unet):
        p.grad = None


def test_loss_equals_hand_computation(tiny_pipe, tmp_path):
    corpus = make_corpus(tmp_path / "c")
    task = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(batch_size=3))
    _ready(task)
    batch = task.draw(torch.Generator().manual_seed(3))
    assert sorted(batch.levels.tolist()) == [1.0, 1.0, 2.0]  # the pair level is the scale s
    loss = task.batch_loss(task.unet, batch, lambda loss: None)

    # By hand: DDPM forward process with the model's betas, one signed pass per sample.
    abar = task.noise_scheduler.alphas_cumprod[batch.timesteps].view(-1, 1, 1, 1)
    x_a = abar.sqrt() * batch.before + (1 - abar).sqrt() * batch.noise
    x_b = abar.sqrt() * batch.after + (1 - abar).sqrt() * batch.noise
    cond = task.prompts.encode("")
    per_pair = []
    with torch.no_grad():
        for i in range(3):
            preds = []
            for x, sign in ((x_a, -1.0), (x_b, 1.0)):
                with slider_scale(task.unet, sign * float(batch.levels[i])):
                    preds.append(task.predict(task.unet, x[i : i + 1], batch.timesteps[i : i + 1], cond))
            per_pair.append(visual_slider_loss(preds[0], preds[1], batch.noise[i : i + 1]))
    assert torch.allclose(loss, torch.cat(per_pair).mean(), atol=1e-6)
    assert float(loss) > 0


def test_batched_pass_equals_separate_passes(tiny_pipe, tmp_path):
    corpus = make_corpus(tmp_path / "c")
    task = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(batch_size=3, augment=True))
    _ready(task)
    batch = task.draw(torch.Generator().manual_seed(1))
    assert sorted(batch.levels.tolist()) == [1.0, 1.0, 2.0]  # mixed levels in one batch

    batched = task.batch_loss(task.unet, batch, lambda loss: loss.backward())
    grads_batched = _grads(task)
    _zero(task)
    object.__setattr__(task, "config", VisualSliderConfig(batch_size=3, augment=True, separate_passes=True))
    separate = task.batch_loss(task.unet, batch, lambda loss: loss.backward())
    grads_separate = _grads(task)

    assert abs(float(batched) - float(separate)) < 1e-5
    assert any(g.abs().sum() > 0 for g in grads_batched)
    for a, b in zip(grads_batched, grads_separate):
        assert torch.allclose(a, b, atol=1e-5)


def test_pair_shares_noise_and_timestep(tiny_pipe, tmp_path):
    corpus = make_corpus(tmp_path / "c")
    task = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(batch_size=2))
    _ready(task)
    seen = {}

    def spy(x, t, **kwargs):
        seen.update(x=x.detach().clone(), t=t.clone())
        return task.unet(x, t, **kwargs)

    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    task.compute_loss(spy, generator, lambda loss: None)
    generator.set_state(state)
    task.order, task.position = [], 0
    batch = task.draw(generator)  # the same draw again, to know x_0 of each image

    x_a, x_b = seen["x"].chunk(2)
    t_a, t_b = seen["t"].chunk(2)
    assert torch.equal(t_a, t_b) and t_a.shape == (2,)
    abar = task.noise_scheduler.alphas_cumprod[t_a].view(-1, 1, 1, 1)
    eps_a = (x_a - abar.sqrt() * batch.before) / (1 - abar).sqrt()
    eps_b = (x_b - abar.sqrt() * batch.after) / (1 - abar).sqrt()
    assert torch.allclose(eps_a, eps_b, atol=1e-4)
    assert not torch.allclose(eps_a[0], eps_a[1], atol=1e-2)  # but each pair its own noise


def test_paired_flip_and_epoch_order(tiny_pipe, tmp_path):
    corpus = make_corpus(tmp_path / "c")
    task = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(batch_size=1, augment=True))
    generator = torch.Generator().manual_seed(0)
    flips = set()
    epoch = []
    for _ in range(12):
        batch = task.draw(generator)
        i = batch.indices[0]
        epoch.append(i)
        flipped = torch.equal(batch.before[0], task.before[i].flip(-1))
        assert flipped == torch.equal(batch.after[0], task.after[i].flip(-1))  # both or neither
        flips.add(flipped)
    assert flips == {True, False}
    for k in range(0, 12, 3):
        assert sorted(epoch[k : k + 3]) == [0, 1, 2]  # every pair once per epoch


def test_second_task_encodes_nothing(tiny_pipe, tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "c")
    first = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig())
    assert first.num_encoded == 6
    calls = []
    encode = tiny_pipe.vae.encode
    monkeypatch.setattr(tiny_pipe.vae, "encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    second = VisualSliderTask(tiny_pipe, Corpus.open(tmp_path / "c"), VisualSliderConfig())
    assert second.num_encoded == 0 and calls == []
    assert torch.equal(first.before, second.before)
    assert first.before.shape == (3, 4, RES // tiny_pipe.vae_scale_factor, RES // tiny_pipe.vae_scale_factor)


def test_vae_encodes_in_fp32_whatever_its_dtype(tiny_pipe, tmp_path, monkeypatch):
    tiny_pipe.vae.to(torch.bfloat16)
    dtypes = []
    encode = tiny_pipe.vae.encode
    monkeypatch.setattr(
        tiny_pipe.vae, "encode", lambda x, *a, **k: dtypes.append(x.dtype) or encode(x, *a, **k)
    )
    task = VisualSliderTask(tiny_pipe, make_corpus(tmp_path / "c"), VisualSliderConfig())
    assert dtypes and set(dtypes) == {torch.float32}
    assert task.before.dtype == torch.float32
    assert tiny_pipe.vae.dtype == torch.bfloat16  # put back as it was


def test_captions_and_prompt(tiny_pipe, tmp_path):
    corpus = make_corpus(tmp_path / "c", captions=("a cat", None, None))
    task = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(prompt="a dog"))
    assert task.captions == ["a cat", "a dog", "a dog"]
    assert len(task.prompts) == 2


def test_metadata_and_summary(tiny_pipe, tmp_path):
    seeds = list(range(100))
    corpus = make_corpus(tmp_path / "c", provenance={"seeds": seeds, "layer": "L4", "channel": 847})
    task = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig())
    fields = task.metadata_fields()
    assert fields["kind"] == "visual" and fields["concept"] == "darker"
    assert fields["scale_range"] == (-3.0, 3.0)
    assert fields["extra"]["resolution"] == RES and fields["extra"]["batch_size"] == 1
    summary = fields["corpus"]
    assert summary["name"] == "darker" and summary["pairs"] == 3 and summary["levels"] == [1.0, 2.0]
    assert json.loads(summary["provenance"]) == {
        "seeds": {"count": 100, "first": 0, "last": 99},
        "layer": "L4",
        "channel": 847,
    }
    assert corpus_summary(corpus, 16)["training_resolution"] == 16
    assert summarize_provenance({"a": [1, 2]}) == {"a": [1, 2]}


def test_bad_inputs(tiny_pipe, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        VisualSliderConfig(batch_size=0)
    with pytest.raises(ValueError, match="resolution"):
        VisualSliderConfig(resolution=30)
    odd = Corpus.create(tmp_path / "odd", CorpusInfo(name="odd", resolution=18))
    odd.append("p0", _image(0, 1.0), _image(0, 0.5))
    with pytest.raises(ValueError, match="resolution 18: must be a multiple of 4"):
        VisualSliderTask(tiny_pipe, odd, VisualSliderConfig())
    corpus = make_corpus(tmp_path / "c")
    empty = Corpus.create(tmp_path / "e", CorpusInfo(name="e", resolution=RES))
    with pytest.raises(ValueError, match="no pairs"):
        VisualSliderTask(tiny_pipe, empty, VisualSliderConfig())
    task = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig())
    state = task.state_dict()
    other = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig(batch_size=2))
    with pytest.raises(ValueError, match="other visual settings"):
        other.load_state_dict(state)


def test_resume_refuses_a_corpus_that_changed(tiny_pipe, tmp_path):
    corpus = make_corpus(tmp_path / "c")
    state = VisualSliderTask(tiny_pipe, corpus, VisualSliderConfig()).state_dict()
    VisualSliderTask(tiny_pipe, Corpus.open(corpus.root), VisualSliderConfig()).load_state_dict(state)
    _image(9, 0.5).save(corpus.root / "after" / "p1.png")  # same pair count, other image
    changed = VisualSliderTask(tiny_pipe, Corpus.open(corpus.root), VisualSliderConfig())
    with pytest.raises(ValueError, match="corpus .* changed since the checkpoint"):
        changed.load_state_dict(state)
