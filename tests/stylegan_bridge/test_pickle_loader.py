"""No-exec loading of NVlabs-structured pickles: bit-exact round trips, refusals, broken files."""

from __future__ import annotations

import pickle

import pytest
import torch
from nvlabs_pickle import pwn_source, write_malicious_pickle, write_nvlabs_pickle

from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.networks import Generator
from stylegan_bridge.pickle_loader import load_nvlabs_pickle, read_pickle

TINY_T = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, channel_base=256, channel_max=16)
TINY_R = GeneratorConfig(
    z_dim=16, w_dim=16, c_dim=2, img_resolution=32, channel_base=512, channel_max=32, conv_kernel=1,
    use_radial_filters=True, magnitude_ema_beta=0.5 ** (32 / 20000), conv_clamp=None,
)  # fmt: skip


def trained_looking(config: GeneratorConfig, seed: int = 0) -> Generator:
    """Random weights with moved EMAs and a non-zero input transform, as a trained generator has."""
    torch.manual_seed(seed)
    G = Generator(config)
    with torch.no_grad():
        G.synthesis.input.affine.weight.normal_(0, 0.3)
        G(torch.randn(4, config.z_dim), torch.randn(4, config.c_dim), update_emas=True)
    return G.eval().requires_grad_(False)


def render(G: Generator, seed: int = 0, psi: float = 0.7) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z, c = torch.randn(2, G.z_dim, generator=gen), torch.randn(2, G.c_dim, generator=gen)
    return G(z, c, truncation_psi=psi)


@pytest.fixture(scope="module")
def G_t():
    return trained_looking(TINY_T)


@pytest.fixture(scope="module")
def G_r():
    return trained_looking(TINY_R, seed=1)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("numpy_core", ["numpy._core", "numpy.core"])
def test_round_trip_is_bit_exact(tmp_path, G_t, protocol, numpy_core):
    path = write_nvlabs_pickle(tmp_path / "snap.pkl", G_t, protocol=protocol, numpy_core=numpy_core)
    G = load_nvlabs_pickle(path)
    assert G.config == G_t.config
    for key, value in G_t.state_dict().items():
        assert torch.equal(G.state_dict()[key], value), key
    assert torch.equal(render(G), render(G_t))


def test_r_config_with_labels_round_trips(tmp_path, G_r):
    G = load_nvlabs_pickle(write_nvlabs_pickle(tmp_path / "r.pkl", G_r, protocol=4))
    assert G.config.use_radial_filters and G.config.conv_kernel == 1 and G.config.conv_clamp is None
    assert torch.equal(render(G, psi=0.5), render(G_r, psi=0.5))


def test_pickle_stream_has_nvlabs_structure(tmp_path, G_t):
    import pickletools

    path = write_nvlabs_pickle(tmp_path / "s.pkl", G_t, protocol=2)
    names = {arg for op, arg, _ in pickletools.genops(path.read_bytes()) if op.name == "GLOBAL"}
    assert "torch_utils.persistence _reconstruct_persistent_obj" in names
    assert "dnnlib.util EasyDict" in names


def test_prefers_g_ema_then_g(tmp_path, G_t, G_r):
    # G only.
    G = load_nvlabs_pickle(write_nvlabs_pickle(tmp_path / "g.pkl", G_t, keys=("G", "D")))
    assert G.config == TINY_T
    # A dict with neither: the error lists what is there.
    with pytest.raises(
        ValueError, match=r"no generator in the pickle \(looked for G_ema, G; found D, augment_pipe\)"
    ):
        load_nvlabs_pickle(write_nvlabs_pickle(tmp_path / "d.pkl", G_t, keys=("D", "augment_pipe")))


def test_embedded_module_source_never_runs(tmp_path, G_t):
    marker = tmp_path / "pwned_by_module_src"
    path = write_nvlabs_pickle(tmp_path / "src.pkl", G_t, module_src=pwn_source(marker))
    assert b"pwned" in path.read_bytes()  # the payload is really in the file
    load_nvlabs_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize(
    "module, name, make_args",
    [
        ("os", "system", lambda m: (f"touch {m}",)),
        ("posix", "system", lambda m: (f"touch {m}",)),
        ("builtins", "exec", lambda m: (f"open({str(m)!r}, 'w').write('x')",)),
        ("builtins", "eval", lambda m: (f"open({str(m)!r}, 'w')",)),
        ("subprocess", "call", lambda m: (["touch", str(m)],)),
    ],
)
def test_malicious_globals_are_refused_and_do_not_run(tmp_path, protocol, module, name, make_args):
    marker = tmp_path / "pwned"
    path = write_malicious_pickle(tmp_path / "evil.pkl", module, name, *make_args(marker), protocol=protocol)
    with pytest.raises(ValueError, match=rf"refused: pickle asks for {module}\.{name}") as info:
        load_nvlabs_pickle(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    # Sanity: the same file run through plain pickle would have done it (proves the payload is live).
    if (module, name) == ("os", "system") and protocol == 4:
        with open(path, "rb") as handle:
            pickle.load(handle)
        assert marker.exists()


def test_truncated_file_is_a_clear_error(tmp_path, G_t):
    path = write_nvlabs_pickle(tmp_path / "full.pkl", G_t)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        ValueError, match=r"cut\.pkl: not a readable network pickle \(truncated or not a pickle\?\)"
    ):
        load_nvlabs_pickle(cut)


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", bytes(range(256))])
def test_not_a_pickle_is_a_clear_error(tmp_path, content):
    path = tmp_path / "junk.pkl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"junk\.pkl: "):
        load_nvlabs_pickle(path)


def test_non_stylegan_pickles_are_rejected(tmp_path):
    plain = tmp_path / "list.pkl"
    plain.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match=r"list\.pkl: expected a dict of networks"):
        load_nvlabs_pickle(plain)
    # A persistent module without generator init kwargs (e.g. some other network).
    path = tmp_path / "other.pkl"
    from stylegan_bridge.pickle_export import NVlabsStylePickler

    with open(path, "wb") as handle:
        NVlabsStylePickler(handle, 4, "").dump({"G_ema": torch.nn.Linear(2, 2)})
    with pytest.raises(
        ValueError, match=r"other\.pkl: G_ema init kwargs: missing generator argument 'z_dim'"
    ):
        load_nvlabs_pickle(path)


def test_read_pickle_returns_inert_objects(tmp_path, G_t):
    data = read_pickle(write_nvlabs_pickle(tmp_path / "s.pkl", G_t))
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert type(data["G_ema"]).__name__ == "PersistentObject" and data["G_ema"].class_name == "Generator"
    assert data["training_set_kwargs"]["resolution"] == 32


# Hand-written opcode streams that try to get around PersistentObject's checks.
_PERSIST = b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n"
_META = b"}(X\x07\x00\x00\x00versionK\x06X\x05\x00\x00\x00state}u"


@pytest.mark.parametrize(
    "stream",
    [
        # NEWOBJ: cls.__new__(cls) then BUILD, skipping __init__'s checks.
        b"\x80\x04}X\x05\x00\x00\x00G_ema" + _PERSIST + b")\x81" + _META + b"bs.",
        # REDUCE with a valid meta, then BUILD replacing the checked state with an int.
        b"\x80\x04}X\x05\x00\x00\x00G_ema" + _PERSIST + _META + b"\x85R}X\x05\x00\x00\x00stateK\x01sbs.",
    ],
    ids=["newobj", "build-after-reduce"],
)
def test_persistent_objects_cannot_be_forged(tmp_path, stream):
    path = tmp_path / "forged.pkl"
    path.write_bytes(stream)
    with pytest.raises(ValueError, match=r"forged\.pkl: not a readable network pickle"):
        load_nvlabs_pickle(path)


def test_malformed_module_state_is_a_clear_error(tmp_path):
    # A genuine persistent object whose _parameters is a number: an error naming the file, not a traceback.
    meta = b"}(X\x07\x00\x00\x00versionK\x06X\x05\x00\x00\x00state}(X\x0b\x00\x00\x00_parametersK\x01X\x0c\x00\x00\x00_init_kwargs}(X\x05\x00\x00\x00z_dimK\x08X\x05\x00\x00\x00c_dimK\x00X\x05\x00\x00\x00w_dimK\x08X\x0e\x00\x00\x00img_resolutionK\x10X\x0c\x00\x00\x00img_channelsK\x03uuu"
    path = tmp_path / "odd.pkl"
    path.write_bytes(b"\x80\x04}X\x05\x00\x00\x00G_ema" + _PERSIST + meta + b"\x85Rs.")
    with pytest.raises(ValueError, match=r"odd\.pkl: G_ema: module <root>: _parameters is not a dict"):
        load_nvlabs_pickle(path)
