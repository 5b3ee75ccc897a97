"""The attribute probe: a small CNN that reads the world's attributes back from a 64x64 image.

Trained on rendered faces, half of each batch round-tripped through the toy VAE, so it reads model
outputs (which only ever come through that VAE) as fairly as clean renders. It predicts normalised
attributes (`world.normalize`); `measure` returns world units.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from toyworld.world import ATTRIBUTE_NAMES, RESOLUTION, denormalize

PROBE_WEIGHTS = "probe.safetensors"
PROBE_CONFIG = "probe.json"


@dataclass(frozen=True)
class ProbeConfig:
    """Architecture of the probe: conv widths per stage (each stage halves the resolution)."""

    channels: tuple[int, ...] = (32, 64, 96, 128)
    hidden: int = 128
    attributes: tuple[str, ...] = ATTRIBUTE_NAMES

    def __post_init__(self) -> None:
        if tuple(self.attributes) != ATTRIBUTE_NAMES:
            raise ValueError(
                f"probe attributes {list(self.attributes)} differ from the world's {ATTRIBUTE_NAMES}"
            )


class ProbeNet(nn.Module):
    """[B, 3, 64, 64] in [-1, 1] -> normalised attributes [B, K]. Flattens (not pools): position matters."""

    def __init__(self, config: ProbeConfig) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c in config.channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1),
                nn.SiLU(),
                nn.Conv2d(c, c, 4, stride=2, padding=1),
                nn.SiLU(),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        side = RESOLUTION // 2 ** len(config.channels)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * side * side, config.hidden),
            nn.SiLU(),
            nn.Linear(config.hidden, len(config.attributes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (3, RESOLUTION, RESOLUTION), (
            f"probe input must be [B, 3, 64, 64], got {tuple(x.shape)}"
        )
        return self.head(self.features(x))


def images_to_tensor(images) -> torch.Tensor:
    """PIL image(s), uint8/float arrays [N, H, W, 3] or [H, W, 3], or a [-1, 1] tensor [N, 3, H, W] -> [N, 3, 64, 64]."""
    if isinstance(images, torch.Tensor):
        x = images.detach().float().cpu()
        if x.ndim == 3:
            x = x[None]
        if x.shape[-1] != RESOLUTION or x.shape[-2] != RESOLUTION:
            x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="area")
        return x
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    arrays = []
    for image in images:
        if isinstance(image, np.ndarray) and image.dtype != np.uint8:
            image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)  # float images are in [0, 1]
        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        pil = pil.convert("RGB")
        if pil.size != (RESOLUTION, RESOLUTION):
            pil = pil.resize((RESOLUTION, RESOLUTION), Image.BOX)
        arrays.append(np.asarray(pil))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


class AttributeProbe:
    """A loaded probe: `measure(images)` gives each attribute in world units."""

    def __init__(self, net: ProbeNet, config: ProbeConfig, metrics: dict | None = None) -> None:
        self.net = net.eval()
        self.config = config
        self.metrics = metrics or {}

    @torch.no_grad()
    def measure(self, images, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Attributes of each image, in world units: {name: [N]} (see `world.SPECS` for units)."""
        x = images_to_tensor(images)
        device = next(self.net.parameters()).device  # the probe may have been moved to a GPU
        out = [self.net(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
        values = denormalize(torch.cat(out).numpy())
        return {name: values[:, k] for k, name in enumerate(self.config.attributes)}


def save_probe(folder: Path, net: ProbeNet, config: ProbeConfig, metrics: dict) -> None:
    """Write probe.safetensors (fp16) and probe.json into `folder` (atomically, each)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (PROBE_WEIGHTS + ".tmp")
    # fp16 storage halves the shipped size; the probe runs in fp32 (`load_probe` casts back).
    save_file({k: v.detach().cpu().half().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    os.replace(tmp, folder / PROBE_WEIGHTS)
    tmp = folder / (PROBE_CONFIG + ".tmp")
    tmp.write_text(json.dumps({"config": asdict(config), "metrics": metrics}, indent=2))
    os.replace(tmp, folder / PROBE_CONFIG)


def load_probe(folder: Path | None = None) -> AttributeProbe:
    """Load a probe folder (default: the one shipped in toyworld/assets)."""
    if folder is None:
        from toyworld import assets_dir

        folder = assets_dir()
    folder = Path(folder)
    config_path, weights_path = folder / PROBE_CONFIG, folder / PROBE_WEIGHTS
    for path in (config_path, weights_path):
        if not path.exists():
            raise FileNotFoundError(
                f"no probe at {path}: run `concept-transfer toyworld build --stage probe`"
            )
    raw = json.loads(config_path.read_text())
    try:
        fields = raw["config"]
        config = ProbeConfig(
            channels=tuple(fields["channels"]),
            hidden=int(fields["hidden"]),
            attributes=tuple(fields["attributes"]),
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"{config_path}: malformed probe config ({error!r})") from error
    net = ProbeNet(config)
    state = {k: v.float() for k, v in load_file(str(weights_path)).items()}
    net.load_state_dict(state)
    return AttributeProbe(net, config, raw.get("metrics"))


_DEFAULT: AttributeProbe | None = None


def measure(images, probe: AttributeProbe | None = None) -> dict[str, np.ndarray]:
    """Attributes of `images` in world units, read by `probe` (default: the shipped probe, loaded once)."""
    global _DEFAULT
    if probe is None:
        if _DEFAULT is None:
            _DEFAULT = load_probe()
        probe = _DEFAULT
    return probe.measure(images)
