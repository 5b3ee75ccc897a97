"""Mine before/after pairs from a StyleGAN3 edit into a pair corpus (DESIGN §4).

Pair ids are `seed<seed>_lv<level>`; seed i of the run is `seed_base + i` and its z is NVlabs'
`np.random.RandomState(seed).randn(z_dim)`. Seeds are rendered in fixed groups of `batch` (group g holds
seeds base + g*batch ...), so a resumed run renders every missing pair inside exactly the batch it would
have had in an uninterrupted run, and the PNG bytes are identical. Pairs already in the manifest are kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from pair_datasets import Corpus, CorpusInfo, contact_sheet
from stylegan_bridge.direction_file import check_generator, file_sha256, load_directions
from stylegan_bridge.edits import Edit, channel_edit, render
from stylegan_bridge.loading import load_generator, resolve_device
from stylegan_bridge.style_space import StyleStats, resolve_layer, to_pil, ws_from_seeds

SHEET_FILE = "contact_sheet.png"
SEED_RULE = "seed = seed_base + i; z = numpy.random.RandomState(seed).randn(z_dim)"
# Provenance keys that may differ on resume without changing the pairs (paths, float noise in sigma).
_NOT_COMPARED = {"file", "sigma"}


@dataclass(frozen=True)
class MiningConfig:
    """How pairs are mined: `pairs` seeds, each giving one pair per level (delta * level, in edit units)."""

    pairs: int
    delta: float = 5.0
    levels: tuple[float, ...] = (1.0,)
    psi: float = 0.7
    cutoff: int | None = None
    seed: int = 0
    resolution: int | None = None
    batch: int = 8
    symmetric: bool = False

    def __post_init__(self) -> None:
        if self.pairs < 1:
            raise ValueError(f"--pairs must be >= 1, got {self.pairs}")
        if not (self.delta > 0 and math.isfinite(self.delta)):
            raise ValueError(f"--delta must be a finite number > 0, got {self.delta}")
        if not math.isfinite(self.psi):
            raise ValueError(f"--truncation must be a finite number, got {self.psi}")
        if self.cutoff is not None and self.cutoff < 0:
            raise ValueError(f"--truncation-cutoff must be >= 0, got {self.cutoff}")
        if (
            not self.levels
            or any(not (level > 0 and math.isfinite(level)) for level in self.levels)
            or len(set(self.levels)) != len(self.levels)
        ):
            raise ValueError(f"--levels must be distinct positive numbers, got {list(self.levels)}")
        if self.batch < 1:
            raise ValueError(f"--batch must be >= 1, got {self.batch}")
        if self.resolution is not None and self.resolution < 1:
            raise ValueError(f"--resolution must be >= 1, got {self.resolution}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class MiningReport:
    """What a mining run did: the corpus folder, pairs written now, pairs kept from before, the sheet."""

    root: Path
    written: int
    kept: int
    sheet: Path


def parse_levels(text: str) -> tuple[float, ...]:
    """`1,2` -> (1.0, 2.0); ValueError naming --levels when malformed."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--levels {text!r}: expected comma-separated positive numbers, e.g. 1,2") from None


def pair_id(seed: int, level: float) -> str:
    """The manifest id of the pair of `seed` at `level`."""
    return f"seed{seed:08d}_lv{level:g}"


def resolve_gan(name: str | Path, aliases: Mapping[str, Path] | None = None) -> Path:
    """The generator file for `--gan`: a path, or a named alias (the CLI passes `toy` -> the toy generator)."""
    text = str(name)
    if aliases and text in aliases:
        return Path(aliases[text])
    path = Path(text).expanduser()
    if not path.is_file():
        hint = f" (known names: {', '.join(sorted(aliases))})" if aliases else ""
        raise FileNotFoundError(f"{path}: generator file not found{hint}")
    return path


def load_gan(
    name: str | Path,
    device: str | None = None,
    aliases: Mapping[str, Path] | None = None,
    backend: str = "ours",
) -> tuple[nn.Module, Path]:
    """(generator in eval mode on `device`, its file) for a .pkl/.safetensors/.pt path or alias."""
    path = resolve_gan(name, aliases)
    device = resolve_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    G = load_generator(path, device=device, backend=backend)
    return G.to(device).eval().requires_grad_(False), path


def gan_source(G: nn.Module, path: Path, edit_provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The corpus provenance of a mining run: the generator file (name, sha256, resolution) and the edit."""
    generator = {"file": Path(path).name, "sha256": file_sha256(Path(path)), "resolution": G.img_resolution}
    return {"source": "stylegan3", "generator": generator, "edit": dict(edit_provenance)}


def channel_source(
    G: nn.Module, layer: int | str, channel: int, stats: StyleStats
) -> tuple[Edit, dict[str, Any]]:
    """(edit, provenance) for `--layer L --channel C`: delta is in units of the channel's std."""
    info = resolve_layer(G, layer)
    edit = channel_edit(G, info.name, channel, stats)
    provenance = {
        "kind": "channel",
        "layer": info.name,
        "layer_index": info.index,
        "channel": channel,
        "sigma": stats.sigma(info.name, channel),
        "stats": {
            "num_samples": stats.num_samples,
            "psi": stats.psi,
            "cutoff": stats.cutoff,
            "seed": stats.seed,
        },
    }
    return edit, provenance


def direction_source(
    G: nn.Module, path: Path, index: int, stats_fn: Callable[[], StyleStats]
) -> tuple[Edit, dict[str, Any]]:
    """(edit, provenance) for `--direction FILE [--index K]`; style stats are computed only for channel entries."""
    data = load_directions(path)
    check_generator(data, G, str(path))
    direction = data.pick(index, str(path))
    stats = stats_fn() if direction.kind == "channel" else None
    edit = direction.to_edit(G, stats)
    provenance = {
        "kind": "direction",
        "file": Path(path).name,
        "sha256": file_sha256(Path(path)),
        "index": index,
        "method": data.method,
        "direction": {k: v for k, v in direction.summary().items() if k != "info"},
    }
    if stats is not None:
        provenance["stats"] = {
            "num_samples": stats.num_samples,
            "psi": stats.psi,
            "cutoff": stats.cutoff,
            "seed": stats.seed,
        }
    return edit, provenance


def mine(
    G: nn.Module,
    edit: Edit,
    out: Path,
    config: MiningConfig,
    source: Mapping[str, Any],
    name: str | None = None,
    progress: bool = True,
) -> MiningReport:
    """Render `config.pairs` seeds x levels pairs with `edit` into the corpus at `out` (created or resumed)."""
    out = Path(out)
    resolution = config.resolution or G.img_resolution
    provenance = json.loads(json.dumps({**source, **_run_provenance(config, resolution)}))
    corpus = _open_or_create(
        out, CorpusInfo(name=name or out.name, resolution=resolution, provenance=provenance)
    )
    done = corpus.ids()
    seeds = [config.seed + i for i in range(config.pairs)]
    targets = [(seed, level) for seed in seeds for level in config.levels]
    kept = sum(pair_id(s, lv) in done for s, lv in targets)
    bar = tqdm(total=len(targets), initial=kept, desc="mining pairs", unit="pair", disable=not progress)
    written = 0
    for start in range(0, len(seeds), config.batch):
        group = seeds[start : start + config.batch]
        missing = [(s, lv) for s in group for lv in config.levels if pair_id(s, lv) not in done]
        if not missing:
            continue
        images = _render_group(G, edit, group, {lv for _, lv in missing}, config, resolution)
        for seed, level in missing:
            before, after = images[level][group.index(seed)]
            d = config.delta * level
            pair_source = {"seed": seed, "delta_before": -d if config.symmetric else 0.0, "delta_after": d}
            corpus.append(pair_id(seed, level), before, after, level=level, source=pair_source)
            written += 1
            bar.update(1)
    bar.close()
    sheet = contact_sheet(corpus, corpus.root / SHEET_FILE)
    return MiningReport(corpus.root, written, kept, Path(sheet))


def _run_provenance(config: MiningConfig, resolution: int) -> dict[str, Any]:
    """The settings of a run that decide its pairs (all of them but the count)."""
    return {
        "delta": config.delta,
        "levels": list(config.levels),
        "truncation_psi": config.psi,
        "truncation_cutoff": config.cutoff,
        "seed_base": config.seed,
        "seed_rule": SEED_RULE,
        "symmetric": config.symmetric,
        "resolution": resolution,
        "pair_rule": "before = -delta*level if symmetric else the unedited image; after = +delta*level",
    }


def _open_or_create(out: Path, info: CorpusInfo) -> Corpus:
    """Create the corpus, or open an existing one made with the same provenance (else a ValueError)."""
    if not (out / "corpus.json").exists():
        return Corpus.create(out, info)
    corpus = Corpus.open(out)
    old, new = _comparable(corpus.info.provenance), _comparable(info.provenance)
    if old != new:
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(
            f"{out / 'corpus.json'}: the existing corpus was mined with different settings ({', '.join(keys)}); "
            "use another --out folder or the same settings to resume"
        )
    if corpus.info.resolution != info.resolution:
        raise ValueError(
            f"{out / 'corpus.json'}: resolution {corpus.info.resolution} differs from {info.resolution}"
        )
    return corpus


def _comparable(value: Any) -> Any:
    """Provenance without the keys that may change on resume (file names, recomputed sigma)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in _NOT_COMPARED}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _render_group(
    G: nn.Module, edit: Edit, seeds: Sequence[int], levels: set[float], config: MiningConfig, resolution: int
) -> dict[float, list[tuple[Image.Image, Image.Image]]]:
    """{level: [(before, after) per seed]} for one fixed group of seeds (one batch per render)."""
    ws = ws_from_seeds(G, seeds, config.psi, config.cutoff)
    original = None if config.symmetric else _images(render(G, ws), resolution)
    out = {}
    for level in sorted(levels):
        d = config.delta * level
        after = _images(render(G, ws, edit, d), resolution)
        before = _images(render(G, ws, edit, -d), resolution) if config.symmetric else original
        out[level] = list(zip(before, after))
    return out


def _images(batch: torch.Tensor, resolution: int) -> list[Image.Image]:
    """Rendered batch -> PIL images at the corpus resolution (LANCZOS when resizing)."""
    images = to_pil(batch)
    if images[0].size != (resolution, resolution):
        images = [image.resize((resolution, resolution), Image.Resampling.LANCZOS) for image in images]
    return images
