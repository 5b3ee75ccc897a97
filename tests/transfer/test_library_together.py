"""Several sliders in one training loop: a group of one is the single slider, and each sample reaches
only its own adapter (the same loss and gradients as every adapter on the whole batch, masked)."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import torch
from PIL import Image

from pair_datasets import Corpus, CorpusInfo
from sliders.config import TrainSettings
from sliders.lora import per_sample_scale, slider_parameters
from sliders.objectives import visual_slider_loss
from sliders.slider_file import load_slider
from sliders.trainer import prepare_sliders
from sliders.visual_slider import VisualSliderConfig, VisualSliderTask, train_visual_slider
from transfer.library.together import VisualSliderGroup, train_slider_group
from transfer.sdxl import load_sdxl

RES = 32


def make_corpus(root, shade: float, pairs: int = 3) -> Corpus:
    """Random 32 px pairs whose after image is `shade` times the before image."""
    corpus = Corpus.create(root, CorpusInfo(name=root.name, resolution=RES, provenance={}))
    for i in range(pairs):
        before = np.random.default_rng(i).integers(0, 256, (RES, RES, 3)).astype(np.float32)
        corpus.append(f"p{i}", *(Image.fromarray((before * s).clip(0, 255).astype(np.uint8)) for s in (1, shade)),
                      level=1.0 + i % 2)  # fmt: skip
    return Corpus.open(root)


def test_group_of_one_trains_the_single_slider(tiny_sdxl_path, tmp_path):
    corpus = make_corpus(tmp_path / "c", 0.5)
    config = VisualSliderConfig(concept="darker", batch_size=2, train=TrainSettings(steps=3, lr=1e-2, seed=4))
    alone = train_visual_slider(load_sdxl(str(tiny_sdxl_path), device="cpu"), corpus, config,
                                tmp_path / "alone.safetensors", base_model="m", show_progress=False)  # fmt: skip
    pipe = load_sdxl(str(tiny_sdxl_path), device="cpu")
    group = VisualSliderGroup({"slider_0": VisualSliderTask(pipe, corpus, config)})
    out = tmp_path / "group.safetensors"
    train_slider_group(group, config.train, {"slider_0": out}, out, base_model="m", show_progress=False)

    a, g = load_slider(alone), load_slider(out)
    assert a.metadata == g.metadata
    assert a.factors.keys() == g.factors.keys()
    for name, factors in a.factors.items():
        assert torch.equal(factors.down, g.factors[name].down) and torch.equal(factors.up, g.factors[name].up)
    assert (tmp_path / "alone.loss.csv").read_text() == (tmp_path / "group.loss.csv").read_text()


def test_each_sample_reaches_only_its_own_adapter(tiny_pipe, tmp_path):
    unet = tiny_pipe.unet
    config = VisualSliderConfig(batch_size=2)
    tasks = {f"s{k}": VisualSliderTask(tiny_pipe, make_corpus(tmp_path / f"c{k}", shade), config)
             for k, shade in enumerate((0.5, 1.5))}  # fmt: skip
    group = VisualSliderGroup(tasks)
    params = prepare_sliders(unet, TrainSettings(steps=1), list(tasks))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in params:  # non-zero up factors: the default init makes every adapter's output zero
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)

    routed = group.compute_loss(unet, torch.Generator().manual_seed(1), lambda loss: loss.backward())
    routed_grads = {n: [p.grad.clone() for p in slider_parameters(unet, n)] for n in tasks}
    for param in params:
        param.grad = None
    # Reference: every adapter on the whole batch, its scale zero on the other member's samples.
    for task in tasks.values():
        task.order, task.position = [], 0
    draws = torch.Generator().manual_seed(1)
    batches = {name: task.draw(draws) for name, task in tasks.items()}
    x, t, cond, ids = group._stack(batches)
    unet.set_adapters(list(tasks))
    with ExitStack() as stack:
        for k, (name, batch) in enumerate(batches.items()):
            scales = torch.zeros(len(x))
            scales[4 * k : 4 * k + 4] = torch.cat([-batch.levels, batch.levels])
            stack.enter_context(per_sample_scale(unet, scales, name))
        pred = tasks["s0"].predict(unet, x, t, cond, ids)
        losses = [
            visual_slider_loss(p[:2], p[2:], b.noise).mean() for p, b in zip(pred.split(4), batches.values())
        ]
        reference = torch.stack(losses).sum()
        reference.backward()

    assert torch.allclose(routed, reference.detach(), rtol=1e-5)
    assert [group.member_losses(n) for n in tasks] == [[float(loss.detach())] for loss in losses]
    for name in tasks:
        grads = [p.grad for p in slider_parameters(unet, name)]
        assert any(g.abs().sum() > 0 for g in grads)
        for a, b in zip(routed_grads[name], grads):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
