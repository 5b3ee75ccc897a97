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
