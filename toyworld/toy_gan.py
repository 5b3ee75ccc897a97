"""The toy StyleGAN3: a small generator of our own StyleGAN3 implementation, fitted to the toy world.

Fitted by regression, not adversarially: a latent z carries the world's attributes (`attributes_from_z`),
and the generator is trained to draw exactly the face `world.render` draws for them (`toy_gan_fit`).

Eye size lives in ONE style channel by construction (`EYE_LAYER`, `EYE_CHANNEL`): a fixed sparsity
pattern (`structure_masks`) routes the eye-size coordinate of the normalised latent through one hidden
unit of each mapping layer into w[EYE_W], and only that channel's affine row reads w[EYE_W]. The
generator is still a plain StyleGAN3 (the pattern is zeros in ordinary weights), so
`stylegan_bridge.load_generator` loads it and `directions channels --box` finds the channel like any other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.special import betainc, betaincinv

from stylegan_bridge import Generator, GeneratorConfig
from toyworld.world import ATTRIBUTE_NAMES, SPECS, FaceAttributes

TOY_GAN_FILE = "toy_stylegan3.safetensors"

# 64 px like the world; small channel counts, margin 4 and no extra up-sampling inside the filtered
# leaky ReLU keep a training step near a second on one CPU thread (the alias-free default costs ~10 s).
TOY_GAN_CONFIG = GeneratorConfig(
    z_dim=32,
    w_dim=32,
    img_resolution=64,
    channel_base=2048,
    channel_max=64,
    num_layers=6,
    margin_size=4,
    lrelu_upsampling=1,
    mapping_lr_multiplier=1.0,  # regression needs no slow mapping net (NVlabs use 0.01 against GAN noise)
)

EYE_ATTRIBUTE = "eye_size"
EYE_Z = ATTRIBUTE_NAMES.index(EYE_ATTRIBUTE)  # coordinate of the normalised latent that holds eye size
EYE_W = 0  # coordinate of w (and hidden unit of each mapping layer) reserved for eye size
EYE_LAYER = 3  # synthesis layer L3 (input at 32 samples/image, output at 64)
EYE_CHANNEL = 0  # its style channel that alone carries eye size
NUM_ATTRIBUTES = len(ATTRIBUTE_NAMES)


def toy_gan_path() -> Path:
    """The shipped toy StyleGAN3 (what `--gan toy` loads); FileNotFoundError when it was never built."""
    from toyworld import assets_dir

    path = assets_dir() / TOY_GAN_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"no toy StyleGAN3 at {path}: run `concept-transfer toyworld build --stage gan`"
        )
    return path


def load_toy_gan(path: Path | None = None) -> Generator:
    """The toy generator through the public loader (default: the shipped file)."""
    from stylegan_bridge import load_generator

    G = load_generator(path if path is not None else toy_gan_path())
    assert isinstance(G, Generator)
    return G


# ---------------------------------------------------------------------------------------------------------
# Latent <-> attributes. The mapping net first normalises z to x = z * sqrt(d) / |z| (pixel norm), so the
# attributes are read from x, where nothing is lost: x[:K] are the attributes, x[K:] pad the norm.


def _beta_shape() -> float:
    # x_i / sqrt(d) = z_i / |z| for z ~ N(0, I_d); (1 + z_i/|z|) / 2 ~ Beta((d-1)/2, (d-1)/2).
    return (TOY_GAN_CONFIG.z_dim - 1) / 2


def normalize_latent(z: np.ndarray) -> np.ndarray:
    """z [N, z_dim] -> x = z * sqrt(d) / |z|, the mapping net's first step (NVlabs' normalize_2nd_moment)."""
    z = np.asarray(z, dtype=np.float64)
    return z * np.sqrt(z.shape[1] / np.maximum(np.square(z).sum(axis=1, keepdims=True), 1e-16))


def attributes_from_z(z: np.ndarray | torch.Tensor) -> np.ndarray:
    """World attributes [N, K] (world units) of latents z [N, z_dim]: uniform in each range when z ~ N(0, I)."""
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu().numpy()
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != TOY_GAN_CONFIG.z_dim:
        raise ValueError(f"z must be [N, {TOY_GAN_CONFIG.z_dim}], got {z.shape}")
    d = z.shape[1]
    x = normalize_latent(z)[:, :NUM_ATTRIBUTES]
    a = _beta_shape()
    u = betainc(a, a, np.clip((x / np.sqrt(d) + 1) / 2, 0, 1))  # exact CDF: u ~ U(0, 1)
    lows = np.array([s.low for s in SPECS])
    highs = np.array([s.high for s in SPECS])
    return (lows + u * (highs - lows)).astype(np.float32)


def z_from_attributes(attrs: list[FaceAttributes], seed: int = 0) -> torch.Tensor:
    """Latents [N, z_dim] whose `attributes_from_z` are `attrs` (random padding dims, seeded).

    Faces whose attribute coordinates alone exceed the latent's norm (extreme corners of the attribute
    box) cannot be reached exactly; they are pulled toward the middle until they fit.
    """
    d = TOY_GAN_CONFIG.z_dim
    lows = np.array([s.low for s in SPECS])
    highs = np.array([s.high for s in SPECS])
    values = np.stack([a.to_array() for a in attrs]).astype(np.float64)
    u = np.clip((values - lows) / (highs - lows), 1e-6, 1 - 1e-6)
    a = _beta_shape()
    x_attr = (2 * betaincinv(a, a, u) - 1) * np.sqrt(d)  # [N, K]
    rng = np.random.default_rng(seed)
    pad = rng.standard_normal((len(attrs), d - NUM_ATTRIBUTES))
    room = d - np.square(x_attr).sum(axis=1, keepdims=True)
    shrink = np.where(room < 0.05 * d, np.sqrt(0.95 * d / np.square(x_attr).sum(axis=1, keepdims=True)), 1.0)
    x_attr = x_attr * shrink
    room = d - np.square(x_attr).sum(axis=1, keepdims=True)
    pad = pad / np.linalg.norm(pad, axis=1, keepdims=True) * np.sqrt(room)
    return torch.from_numpy(np.concatenate([x_attr, pad], axis=1)).float()


# ---------------------------------------------------------------------------------------------------------
# The sparsity pattern that gives eye size its own style channel.


def structure_masks(G: Generator) -> dict[str, torch.Tensor]:
    """{parameter name: 0/1 mask}: the weights that must stay zero so eye size reaches one style channel."""
    masks: dict[str, torch.Tensor] = {}
    for k in range(G.mapping.num_layers):
        fc = getattr(G.mapping, f"fc{k}")
        m = torch.ones_like(fc.weight)
        source = EYE_Z if k == 0 else EYE_W
        m[EYE_W, :] = 0  # the eye unit reads only the eye coordinate ...
        m[EYE_W, source] = 1
        m[:, source] = 0  # ... and nothing else reads it
        m[EYE_W, source] = 1
        if k == 0:
            m[:, NUM_ATTRIBUTES:] = 0  # padding coordinates carry no face: they only fix the latent's norm
        masks[f"mapping.fc{k}.weight"] = m
    masks["synthesis.input.affine.weight"] = _column_mask(G.synthesis.input.affine.weight)
    for i, layer in enumerate(G.synthesis.layers):
        m = _column_mask(layer.affine.weight)
        if i == EYE_LAYER:
            m[EYE_CHANNEL, :] = 0
            m[EYE_CHANNEL, EYE_W] = 1
        masks[f"synthesis.{layer.spec.name}.affine.weight"] = m
    return masks


@torch.no_grad()
def init_eye_path(G: Generator, style_gain: float = 0.4) -> None:
    """Start the eye pathway at unit gain: style = 1 + style_gain * x_eye (before any training).

    Equalised learning rate scales each weight by 1/sqrt(fan_in), which assumes every input is used; the
    eye unit reads one input, so random init would shrink its signal by sqrt(fan_in) per layer (about
    200x over three layers) and training would never pick it up.
    """
    fc0, fc1 = G.mapping.fc0, G.mapping.fc1
    assert G.mapping.num_layers == 2 and fc0.bias_gain == 1 and fc1.bias_gain == 1
    fc0.weight[EYE_W, EYE_Z] = 1 / fc0.weight_gain  # h = sqrt2 * (x + 3): positive, linear
    fc0.bias[EYE_W] = 3.0
    fc1.weight[EYE_W, EYE_W] = 1 / fc1.weight_gain  # w = 2 * (x + 3)
    fc1.bias[EYE_W] = 0.0
    affine = G.synthesis.layer(EYE_LAYER).affine
    affine.weight[EYE_CHANNEL, EYE_W] = style_gain / 2 / affine.weight_gain
    affine.bias[EYE_CHANNEL] = (1.0 - 3 * style_gain) / affine.bias_gain


def _column_mask(weight: torch.Tensor) -> torch.Tensor:
    m = torch.ones_like(weight)
    m[:, EYE_W] = 0
    return m


@torch.no_grad()
def apply_masks(G: Generator, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked weights in place (after init and after every optimiser step)."""
    params = dict(G.named_parameters())
    for name, m in masks.items():
        params[name].mul_(m)


def eye_style_layer_name(G: Generator) -> str:
    """NVlabs name of the layer whose style channel `EYE_CHANNEL` carries eye size (e.g. L3_72_64)."""
    return G.synthesis.layer(EYE_LAYER).spec.name


@torch.no_grad()
def orient_eye_channel(G: Generator) -> float:
    """Make +style mean bigger eyes (flip the channel's sign exactly if needed); returns d(eye)/d(style) sign.

    Negating a style channel together with the conv weights it modulates leaves every image unchanged
    (modulation is linear in the style; demodulation and the style normalisation only see squares).
    """
    low = FaceAttributes(3.0, 0.0, 18.5, 0.3, 0.5)
    high = low.replace(eye_size=5.5)
    layer = G.synthesis.layer(EYE_LAYER)
    ws = G.mapping(z_from_attributes([low, high]), None)
    s = layer.affine(ws[:, EYE_LAYER + 1])[:, EYE_CHANNEL]
    if float(s[1] - s[0]) >= 0:
        return 1.0
    layer.affine.weight[EYE_CHANNEL].neg_()
    layer.affine.bias[EYE_CHANNEL].neg_()
    layer.weight[:, EYE_CHANNEL].neg_()
    return -1.0


@torch.no_grad()
def set_w_avg(G: Generator, samples: int = 10_000, seed: int = 0) -> None:
    """Set the truncation centre `mapping.w_avg` to the mean w of `samples` random latents."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn([samples, G.z_dim], generator=generator)
    G.mapping.w_avg.copy_(G.mapping(z, None)[:, 0].mean(dim=0))
