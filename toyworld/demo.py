"""`concept-transfer demo` on the toy world: the paper's journey in miniature, measured by the probe.

1. find the toy StyleGAN3's eye-size style channel (`rank_channels` over a box around the eyes);
2. transfer it with the `transfer` recipe (`transfer.recipe.run_transfer`): mine graded, symmetric
   before/after pairs from it, train a visual slider on the toy SDXL from them, sweep it;
3. train a text slider for smiling on the toy SDXL;
4. sweep it with the recipe's sweep stage, and read both sliders' sweeps with the probe: prompts that
   mention neither eyes nor smiles, scales -2..2, gated; a plot of the probe's eye size and smile against
   the scale, and summary.json.
Seeded throughout; a few minutes on two CPU cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pair_datasets.atomic import atomic_write_text
from sliders.defaults import START_NOISE
from toyworld.slider_prompts import smile_entries

if TYPE_CHECKING:
    from transfer.recipe import TransferPlan

PROMPTS = ("a face with red hair", "a wide face", "a face with dark skin")
GRID_SEEDS = (0, 1, 2)
MEASURE_SEEDS = tuple(range(8))
SCALES = (-2.0, -1.0, 0.0, 1.0, 2.0)


@dataclass(frozen=True)
class ToyAssets:
    """Where the shipped toy-world models are."""

    sdxl: Path
    gan: Path
    probe: Path


@dataclass(frozen=True)
class DemoSettings:
    """The demo's knobs (measured defaults: they move the probe clearly in about five minutes)."""

    rank_seeds: tuple[int, ...] = (0, 1)
    rank_delta: float = 2.0
    stats_samples: int = 10_000
    pairs: int = 32
    delta: float = 1.0  # channel stds at level 1; level 2 doubles it (the toy GAN was fitted up to ~2)
    levels: tuple[float, ...] = (1.0, 2.0)
    visual_steps: int = 200
    visual_lr: float = 1e-3
    visual_batch: int = 8
    text_steps: int = 300
    text_lr: float = 2e-3
    text_eta: float = 8.0
    text_schedule: str = "fast"
    sample_steps: int = 20
    guidance: float = 3.0
    seed: int = 0
    prompts: tuple[str, ...] = PROMPTS
    grid_seeds: tuple[int, ...] = GRID_SEEDS
    measure_seeds: tuple[int, ...] = MEASURE_SEEDS


def find_probe_folder(root: Path) -> Path | None:
    """The probe folder under the assets: `probe/` or the assets folder itself, whichever holds probe.json."""
    for folder in (root / "probe", root):
        if (folder / "probe.json").is_file() and (folder / "probe.safetensors").is_file():
            return folder
    return None


def toy_assets() -> ToyAssets | None:
    """The shipped toy SDXL, toy StyleGAN3 and probe, or None while any of them is missing."""
    from toyworld import assets_dir, toy_sdxl_path
    from toyworld.toy_gan import toy_gan_path

    try:
        sdxl, gan = toy_sdxl_path(), toy_gan_path()
    except FileNotFoundError:
        return None
    probe = find_probe_folder(assets_dir())
    return None if probe is None else ToyAssets(sdxl, gan, probe)


def find_eye_channel(G, stats, settings: DemoSettings) -> list[dict]:
    """Style channels ranked by how much of their change falls in the box around the eyes, best first."""
    from stylegan_bridge.directions import box_mask, parse_box, rank_channels
    from toyworld.toy_gan_measure import EYE_BOX

    region = box_mask(parse_box(EYE_BOX), G.img_resolution)
    ranked = rank_channels(G, stats, seeds=settings.rank_seeds, delta=settings.rank_delta, region=region,
                           batch=32, progress=False)  # fmt: skip
    return [{"layer": d.layer, "layer_index": d.layer_index, "channel": d.channel, "score": round(d.score, 3)}
            for d in ranked[:10]]  # fmt: skip


def eye_size_plan(
    out: Path,
    assets: ToyAssets,
    channel: dict,
    settings: DemoSettings,
    cache: Path,
    concept: str = "eye size",
) -> TransferPlan:
    """The `transfer` recipe's plan for the demo's eye-size slider: graded symmetric pairs, a toy-SDXL sweep.

    `channel` names the style channel (`layer`, `channel`); the style statistics are cached in `cache`.
    Every stage runs again (`redo`): the whole journey is what the demo shows and times.
    """
    from sliders.config import TrainSettings
    from sliders.visual_slider import VisualSliderConfig
    from stylegan_bridge.mining import MiningConfig
    from transfer.gate import GateSpec
    from transfer.recipe import STAGES, TransferPlan

    mining = MiningConfig(pairs=settings.pairs, delta=settings.delta, levels=settings.levels, psi=0.7,
                          seed=settings.seed, resolution=64, batch=16, symmetric=True)  # fmt: skip
    train = TrainSettings(steps=settings.visual_steps, lr=settings.visual_lr, seed=settings.seed)
    return TransferPlan(
        gan="toy", model="toy", out=out, layer=channel["layer"], channel=channel["channel"], mining=mining,
        stats_samples=settings.stats_samples, stats_cache=cache,
        slider=VisualSliderConfig(concept=concept, resolution=64, batch_size=settings.visual_batch, train=train),
        prompts=settings.prompts, sweep_scales=SCALES, seeds=settings.grid_seeds,
        sample_steps=settings.sample_steps, guidance=settings.guidance, gate=GateSpec(start_noise=START_NOISE),
        size=64, device="cpu", gan_aliases={"toy": assets.gan}, model_aliases={"toy": assets.sdxl}, redo=STAGES,
    )  # fmt: skip


def save_plot(curves: dict[str, dict], path: Path) -> None:
    """Probe eye size and smile (mean +- s.e. over prompts x seeds, world stds) against each slider's scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for ax, (title, curve) in zip(axes[0], curves.items()):
        for name, color in (("eye_size", "tab:blue"), ("smile", "tab:orange")):
            mean, err = np.asarray(curve[name]["mean"]), np.asarray(curve[name]["sem"])
            ax.errorbar(curve["scales"], mean, yerr=err, color=color, marker="o", capsize=3, label=name)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(title)
        ax.set_xlabel("slider scale")
        ax.set_ylabel("probe reading minus scale 0 (world std)")
        ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def curve_of(values: dict[str, np.ndarray], scales) -> dict:
    """Mean and standard error per scale of eye size and smile, relative to scale 0, in world stds."""
    from toyworld.world import WORLD_STD

    zero = list(scales).index(0.0)
    out: dict = {"scales": list(scales)}
    for name in ("eye_size", "smile"):
        change = (values[name] - values[name][:, zero : zero + 1]) / WORLD_STD[name]  # [P, S, K]
        flat = change.transpose(1, 0, 2).reshape(len(scales), -1)
        out[name] = {"mean": [round(float(v), 4) for v in flat.mean(axis=1)],
                     "sem": [round(float(v), 4) for v in flat.std(axis=1) / np.sqrt(flat.shape[1])]}  # fmt: skip
    return out


def run_toy_demo(
    out: Path, say: Callable[[str], None] = print, assets: ToyAssets | None = None,
    settings: DemoSettings | None = None,
) -> dict:  # fmt: skip
    """Run the toy-world demo into `out`; returns (and writes) its summary."""
    from toyworld.probe import load_probe
    from transfer.recipe import run_transfer, sweep_stage
    from transfer.sdxl import load_sdxl

    settings = settings or DemoSettings()
    assets = assets or toy_assets()
    if assets is None:
        raise FileNotFoundError("the toy world is not built: run `concept-transfer toyworld build`")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    laps = Laps()
    say("[1/4] find the eye-size style channel of the toy StyleGAN3 (box around the eyes)")
    best = find_channel(assets, settings, out)
    say(f"      best: layer {best['layer']} channel {best['channel']} (localisation {best['score']})")
    laps.lap("find_channel")

    say(f"[2/4] transfer it (the `transfer` recipe): {settings.pairs} seeds x levels {list(settings.levels)} "
        f"of pairs, a visual slider on the toy SDXL ({settings.visual_steps} steps), its sweep")  # fmt: skip
    eye = eye_size_plan(out / "eye-size", assets, best, settings, out / "cache")
    run_transfer(eye, say=lambda line: say(f"      {line}"))
    laps.lap("transfer")

    say(
        f"[3/4] train a text slider: '<subject>, smiling' vs '<subject>, frowning' ({settings.text_steps} steps)"
    )
    smile = replace(eye, out=out / "smile")  # the same sweep settings
    train_smile(assets, settings, smile.slider_path)
    laps.lap("text_slider")

    say(
        f"[4/4] sweep it likewise; measure both on {len(settings.measure_seeds)} seeds per prompt with the probe"
    )
    pipe = load_sdxl(str(assets.sdxl), device="cpu")  # a clean UNet: peft leaves wrappers behind
    sweep_stage(smile, pipe)
    sliders = {"eye size": (eye.slider_path, "eye_size"), "smile": (smile.slider_path, "smile")}
    curves, metrics = measure_sliders(pipe, load_probe(assets.probe), settings, sliders)
    save_plot(curves, out / "probe_vs_scale.png")
    laps.lap("sweep_and_measure")
    summary = demo_summary(
        out, assets, settings, best, {"eye size": eye, "smile": smile}, curves, metrics, laps
    )
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


class Laps:
    """Wall seconds of the demo's stages, each from the end of the one before."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.times: dict[str, float] = {}

    def lap(self, name: str) -> None:
        """Close stage `name`."""
        now = time.perf_counter()
        self.times[name], self.last = round(now - self.last, 1), now

    @property
    def total(self) -> float:
        """Seconds since the start."""
        return round(time.perf_counter() - self.started, 1)


def find_channel(assets: ToyAssets, settings: DemoSettings, out: Path) -> dict:
    """The best eye-size channel of the toy StyleGAN3; the ranking is written to out/channels.json."""
    from stylegan_bridge.mining import load_gan
    from stylegan_bridge.style_space import style_stats

    G, _ = load_gan(assets.gan, device="cpu")
    # The statistics the recipe's mining will read back from the same cache (same samples, psi and seed).
    stats = style_stats(G, num_samples=settings.stats_samples, psi=1.0, cache_dir=out / "cache")
    ranked = find_eye_channel(G, stats, settings)
    atomic_write_text(out / "channels.json", json.dumps(ranked, indent=2) + "\n")
    return ranked[0]


def train_smile(assets: ToyAssets, settings: DemoSettings, path: Path) -> Path:
    """Train the smile text slider on the toy SDXL into `path`."""
    from sliders.config import TextSliderConfig, TrainSettings
    from sliders.text_slider import train_text_slider
    from transfer.sdxl import load_sdxl

    pipe = load_sdxl(str(assets.sdxl), device="cpu")
    train = TrainSettings(steps=settings.text_steps, lr=settings.text_lr, seed=settings.seed)
    text = TextSliderConfig(prompts=smile_entries(settings.text_eta), concept="smile",
                            schedule=settings.text_schedule, train=train)  # fmt: skip
    return train_text_slider(pipe, text, path, base_model="toy", show_progress=True)


def measure_sliders(pipe, probe, settings: DemoSettings, sliders: dict[str, tuple]) -> tuple[dict, dict]:
    """Read every scale of each slider with the probe: `sliders` maps a title to (file, target attribute).

    Returns (probe curves, quality figures) by title.
    """
    from sliders.slider_file import load_slider
    from toyworld.slider_eval import SweepSpec, measure_sweep, quality, render_sweep

    spec = SweepSpec(prompts=settings.prompts, seeds=settings.measure_seeds, scales=SCALES,
                     steps=settings.sample_steps, guidance=settings.guidance, start_noise=START_NOISE)  # fmt: skip
    curves, metrics = {}, {}
    for title, (path, target) in sliders.items():
        values = measure_sweep(probe, render_sweep(pipe, [load_slider(path, unet=pipe.unet).factors], spec))
        curves[f"{title} slider"] = curve_of(values, SCALES)
        metrics[title] = {k: v for k, v in quality(values, SCALES, target).items() if k != "mean_by_scale"}
        metrics[title]["target"] = target
    return curves, metrics


def demo_summary(out: Path, assets: ToyAssets, settings: DemoSettings, best: dict, plans: dict, curves: dict,
                 metrics: dict, laps: Laps) -> dict:  # fmt: skip
    """What summary.json holds: the models, the channel found, the pairs, sliders, grids, curves and times."""
    from pair_datasets import Corpus

    eye = plans["eye size"]
    grids = {
        title: [str(plan.sweep_dir / g) for g in _grids(plan.sweep_dir)] for title, plan in plans.items()
    }
    plot = out / "probe_vs_scale.png"
    summary = {
        "world": "toy",
        "models": {"sdxl": str(assets.sdxl), "stylegan3": str(assets.gan), "probe": str(assets.probe)},
        "channel_found": best,
        "channels_ranked": str(out / "channels.json"),
        "pairs": {
            "corpus": str(eye.corpus_dir),
            "contact_sheet": str(eye.corpus_dir / "contact_sheet.png"),
            "pairs": len(Corpus.open(eye.corpus_dir).ids()),
        },  # fmt: skip
        "sliders": {title: str(plan.slider_path) for title, plan in plans.items()},
        "prompts": list(settings.prompts),
        "scales": list(SCALES),
        "gate_start_noise": START_NOISE,
        "grids": grids,
        "plot": str(plot),
        "probe_curves": curves,
        "metrics": metrics,
        "seconds_by_stage": laps.times,
        "seconds": laps.total,
        "torch_threads": torch.get_num_threads(),
    }
    summary["look_at"] = {
        "pairs": summary["pairs"]["contact_sheet"],
        **{f"{title} sweep": paths[0] for title, paths in grids.items()},
        "plot": str(plot),
        "summary": str(out / "summary.json"),
    }
    return summary


def _grids(sweep_dir: Path) -> list[str]:
    """The grid files of a sweep, as its summary.json lists them."""
    return json.loads((sweep_dir / "summary.json").read_text(encoding="utf-8"))["grids"]
