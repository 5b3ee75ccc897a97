"""Slider quality on the toy world: does a slider move its attribute, monotonically, and only it?

Trains (fixed seeds) a GAN-transferred eye-size slider (toy StyleGAN3 channel -> graded pairs -> visual
slider) and two text sliders, smile and eye size (the same attribute as the GAN slider, learnt from the
words instead), each under the `fast` and the `reference` x_t schedules with the same steps, then renders
prompts x seeds at scales -2..2 (gated, start_noise 750) and reads every image with the attribute probe.
Per slider:

- spearman: Spearman(scale, target) per prompt/seed across the five scales, averaged (goal >= 0.9);
  spearman_pooled: over all single samples pooled (mixes seed-to-seed variance);
- effect_std: mean target change from -2 to +2, in world standard deviations;
- off_target: mean over the other attributes of mean |change| (-2 -> +2, world stds) / |effect_std|
  (goal <= 0.25);
- structure_gated / structure_ungated: mean |pixel change| (0..1) between scale 0 and +-1 with the gate
  and without it (slider on from the first step);
- train_s: training wall time.

    python benchmarks/quality.py                      # shipped toy world, CPU, ~15 min on 2 cores
    python benchmarks/quality.py --schedules fast --text-concepts smile   # a quicker subset
    python benchmarks/quality.py --slider eye=FILE:eye_size --slider smile=FILE:smile   # given files
    ... --json                                        # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toyworld.slider_eval import (  # noqa: E402
    SCALES,
    SweepSpec,
    measure_sweep,
    quality,
    render_sweep,
    structure_change,
)
from toyworld.slider_prompts import eye_size_entries, smile_entries  # noqa: E402
from toyworld.training import device_report  # noqa: E402

PROMPTS = ("a face with red hair", "a wide face", "a face with dark skin", "a narrow face with blue hair")


def train_gan_slider(pipe, gan: Path, work: Path, steps: int, seed: int, device: str) -> tuple[Path, float]:
    """The demo's eye-size slider through the `transfer` recipe's mine and train stages (no sweep).

    Graded symmetric pairs from the toy GAN's eye channel (L3 ch 0), then a visual slider on `pipe`.
    """
    from toyworld.demo import DemoSettings, eye_size_plan, toy_assets
    from toyworld.toy_gan import EYE_CHANNEL, EYE_LAYER
    from transfer.recipe import mine_stage, train_stage

    started = time.perf_counter()
    assets = toy_assets()
    if assets is None:
        raise FileNotFoundError("the toy world is not built: run `concept-transfer toyworld build`")
    settings = replace(DemoSettings(), visual_steps=steps, seed=seed)
    channel = {"layer": f"L{EYE_LAYER}", "channel": EYE_CHANNEL}
    plan = eye_size_plan(work / "gan-eye", replace(assets, gan=gan), channel, settings, work / "cache",
                         concept="eye size (toy GAN)")  # fmt: skip
    mine_stage(replace(plan, device=device))
    return train_stage(plan, pipe), time.perf_counter() - started


# Text sliders: concept -> (probe attribute, prompt entries, guidance scale eta). The eye-size contrast
# is the model's strongest concept (captions "big"/"small eyes" differ by ~4.7 world stds), so a smaller
# eta gives an effect of the same order as the GAN slider's; smile keeps the demo's settings.
TEXT_SLIDERS = {
    "smile": ("smile", smile_entries, None),
    "eye_size": ("eye_size", eye_size_entries, 2.0),
}


def train_text_slider_for(
    pipe, concept: str, schedule: str, work: Path, steps: int, seed: int
) -> tuple[Path, float]:
    """A text slider for `concept` trained with `schedule` (same steps, lr and seed for every schedule)."""
    from sliders.config import TextSliderConfig, TrainSettings
    from sliders.text_slider import train_text_slider
    from toyworld.demo import DemoSettings

    started = time.perf_counter()
    _, make_entries, eta = TEXT_SLIDERS[concept]
    demo = DemoSettings()  # the demo's measured settings: the benchmark measures what the demo ships
    entries = make_entries(demo.text_eta if eta is None else eta)
    config = TextSliderConfig(prompts=entries, concept=concept, schedule=schedule,
                              train=TrainSettings(steps=steps, lr=demo.text_lr, seed=seed))  # fmt: skip
    out = train_text_slider(pipe, config, work / f"text-{concept}-{schedule}.safetensors", base_model="toy",
                            show_progress=False)  # fmt: skip
    return out, time.perf_counter() - started


def evaluate(pipe, probe, path: Path, target: str, prompts, seeds, steps: int, guidance: float) -> dict:
    """Quality figures of one slider file (see the module docstring)."""
    from sliders.slider_file import load_slider

    factors = [load_slider(path, unet=pipe.unet).factors]
    spec = SweepSpec(
        prompts=tuple(prompts), seeds=tuple(seeds), scales=SCALES, steps=steps, guidance=guidance
    )
    gated = render_sweep(pipe, factors, spec)
    result = quality(measure_sweep(probe, gated), SCALES, target)
    ungated_spec = SweepSpec(prompts=spec.prompts, seeds=spec.seeds, scales=(-1.0, 0.0, 1.0), steps=steps,
                             guidance=guidance, start_noise=None)  # fmt: skip
    ungated = render_sweep(pipe, factors, ungated_spec)
    result["structure_gated"] = structure_change(gated, SCALES)
    result["structure_ungated"] = structure_change(ungated, ungated_spec.scales)
    result["target"] = target
    result["samples"] = len(prompts) * len(seeds)
    return result


def parse_slider(text: str) -> tuple[str, Path, str]:
    """`name=FILE:attribute` -> (name, file, attribute)."""
    from toyworld.world import ATTRIBUTE_NAMES

    try:
        name, rest = text.split("=", 1)
        file, attribute = rest.rsplit(":", 1)
    except ValueError:
        raise ValueError(
            f"--slider {text!r}: expected NAME=FILE:ATTRIBUTE, e.g. eye=eye.safetensors:eye_size"
        ) from None
    if attribute not in ATTRIBUTE_NAMES:
        raise ValueError(
            f"--slider {text!r}: unknown attribute {attribute!r}; one of {list(ATTRIBUTE_NAMES)}"
        )
    if not Path(file).is_file():
        raise FileNotFoundError(f"--slider {text!r}: no such file {file}")
    return name, Path(file), attribute


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="toy", help="toy SDXL folder (default: the shipped one)")
    parser.add_argument("--gan", type=Path, help="toy StyleGAN3 (default: the shipped one)")
    parser.add_argument("--probe", type=Path, help="probe folder (default: the shipped one)")
    parser.add_argument("--no-gan", action="store_true", help="skip the GAN-transferred slider")
    parser.add_argument("--slider", action="append", default=[], metavar="NAME=FILE:ATTR",
                        help="measure these files instead of training (repeatable)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=8, help="seeds per prompt (8; x 4 prompts = 32)")
    parser.add_argument("--visual-steps", type=int, default=200)
    parser.add_argument("--text-steps", type=int, default=300)
    parser.add_argument(
        "--schedules", default="fast,reference", help="text-slider schedules (fast,reference)"
    )
    parser.add_argument(
        "--text-concepts", default=",".join(TEXT_SLIDERS), help=f"text sliders, from {','.join(TEXT_SLIDERS)}"
    )
    parser.add_argument("--steps", type=int, default=20, help="sampling steps (20)")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--device", default="cpu", help="cpu (default), cuda, cuda:N or mps; float32 on every one"
    )
    parser.add_argument("--work", type=Path, help="keep the trained sliders here (default: a temp folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    unknown = [c for c in filter(None, args.text_concepts.split(",")) if c not in TEXT_SLIDERS]
    if unknown:
        parser.error(f"--text-concepts: unknown {unknown}; choose from {list(TEXT_SLIDERS)}")
    return args


def train_jobs(args: argparse.Namespace, fresh_pipe, work: Path) -> list[tuple[str, Path, str, float | None]]:
    """(name, slider file, target attribute, training seconds) of every slider to measure, trained as asked."""
    if args.slider:
        return [(*parse_slider(s), None) for s in args.slider]
    from toyworld.toy_gan import toy_gan_path

    jobs = []
    if not args.no_gan:
        gan = args.gan or toy_gan_path()
        path, seconds = train_gan_slider(fresh_pipe(), gan, work, args.visual_steps, args.seed, args.device)
        jobs.append(("gan_eye_size", path, "eye_size", seconds))
    for concept in filter(None, args.text_concepts.split(",")):
        for schedule in filter(None, args.schedules.split(",")):
            path, seconds = train_text_slider_for(
                fresh_pipe(), concept, schedule, work, args.text_steps, args.seed
            )
            jobs.append((f"text_{concept}_{schedule}", path, TEXT_SLIDERS[concept][0], seconds))
    return jobs


def print_table(results: dict[str, dict]) -> None:
    """One row per slider: its figures and training seconds."""
    print(f"{'slider':<24}{'target':<10}{'spearman':>9}{'pooled':>8}{'effect':>8}{'off-tgt':>8}"
          f"{'struct g':>9}{'struct u':>9}{'train s':>9}")  # fmt: skip
    for name, r in results.items():
        print(f"{name:<24}{r['target']:<10}{r['spearman']:>9.3f}{r['spearman_pooled']:>8.3f}"
              f"{r['effect_std']:>8.2f}{r['off_target']:>8.1%}{r['structure_gated']:>9.4f}"
              f"{r['structure_ungated']:>9.4f}{r['train_s'] or 0:>9.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Train (or take) the sliders, measure them, print a table (and with --json, one JSON line last)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from toyworld import assets_dir
    from toyworld.demo import find_probe_folder
    from toyworld.probe import load_probe
    from transfer.sdxl import load_sdxl

    started = time.perf_counter()
    probe_folder = args.probe or find_probe_folder(assets_dir())
    if probe_folder is None:
        raise FileNotFoundError(f"no probe under {assets_dir()}: run `concept-transfer toyworld build`")
    probe = load_probe(probe_folder)
    probe.net.to(args.device)

    def fresh_pipe():  # a clean UNet for each slider: peft leaves wrappers behind
        return load_sdxl(args.model, device=args.device, dtype="float32")

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        jobs = train_jobs(args, fresh_pipe, work)
        torch.set_grad_enabled(False)
        pipe, seeds = fresh_pipe(), [args.seed + i for i in range(args.seeds)]
        results = {}
        for name, path, target, seconds in jobs:
            results[name] = evaluate(pipe, probe, path, target, PROMPTS, seeds, args.steps, args.guidance)
            results[name]["train_s"] = None if seconds is None else round(seconds, 1)
    print_table(results)
    summary = {
        "benchmark": "quality",
        "world": "toy",
        "models": {"sdxl": str(args.model), "gan": str(args.gan or "toy"), "probe": str(probe_folder)},
        "prompts": list(PROMPTS),
        "seeds_per_prompt": args.seeds,
        "scales": list(SCALES),
        "gate_start_noise": 750,
        "sampling": {"steps": args.steps, "guidance": args.guidance},
        "goals": {"spearman": ">= 0.9", "off_target": "<= 0.25"},
        "sliders": results,
        "seconds": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
        **device_report(torch.device(args.device)),
    }
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
