"""A tiny world for library builds: a random tiny StyleGAN3, a hand-written candidates.json, fast settings.

The candidates file follows `concept-transfer discover`'s format (`concept-transfer.candidates/1`): two
style channels and one w direction (its vector in `directions.safetensors` beside the file).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stylegan_bridge.candidates import CandidateEntry, load_candidates
from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.direction_file import Direction, DirectionFile, file_sha256, save_directions
from stylegan_bridge.loading import export_generator, load_generator
from stylegan_bridge.networks import Generator
from stylegan_bridge.style_space import style_layers
from transfer.library.plan import LibrarySettings

TINY_GAN = GeneratorConfig(
    z_dim=8, w_dim=8, img_resolution=16, channel_base=128, channel_max=16,
    num_layers=4, num_critical=1, margin_size=2, mapping_layers=1,
)  # fmt: skip
CANDIDATES_FORMAT = "concept-transfer.candidates/1"


@pytest.fixture(autouse=True)
def private_stats_cache(tmp_path, monkeypatch):
    """Style statistics never go to the user's ~/.cache from a test (import this into a test module)."""
    monkeypatch.setenv("CONCEPT_TRANSFER_CACHE", str(tmp_path / "cache-home"))


def make_gan(path: Path, seed: int = 0) -> Path:
    """A random tiny generator exported as .safetensors."""
    torch.manual_seed(seed)
    return export_generator(Generator(TINY_GAN).eval(), path)


def candidate_entries(gan: Path, count: int = 3) -> list[dict]:
    """The first `count` of: a channel of layer 1, w direction 0, a channel of layer 2 (rank order)."""
    layers = [layer.name for layer in style_layers(load_generator(gan))]
    scores = {"effect": 0.1, "concentration": 0.5, "distinctness": 1.0, "total": 0.05}
    return [
        {"rank": 1, "name": f"{layers[1]}.c3", "kind": "channel", "layer": layers[1], "channel": 3,
         "delta": 2.0, "scores": scores},
        {"rank": 2, "name": "pca0", "kind": "w_direction", "direction_file": "directions.safetensors",
         "direction_index": 0, "delta": 2.0, "scores": scores},
        {"rank": 3, "name": f"{layers[2]}.c1", "kind": "channel", "layer": layers[2], "channel": 1,
         "delta": 2.0, "scores": scores},
    ][:count]  # fmt: skip


def write_candidates(folder: Path, gan: Path, entries: list[dict]) -> Path:
    """candidates.json (and directions.safetensors) in `folder` for the generator file `gan`."""
    folder.mkdir(parents=True, exist_ok=True)
    w = torch.zeros(TINY_GAN.w_dim)
    w[0] = 1.0
    direction = Direction(kind="w", name="pca0", w=w, sigma=1.0)
    save_directions(folder / "directions.safetensors", DirectionFile("pca", [direction]))
    data = {
        "format": CANDIDATES_FORMAT,
        "generator": {"file": gan.name, "sha256": file_sha256(gan), "resolution": TINY_GAN.img_resolution},
        "settings": {"seed": 0},
        "candidates": entries,
    }
    path = folder / "candidates.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def read_candidates(path: Path) -> list[CandidateEntry]:
    """The entries of a hand-written candidates.json, through discover's loader."""
    return load_candidates(path).entries


def tiny_settings(gan: Path, model: Path, **changes) -> LibrarySettings:
    """Seconds per slider on the tiny models: 2 seeds of pairs, 2 steps, 2 sampling steps."""
    values = dict(gan=str(gan), model=str(model), pairs=2, steps=2, batch=1, resolution=32, stats_samples=64,
                  prompts=("a cat", "a car"), preview_seeds=(0,), preview_scales=(-1.0, 0.0, 1.0),
                  sample_steps=2, device="cpu")  # fmt: skip
    return LibrarySettings(**{**values, **changes})


def generator_record(gan: Path) -> dict:
    """What `build.json` records of the generator."""
    return {"file": gan.name, "sha256": file_sha256(gan), "resolution": TINY_GAN.img_resolution}


def build_args(gan: Path, model: Path, out: Path, candidates: Path, *extra: str) -> list[str]:
    """`library build` arguments with the tiny settings."""
    return [
        "library", "build", "--gan", str(gan), "--model", str(model), "--out", str(out),
        "--candidates", str(candidates), "--pairs", "2", "--steps", "2", "--batch", "1", "--resolution", "32",
        "--stats-samples", "64", "--seeds", "0,1", "--calibration-seeds", "0,1", "--sample-steps", "2", "--device", "cpu", *extra,
    ]  # fmt: skip
