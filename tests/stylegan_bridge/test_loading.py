"""load_generator / export_generator: formats, round trips, errors, the opt-in NVlabs backend."""

from __future__ import annotations

import json

import pytest
import safetensors
import safetensors.torch
import torch
from nvlabs_pickle import write_nvlabs_pickle

from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.loading import export_generator, load_generator
from stylegan_bridge.networks import Generator

TINY = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, channel_base=256, channel_max=16)


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(3)
    G = Generator(TINY)
    G(torch.randn(2, 16), update_emas=True)
    return G.eval().requires_grad_(False)


def same_images(a, b) -> bool:
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    return torch.equal(a(z, truncation_psi=0.6), b(z, truncation_psi=0.6))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_export_import_round_trip_is_bit_exact(tmp_path, G, suffix):
    path = export_generator(G, tmp_path / f"G{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [f"G{suffix}"]  # no temp file left behind
    G2 = load_generator(path)
    assert isinstance(G2, Generator) and G2.config == G.config and not G2.training
    assert same_images(G, G2)


def test_safetensors_metadata_holds_config(tmp_path, G):
    path = export_generator(G, tmp_path / "G.safetensors")
    with safetensors.safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == "concept_transfer.stylegan3"
    assert json.loads(meta["config"])["img_resolution"] == 32


def test_pkl_dispatch_and_device(tmp_path, G):
    G2 = load_generator(write_nvlabs_pickle(tmp_path / "G.pkl", G), device="cpu")
    assert same_images(G, G2)


def test_errors_name_the_file(tmp_path, G):
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        load_generator(tmp_path / "missing.pkl")
    (tmp_path / "G.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"G\.onnx: unknown generator format '\.onnx'"):
        load_generator(tmp_path / "G.onnx")
    bare = tmp_path / "bare.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(bare))
    with pytest.raises(
        ValueError, match=r"bare\.safetensors: safetensors metadata has no generator 'config'"
    ):
        load_generator(bare)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match=r"broken\.safetensors: not a readable safetensors file"):
        load_generator(broken)
    state_only = tmp_path / "state.pt"
    torch.save(G.state_dict(), state_only)
    with pytest.raises(ValueError, match=r"state\.pt: expected a dict with 'config' and 'state_dict'"):
        load_generator(state_only)
    odd = tmp_path / "odd.pt"
    torch.save({"config": 3, "state_dict": [1]}, odd)
    with pytest.raises(ValueError, match=r"odd\.pt: expected a dict with 'config' and 'state_dict'"):
        load_generator(odd)
    with pytest.raises(ValueError, match=r"--device nowhere: not a torch device"):
        load_generator(odd, device="nowhere")
    with pytest.raises(ValueError, match=r"export format must be \.safetensors or \.pt"):
        export_generator(G, tmp_path / "G.pkl")


def test_mismatched_weights_are_a_value_error(tmp_path, G):
    path = export_generator(G, tmp_path / "G.pt")
    data = torch.load(path, weights_only=True)
    data["config"]["channel_max"] = 8
    torch.save(data, path)
    with pytest.raises(ValueError, match=r"G\.pt: weights do not match the generator its config describes"):
        load_generator(path)


def test_nvlabs_backend_needs_the_code(tmp_path, G, monkeypatch):
    path = write_nvlabs_pickle(tmp_path / "G.pkl", G)
    monkeypatch.setenv("STYLEGAN3_DIR", str(tmp_path))  # a folder without NVlabs code
    with pytest.raises(ValueError, match="does not hold NVlabs StyleGAN3"):
        load_generator(path, backend="nvlabs")
    with pytest.raises(ValueError, match="backend must be one of ours, nvlabs"):
        load_generator(path, backend="fast")
