"""Photo edits by inversion: scale 0 gives the photo back, sliders and gate act as in apply, cache, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from transfer.apply import RenderRequest
from transfer.compose import compose_sliders
from transfer.edit.cache import InversionCache, model_fingerprint
from transfer.edit.editor import PhotoEditor
from transfer.edit.inversion import Inversion, InversionSettings, decode_latents, encode_photos, invert
from transfer.edit.photo import load_photo
from transfer.edit.regenerate import NoiseMapScheduler, edit_pipeline
from transfer.gate import GateSpec


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((pixels(a) - pixels(b)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture
def striped_photo(tmp_path):
    """A 48x32 photo (not square: its centre 32x32 square is edited) with structure the model must keep."""
    array = np.zeros((32, 48, 3), dtype=np.uint8)
    array[:, ::4] = (220, 40, 40)
    array[::6, :, 2] = 200
    path = tmp_path / "photo.png"
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def toy_pipe():
    from toyworld import toy_sdxl_path
    from transfer.sdxl import load_sdxl

    return load_sdxl(str(toy_sdxl_path()), device="cpu")


@pytest.fixture(scope="module")
def toy_face():
    from toyworld.world import render, sample_attributes

    return render(sample_attributes(np.random.default_rng(5), 1)[0])


GATE_600 = GateSpec(start_noise=600)


def edit(pipe, photo, factors, scales, method="edit-friendly", steps=4, gate=GATE_600):
    """Edited images at each scale of one slider, with their gate records."""
    editor = PhotoEditor(pipe, photo, method)
    out = []
    with compose_sliders(pipe.unet, [factors], [0.0], "fused") as composition:
        for scale in scales:
            request = RenderRequest(
                prompt="a face", seed=3, scales=(scale,), steps=steps, guidance=3.0, gate=gate
            )
            image, record, _ = editor.render(composition, request)
            out.append((image, record))
    return out, editor


def test_edit_friendly_scale_zero_is_the_vae_round_trip_on_the_tiny_model(
    tiny_pipe, striped_photo, make_factors
):
    photo = load_photo(striped_photo, 32)
    round_trip = decode_latents(tiny_pipe, encode_photos(tiny_pipe, [photo.image]))[0]
    (zero, record), (two, _) = edit(tiny_pipe, photo, make_factors(tiny_pipe.unet), [0.0, 2.0])[0]
    assert np.abs(pixels(zero) - pixels(round_trip)).max() <= 1  # exact up to 8-bit rounding
    assert np.abs(pixels(two) - pixels(round_trip)).mean() > 2  # the slider does change the edit
    # The gate as in apply: sliders off while t > 600, on afterwards.
    assert record["weights"] == [0.0 if t > 600 else 1.0 for t in record["timesteps"]]
    assert 0.0 in record["weights"] and 1.0 in record["weights"]


def test_edit_friendly_on_the_toy_model_gives_the_face_back_and_moves_the_eyes(toy_pipe, toy_face, tmp_path):
    from toyworld import demo_slider_paths
    from toyworld.probe import measure
    from transfer.apply import SliderSpec, load_sliders

    path = tmp_path / "face.png"
    toy_face.save(path)
    photo = load_photo(path, 64)
    eyes = load_sliders([SliderSpec(demo_slider_paths()["eye-size"])], toy_pipe.unet)[0]
    results, editor = edit(toy_pipe, photo, eyes.factors, [-2.0, 0.0, 2.0], steps=10, gate=GateSpec())
    small, zero, big = (image for image, _ in results)
    round_trip = decode_latents(toy_pipe, encode_photos(toy_pipe, [photo.image]))[0]
    assert np.abs(pixels(zero) - pixels(round_trip)).max() <= 1
    assert psnr(zero, toy_face) >= psnr(round_trip, toy_face) - 0.01
    eye_size = measure([small, zero, big])["eye_size"]
    assert eye_size[0] < eye_size[1] < eye_size[2]
    assert editor.inversions_run == 1  # three scales, one inversion


def test_ddim_inversion_reconstructs_approximately_on_the_toy_model(toy_pipe, toy_face):
    settings = InversionSettings("ddim", prompt="a face", steps=10, guidance=3.0)
    inversion = invert(toy_pipe, [toy_face], settings)
    assert inversion.noise_maps is None
    image = edit_pipeline(toy_pipe, inversion)(
        prompt="a face", latents=inversion.latents, num_inference_steps=10, guidance_scale=3.0
    ).images[0]
    round_trip = decode_latents(toy_pipe, encode_photos(toy_pipe, [toy_face]))[0]
    assert 30.0 < psnr(image, round_trip) < 60.0  # close, but not the exact round trip


def test_noise_map_scheduler_refuses_a_schedule_it_has_no_maps_for(tiny_pipe):
    inversion = Inversion(torch.zeros(1, 4, 4, 4), torch.tensor([901, 1]), torch.zeros(2, 1, 4, 4, 4))
    scheduler = edit_pipeline(tiny_pipe, inversion).scheduler
    assert isinstance(scheduler, NoiseMapScheduler)
    scheduler.set_timesteps(4)
    with pytest.raises(RuntimeError, match="no noise map for timestep 751"):
        scheduler.step(torch.zeros(1, 4, 4, 4), scheduler.timesteps[0], torch.zeros(1, 4, 4, 4))


def test_cache_round_trip_and_misses(tiny_pipe, tmp_path):
    cache = InversionCache(tmp_path / "cache")
    fields = {"photo_sha256": "ab", "model": model_fingerprint(tiny_pipe), "seed": 0}
    inversion = Inversion(torch.randn(1, 4, 4, 4), torch.tensor([901, 1]), torch.randn(2, 1, 4, 4, 4))
    assert cache.load(fields) is None
    path = cache.save(fields, inversion)
    loaded = cache.load(fields)
    assert torch.equal(loaded.latents, inversion.latents) and torch.equal(
        loaded.noise_maps, inversion.noise_maps
    )
    assert cache.load({**fields, "seed": 1}) is None  # another key is another file
    path.write_bytes(b"not safetensors")
    assert cache.load(fields) is None  # a damaged file is a miss, not a crash
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # atomic writes leave no temporaries


def test_model_fingerprint_sees_a_changed_weight(tiny_pipe):
    before = model_fingerprint(tiny_pipe)
    assert model_fingerprint(tiny_pipe) == before
    with torch.no_grad():
        tiny_pipe.unet.conv_out.weight.add_(0.01)
    assert model_fingerprint(tiny_pipe) != before


def test_photo_is_centre_cropped_and_resized_like_ingest(striped_photo):
    from pair_datasets.images import center_square

    photo = load_photo(striped_photo, 16)
    with Image.open(striped_photo) as original:
        expected = center_square(original.convert("RGB"), 16)
    assert np.array_equal(pixels(photo.image), pixels(expected))
    assert photo.describe()["original_size"] == [48, 32]
    assert photo.statement() == "photo 48x32, centre square 32x32 kept, resized to 16x16"
