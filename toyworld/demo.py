"""`concept-transfer demo` on the toy world: the paper's journey in miniature, measured by the probe.

1. find the toy StyleGAN3's eye-size style channel (`rank_channels` over a box around the eyes);
2. mine graded, symmetric before/after pairs from it;
3. train a visual slider on the toy SDXL from the pairs (a GAN-transferred slider);
4. train a text slider for smiling on the toy SDXL;
5. apply both to prompts that mention neither eyes nor smiles, scales -2..2, gated: sweep grids, a plot
   of the probe's eye size and smile against the scale, and summary.json.
Seeded throughout; about five minutes on two CPU cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pair_datasets.atomic import atomic_write_text
from sliders.defaults import START_NOISE
from toyworld.slider_prompts import smile_entries

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
    from pair_datasets import Corpus
    from sliders.config import TextSliderConfig, TrainSettings
    from sliders.slider_file import load_slider
    from sliders.text_slider import train_text_slider
    from sliders.visual_slider import VisualSliderConfig, train_visual_slider
    from stylegan_bridge.mining import MiningConfig, channel_source, gan_source, load_gan, mine
    from stylegan_bridge.style_space import style_stats
    from toyworld.probe import load_probe
    from toyworld.slider_eval import SweepSpec, measure_sweep, quality, render_sweep
    from transfer.apply import SliderSpec, load_sliders
    from transfer.gate import GateSpec
    from transfer.sdxl import load_sdxl
    from transfer.sweep import SweepSettings, run_sweep

    settings = settings or DemoSettings()
    assets = assets or toy_assets()
    if assets is None:
        raise FileNotFoundError("the toy world is not built: run `concept-transfer toyworld build`")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started, times = time.perf_counter(), {}

    def lap(name: str, since: float) -> float:
        times[name] = round(time.perf_counter() - since, 1)
        return time.perf_counter()

    t = time.perf_counter()
    say("[1/5] find the eye-size style channel of the toy StyleGAN3 (box around the eyes)")
    G, gan_path = load_gan(assets.gan, device="cpu")
    stats = style_stats(G, num_samples=settings.stats_samples, seed=settings.seed, cache_dir=out / "cache")
    ranked = find_eye_channel(G, stats, settings)
    best = ranked[0]
    atomic_write_text(out / "channels.json", json.dumps(ranked, indent=2) + "\n")
    say(f"      best: layer {best['layer']} channel {best['channel']} (localisation {best['score']})")
    t = lap("find_channel", t)

    say(f"[2/5] mine {settings.pairs} seeds x levels {list(settings.levels)} of pairs from it")
    edit, provenance = channel_source(G, best["layer"], best["channel"], stats)
    mining = MiningConfig(pairs=settings.pairs, delta=settings.delta, levels=settings.levels, psi=0.7,
                          seed=settings.seed, resolution=64, batch=16, symmetric=True)  # fmt: skip
    report = mine(G, edit, out / "pairs", mining, gan_source(G, gan_path, provenance), name="eye-size",
                  progress=False)  # fmt: skip
    t = lap("mine", t)

    pipe = load_sdxl(str(assets.sdxl), device="cpu")
    say(f"[3/5] train a visual slider on the toy SDXL from the pairs ({settings.visual_steps} steps)")
    visual_path = out / "sliders" / "eye-size.safetensors"
    visual = VisualSliderConfig(concept="eye size",  # short: it labels the grid columns
                                resolution=64, batch_size=settings.visual_batch,
                                train=TrainSettings(steps=settings.visual_steps, lr=settings.visual_lr,
                                                    seed=settings.seed))  # fmt: skip
    train_visual_slider(
        pipe, Corpus.open(report.root), visual, visual_path, base_model="toy", show_progress=True
    )
    pipe = load_sdxl(str(assets.sdxl), device="cpu")  # a clean UNet: peft leaves wrappers behind
    t = lap("visual_slider", t)

    say(
        f"[4/5] train a text slider: '<subject>, smiling' vs '<subject>, frowning' ({settings.text_steps} steps)"
    )
    text_path = out / "sliders" / "smile.safetensors"
    text = TextSliderConfig(prompts=smile_entries(settings.text_eta), concept="smile", schedule=settings.text_schedule,
                            train=TrainSettings(steps=settings.text_steps, lr=settings.text_lr,
                                                seed=settings.seed))  # fmt: skip
    train_text_slider(pipe, text, text_path, base_model="toy", show_progress=True)
    pipe = load_sdxl(str(assets.sdxl), device="cpu")  # a clean UNet: peft leaves wrappers behind
    t = lap("text_slider", t)

    say(f"[5/5] apply both to {len(settings.prompts)} prompts, scales -2..2, gate at t={START_NOISE:g}")
    sliders = {"eye size": visual_path, "smile": text_path}
    grids, curves, metrics = {}, {}, {}
    probe = load_probe(assets.probe)
    for (title, path), target in zip(sliders.items(), ("eye_size", "smile")):
        loaded = load_sliders([SliderSpec(path, 1.0)], pipe.unet)
        folder = out / "sweeps" / path.stem
        sweep = SweepSettings(prompts=settings.prompts, seeds=settings.grid_seeds, sweep_scales=SCALES,
                              steps=settings.sample_steps, guidance=settings.guidance, width=64, height=64,
                              gate=GateSpec(start_noise=START_NOISE), model="toy")  # fmt: skip
        summary = run_sweep(pipe, loaded, sweep, folder, progress=False)
        grids[title] = [str(folder / g) for g in summary["grids"]]
        spec = SweepSpec(prompts=settings.prompts, seeds=settings.measure_seeds, scales=SCALES,
                         steps=settings.sample_steps, guidance=settings.guidance, start_noise=START_NOISE)  # fmt: skip
        values = measure_sweep(probe, render_sweep(pipe, [load_slider(path, unet=pipe.unet).factors], spec))
        curves[f"{title} slider"] = curve_of(values, SCALES)
        metrics[title] = {k: v for k, v in quality(values, SCALES, target).items() if k != "mean_by_scale"}
        metrics[title]["target"] = target
    plot = out / "probe_vs_scale.png"
    save_plot(curves, plot)
    lap("apply_and_measure", t)

    summary = {
        "world": "toy",
        "models": {"sdxl": str(assets.sdxl), "stylegan3": str(assets.gan), "probe": str(assets.probe)},
        "channel_found": best,
        "channels_ranked": str(out / "channels.json"),
        "pairs": {
            "corpus": str(report.root),
            "contact_sheet": str(report.sheet),
            "pairs": report.written + report.kept,
        },
        "sliders": {title: str(path) for title, path in sliders.items()},
        "prompts": list(settings.prompts),
        "scales": list(SCALES),
        "gate_start_noise": START_NOISE,
        "grids": grids,
        "plot": str(plot),
        "probe_curves": curves,
        "metrics": metrics,
        "seconds_by_stage": times,
        "seconds": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
    }
    summary["look_at"] = {
        "pairs": str(report.sheet),
        **{f"{title} sweep": paths[0] for title, paths in grids.items()},
        "plot": str(plot),
        "summary": str(out / "summary.json"),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
