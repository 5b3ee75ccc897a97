"""The toy StyleGAN3: latent <-> attributes, the eye-channel structure, the fit loop, and the shipped file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stylegan_bridge import Generator, load_generator
from stylegan_bridge.directions import box_mask, parse_box, rank_channels
from stylegan_bridge.style_space import compute_style_stats, style_vectors
from toyworld import assets_dir
from toyworld.toy_gan import (
    EYE_CHANNEL,
    EYE_LAYER,
    NUM_ATTRIBUTES,
    TOY_GAN_CONFIG,
    TOY_GAN_FILE,
    apply_masks,
    attributes_from_z,
    init_eye_path,
    normalize_latent,
    orient_eye_channel,
    structure_masks,
    toy_gan_path,
    z_from_attributes,
)
from toyworld.toy_gan_fit import (
    FitConfig,
    finalize,
    fit,
    fit_report,
    region_weights,
    synthesis_trainable,
)
from toyworld.toy_gan_measure import EYE_BOX, channel_effect, eye_size_from_pixels
from toyworld.training import to_tensor
from toyworld.world import SPECS, render_batch, sample_attributes

SHIPPED = (assets_dir() / TOY_GAN_FILE).exists()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="toy StyleGAN3 not built (toyworld build --stage gan)")


def _masked_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(TOY_GAN_CONFIG).eval()
    apply_masks(G, structure_masks(G))
    return G


def test_attributes_from_random_latents_fill_each_range_uniformly():
    z = torch.randn(20_000, TOY_GAN_CONFIG.z_dim, generator=torch.Generator().manual_seed(0))
    values = attributes_from_z(z)
    for k, spec in enumerate(SPECS):
        u = (values[:, k] - spec.low) / (spec.high - spec.low)
        assert 0.0 <= u.min() and u.max() <= 1.0
        # Uniform: quartiles at 1/4, 1/2, 3/4.
        np.testing.assert_allclose(np.quantile(u, [0.25, 0.5, 0.75]), [0.25, 0.5, 0.75], atol=0.02)


def test_z_from_attributes_round_trips_and_ignores_scale():
    attrs = sample_attributes(np.random.default_rng(3), 64)
    z = z_from_attributes(attrs, seed=1)
    expected = np.stack([a.to_array() for a in attrs])
    np.testing.assert_allclose(attributes_from_z(z), expected, atol=1e-4)
    # The mapping net normalises z, so any positive scale of z is the same face.
    np.testing.assert_allclose(attributes_from_z(3.0 * z), expected, atol=1e-4)
    with pytest.raises(ValueError, match="z must be"):
        attributes_from_z(np.zeros((2, 5)))


def test_eye_latent_reaches_only_the_eye_style_channel():
    G = _masked_generator()
    x = torch.from_numpy(normalize_latent(np.random.default_rng(0).standard_normal((3, 32)))).float()
    moved = x.clone()
    moved[:, 0] += 0.7  # eye-size coordinate; rescale the padding so the norm (and the rest) stays
    room = TOY_GAN_CONFIG.z_dim - moved[:, :NUM_ATTRIBUTES].square().sum(1, keepdim=True)
    moved[:, NUM_ATTRIBUTES:] *= (room / moved[:, NUM_ATTRIBUTES:].square().sum(1, keepdim=True)).sqrt()
    with torch.no_grad():
        before, after = style_vectors(G, G.mapping(x, None)), style_vectors(G, G.mapping(moved, None))
    eye_layer = G.synthesis.layer(EYE_LAYER).spec.name
    for name in before:
        diff = (after[name] - before[name]).abs()
        if name == eye_layer:
            assert diff[:, EYE_CHANNEL].min() > 1e-4
            diff[:, EYE_CHANNEL] = 0
        assert diff.max() < 1e-5, name


def test_orient_eye_channel_flips_sign_without_changing_images():
    G = _masked_generator(seed=1)
    ws = G.mapping(torch.randn(2, 32), None)
    with torch.no_grad():
        before = G.synthesis(ws)
        layer = G.synthesis.layer(EYE_LAYER)
        style_before = layer.affine(ws[:, EYE_LAYER + 1])[:, EYE_CHANNEL].clone()
        flipped = orient_eye_channel(G) < 0
        if not flipped:  # force a flip to test the identity
            layer.affine.weight[EYE_CHANNEL].neg_()
            layer.affine.bias[EYE_CHANNEL].neg_()
            layer.weight[:, EYE_CHANNEL].neg_()
        torch.testing.assert_close(G.synthesis(ws), before, atol=1e-5, rtol=0)
        style_after = layer.affine(ws[:, EYE_LAYER + 1])[:, EYE_CHANNEL]
    torch.testing.assert_close(style_after, -style_before)


def test_trainable_forward_matches_reference_and_has_gradients():
    G = _masked_generator()
    ws = G.mapping(torch.randn(2, 32), None)
    with torch.no_grad():
        reference = G.synthesis(ws)
    images = synthesis_trainable(G, ws)
    torch.testing.assert_close(images, reference, atol=1e-4, rtol=0)
    images.square().mean().backward()
    assert G.synthesis.layer(EYE_LAYER).affine.weight.grad.abs().sum() > 0


def test_region_weights_cover_the_drawn_eyes():
    attrs = sample_attributes(np.random.default_rng(5), 4)
    values = np.stack([a.to_array() for a in attrs])
    weights = region_weights(values, eye_weight=10.0, mouth_weight=3.0)
    assert weights.shape == (4, 1, 64, 64)
    pupils = to_tensor(render_batch(attrs)).max(dim=1, keepdim=True).values < -0.75  # near-black pixels
    assert (weights[pupils] == 10.0).all()
    assert set(torch.unique(weights).tolist()) == {1.0, 3.0, 10.0}


def test_eye_size_from_pixels_reads_world_renders():
    attrs = sample_attributes(np.random.default_rng(7), 200)
    measured = eye_size_from_pixels(to_tensor(render_batch(attrs)))
    truth = np.array([a.eye_size for a in attrs])
    assert np.corrcoef(measured, truth)[0, 1] > 0.97
    assert np.abs(measured - truth).mean() < 0.3


def test_fit_resumes_and_exports_a_loadable_generator(tmp_path):
    fit(FitConfig(work=tmp_path, steps=1, batch=2, sample_every=1))
    fit(FitConfig(work=tmp_path, steps=2, batch=2, sample_every=1))
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    assert (tmp_path / "samples.png").exists()
    assert fit_report(tmp_path)["steps"] == 2
    out = finalize(tmp_path, tmp_path / "toy.safetensors")
    G = load_generator(out)
    assert G.config == TOY_GAN_CONFIG
    assert float(G.mapping.w_avg.abs().sum()) > 0


@needs_shipped
def test_shipped_generator_loads_and_renders_faces():
    G = load_generator(toy_gan_path())
    assert isinstance(G, Generator) and G.config == TOY_GAN_CONFIG
    assert toy_gan_path().stat().st_size < 5_000_000
    z = z_from_attributes(sample_attributes(np.random.default_rng(0), 4))
    with torch.no_grad():
        images = G(z)
    assert images.shape == (4, 3, 64, 64) and torch.isfinite(images).all()
    assert -1.5 < float(images.min()) and float(images.max()) < 1.5
    # Structure survived training: the eye channel's affine reads only w[0], nothing else does.
    masks = structure_masks(G)
    params = dict(G.named_parameters())
    for name, mask in masks.items():
        assert float(params[name][mask == 0].abs().max()) == 0.0, name


@needs_shipped
def test_shipped_eye_channel_enlarges_eyes_and_ranks_first_in_its_box():
    G = load_generator(toy_gan_path())
    stats = compute_style_stats(G, num_samples=2000)
    effect = channel_effect(G, EYE_LAYER, EYE_CHANNEL, stats, deltas=(-1.0, 0.0, 1.0), seeds=range(6))
    small, _, big = effect["change"]["eye_size_pixels"]
    assert big > 0.3 and small < -0.3  # world stds of eye size
    region = box_mask(parse_box(EYE_BOX), 64)
    ranked = rank_channels(
        G, stats, seeds=(0, 1), delta=2.0, layers=[EYE_LAYER], region=region, progress=False
    )
    assert ranked[0].channel == EYE_CHANNEL


def test_init_eye_path_gives_the_eye_channel_unit_gain():
    G = _masked_generator()
    init_eye_path(G)
    z = torch.randn(500, TOY_GAN_CONFIG.z_dim, generator=torch.Generator().manual_seed(0))
    x_eye = torch.from_numpy(normalize_latent(z.numpy())[:, 0]).float()
    with torch.no_grad():
        styles = G.synthesis.layer(EYE_LAYER).affine(G.mapping(z, None)[:, EYE_LAYER + 1])[:, EYE_CHANNEL]
    inside = x_eye > -2.9  # the leaky ReLUs bend below x = -3
    torch.testing.assert_close(styles[inside], 1 + 0.4 * x_eye[inside], atol=1e-4, rtol=0)
