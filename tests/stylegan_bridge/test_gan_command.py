"""`concept-transfer gan export`: pickle in, safetensors out; errors are one line and exit 2."""

from __future__ import annotations

import torch
from nvlabs_pickle import write_malicious_pickle, write_nvlabs_pickle

from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.loading import load_generator
from stylegan_bridge.networks import Generator
from transfer.cli import main

TINY = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, channel_base=256, channel_max=16)


def test_gan_export_writes_a_loadable_safetensors(tmp_path, capsys):
    torch.manual_seed(0)
    G = Generator(TINY).eval()
    pkl = write_nvlabs_pickle(tmp_path / "G.pkl", G)
    out = tmp_path / "G.safetensors"
    assert main(["gan", "export", str(pkl), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    z = torch.randn(1, 16)
    assert torch.equal(load_generator(out)(z), G(z))
    # Existing output: refused without --force, replaced with it.
    assert main(["gan", "export", str(pkl), "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["gan", "export", str(pkl), "--out", str(out), "--force"]) == 0


def test_gan_export_refuses_a_malicious_pickle(tmp_path, capsys):
    marker = tmp_path / "pwned"
    pkl = write_malicious_pickle(tmp_path / "evil.pkl", "os", "system", f"touch {marker}")
    assert main(["gan", "export", str(pkl), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "refused: pickle asks for os.system" in err
    assert not marker.exists() and not (tmp_path / "x.safetensors").exists()


def test_gan_export_writes_an_nvlabs_structured_pickle_of_the_toy_gan(tmp_path, capsys):
    from stylegan_bridge.pickle_loader import read_pickle
    from toyworld.toy_gan import toy_gan_path

    out = tmp_path / "toy.pkl"
    assert main(["gan", "export", "toy", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    data = read_pickle(out)  # inert objects: nothing in the file runs
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert data["G_ema"].class_name == "Generator"
    assert b"Written by concept-transfer" in out.read_bytes()  # its module source is a comment, no code
    # The pickle goes through the FFHQ path and gives the shipped generator's images exactly.
    z = torch.randn(2, load_generator(out).z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(load_generator(out)(z), load_generator(toy_gan_path())(z))


def test_gan_export_names_an_unknown_source(tmp_path, capsys):
    assert main(["gan", "export", str(tmp_path / "missing.pkl"), "--out", str(tmp_path / "x.pkl")]) == 2
    err = capsys.readouterr().err
    assert "missing.pkl: generator file not found" in err and "toy" in err
    assert main(["gan", "export", "toy", "--out", str(tmp_path / "x.png")]) == 2
    assert "expected a .safetensors, .pt or .pkl file name" in capsys.readouterr().err
