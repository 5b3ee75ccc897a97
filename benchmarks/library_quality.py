"""Library quality on the toy world: discover + library build, then every library slider scored by the probe.

1. `concept-transfer discover --gan toy --top K --out lib/candidates` and `concept-transfer library build
   --gan toy --model toy --top K --out lib` (the commands a user runs; the probe plays no part in either;
   the build takes the best K of the candidates it finds there, so a kept `--work` resumes);
2. the toy GAN itself, measured with the probe along its style channels and w directions: which world
   attributes it can vary at all (`gan_varies`; `toyworld.gan_attributes`);
3. every finished library slider rendered on held-out prompts x seeds (100+) at user scales -2..2 (its
   calibration), as `slider calibrate` renders (the slider's gate), every image read by the probe. Per
   attribute the GAN varies, the library slider that moves it best, by `gan_varies`' own rule
   (`toyworld.gan_attributes.recovers`): per-prompt/seed Spearman >= 0.9 in the direction of the effect
   (an unnamed slider may lower what it moves), effect from -2 to +2 >= 1 world std, off-target <= 25%
   (`toyworld.slider_eval.quality`);
4. calibration, on the same renders with the calibration's own distance (mean |dz| of the final latents,
   as `benchmarks/calibration.py`): effect_at_1_spread = max over recovered sliders |e_k / mean(e) - 1|
   with e_k the change at user scale +-1 against 0, and step_cv = the worst recovered slider's coefficient
   of variation of the four successive step changes -2 -> -1 -> 0 -> 1 -> 2; `probe_*` the same in world
   stds of the attribute each recovered (the calibration equalises image change, not the probe's reading);
5. seconds per slider: the build trains one at a time; the first `--together` sliders' corpora are
   trained again for `--timing-steps` steps, one loop each and all in one loop (training only).

    python benchmarks/library_quality.py --json          # hours on 2 shared CPU cores
    python benchmarks/library_quality.py --top 3 --pairs 16 --steps 40 --seeds 2 --sample-steps 10 \
        --calibration-seeds 2 --preview-seeds 1 --together 3 --timing-steps 10 --json   # ~15 min: a look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.calibration import spread  # noqa: E402
from toyworld.gan_attributes import EFFECT_MIN, OFF_TARGET_MAX, SPEARMAN_MIN, recovers  # noqa: E402
from toyworld.slider_eval import quality  # noqa: E402
from transfer.cli import main as cli  # noqa: E402

USER_SCALES = (-2.0, -1.0, 0.0, 1.0, 2.0)
EVAL_PROMPTS = (
    "a face with red hair",
    "a wide face",
    "a face with dark skin",
    "a narrow face with blue hair",
)
LIBRARY_PROMPTS = ("a face with green hair", "a medium face", "a face with tan skin")  # previews, calibration
EVAL_SEED = 100  # + --seed: evaluation seeds the build never rendered
GOALS = {"spearman": SPEARMAN_MIN, "effect_std": EFFECT_MIN, "off_target": OFF_TARGET_MAX,
         "effect_at_1_spread": 0.25, "step_cv": 0.25}  # fmt: skip


def run_cli(args: list[str]) -> float:
    """Run a concept-transfer command in this process; its wall time (exits on failure)."""
    started = time.perf_counter()
    code = cli([str(a) for a in args])
    if code not in (0, 1):  # 1: some slider failed; the index says which
        raise SystemExit(f"concept-transfer {' '.join(map(str, args[:2]))} failed with exit status {code}")
    return time.perf_counter() - started


def build_library(work: Path, args: argparse.Namespace) -> tuple[dict, float | None, float]:
    """Discover into lib/candidates, then build the best --top of them (a kept --work that already holds
    as many candidates is not discovered again: discover seconds None); (index, discover s, build s)."""
    lib = work / "lib"
    cand = lib / "candidates"
    prompts = work / "library-prompts.txt"
    prompts.write_text("\n".join(LIBRARY_PROMPTS) + "\n")
    discover_s = None
    if not holds_candidates(cand / "candidates.json", args.top):
        discover_s = run_cli(["discover", "--gan", "toy", "--top", args.top, "--seed", args.seed, "--out", cand,
                              "--force", *(["--threads", args.threads] if args.threads else [])])  # fmt: skip
    build_s = run_cli([
        "library", "build", "--gan", "toy", "--model", "toy", "--top", args.top,
        "--out", lib, "--pairs", args.pairs, "--steps", args.steps, "--resolution", 64, "--prompts", prompts,
        "--sample-steps", args.sample_steps, "--guidance", args.guidance, "--size", 64, "--seed", args.seed,
        "--device", "cpu", "--calibration-seeds", ",".join(map(str, range(args.calibration_seeds))),
        "--seeds", ",".join(map(str, range(args.preview_seeds))),
        *(["--threads", args.threads] if args.threads else []),
    ])  # fmt: skip
    return json.loads((lib / "index.json").read_text()), discover_s, build_s


def holds_candidates(path: Path, top: int) -> bool:
    """Whether discover's candidates.json at `path` ranks at least `top` candidates."""
    return path.exists() and len(json.loads(path.read_text())["candidates"]) >= top


@torch.no_grad()
def sweep_latents(pipe, path: Path, args: argparse.Namespace) -> tuple[list[float], list[torch.Tensor]]:
    """The slider's raw weights at USER_SCALES (its calibration) and the final latents [P*S, C, h, w] of
    EVAL_PROMPTS x seeds at each, rendered as `slider calibrate` renders (its gate, CPU seeds)."""
    from sliders.slider_file import load_slider
    from transfer.calibrate import CalibrationSettings, render_latents
    from transfer.compose import compose_sliders
    from transfer.gate import default_gate

    slider = load_slider(path, unet=pipe.unet)
    raw = [slider.calibration.to_raw(u) for u in USER_SCALES]
    render = CalibrationSettings(steps=args.sample_steps, guidance=args.guidance, width=64, height=64)
    gate = default_gate([slider.metadata])[0]
    latents = []
    with compose_sliders(pipe.unet, [dict(slider.factors)], [0.0], "fused") as composition:
        for scale in raw:
            composition.set_scales([scale])
            latents.append(render_latents(pipe, composition, EVAL_PROMPTS, seeds(args), render, gate))
    return raw, latents


def seeds(args: argparse.Namespace) -> list[int]:
    """The evaluation seeds (held out: the library's previews and calibration use 0, 1, ...)."""
    return [EVAL_SEED + args.seed + i for i in range(args.seeds)]


@torch.no_grad()
def probe_values(pipe, probe, latents: list[torch.Tensor], prompts: int) -> dict[str, np.ndarray]:
    """Probe readings {attribute: [P, S, K]} (S: user scales) of `sweep_latents`' latents."""
    from transfer.calibrate import decode_latents

    read = [probe.measure(decode_latents(pipe, z)) for z in latents]
    return {a: np.stack([r[a].reshape(prompts, -1) for r in read], axis=1) for a in read[0]}


def latent_effects(latents: list[torch.Tensor]) -> tuple[float, list[float]]:
    """(effect at user scale +-1, the four successive step effects) in mean |dz| (calibration's distance)."""
    from transfer.calibrate import latent_distance

    zero = USER_SCALES.index(0.0)

    def dist(a: int, b: int) -> float:
        return float(latent_distance(latents[a], latents[b]).mean())

    at_1 = (dist(zero + 1, zero) + dist(zero - 1, zero)) / 2
    return at_1, [dist(i, i + 1) for i in range(len(USER_SCALES) - 1)]


def score_slider(pipe, probe, path: Path, args: argparse.Namespace) -> dict:
    """Probe figures per attribute and calibration figures of one calibrated library slider."""
    from toyworld.gan_attributes import monotonicity

    raw, latents = sweep_latents(pipe, path, args)
    values = probe_values(pipe, probe, latents, len(EVAL_PROMPTS))
    attributes = {}
    for name in values:
        q = quality(values, USER_SCALES, name)
        attributes[name] = {"spearman": round(monotonicity(q), 4), "off_target": q["off_target"],
                            "effect_std": round(abs(q["effect_std"]), 4),
                            "direction": "+" if q["effect_std"] >= 0 else "-", "recovers": recovers(q),
                            **probe_steps(values[name], name)}  # fmt: skip
    at_1, steps = latent_effects(latents)
    return {"attributes": attributes, "effect_at_1": round(at_1, 5), "step_effects": [round(s, 5) for s in steps],
            "raw_scales": [round(r, 4) for r in raw]}  # fmt: skip


def probe_steps(values: np.ndarray, attribute: str) -> dict:
    """The probe's view of the calibration: |change| at user +-1 and the CV of the four step changes
    (means over prompts x seeds, world stds) of one attribute [P, S, K]."""
    from toyworld.world import WORLD_STD

    means = values.mean(axis=(0, 2)) / WORLD_STD[attribute]  # per user scale
    zero = USER_SCALES.index(0.0)
    at_1 = (abs(means[zero + 1] - means[zero]) + abs(means[zero - 1] - means[zero])) / 2
    steps = np.abs(np.diff(means))
    return {
        "at_1": round(float(at_1), 4),
        "step_cv": round(float(np.std(steps) / max(np.mean(steps), 1e-9)), 4),
    }


def recovered_by(scores: dict[str, dict], attribute: str) -> dict:
    """The library slider that moves `attribute` best: recovering ones first (lowest off-target), then
    the most monotone large effect (`toyworld.gan_attributes`' preference)."""

    def key(name: str) -> tuple:
        m = scores[name]["attributes"][attribute]
        return (0, m["off_target"]) if m["recovers"] else (1, -m["spearman"] * m["effect_std"])

    best = min(scores, key=key)
    m = dict(scores[best]["attributes"][attribute])
    recovered = m.pop("recovers")
    return {"slider": best, **m, "recovered": recovered}


def compact(score: dict) -> dict:
    """A slider's figures for the JSON line: its strongest attribute, and its calibration figures."""
    attribute = max(score["attributes"], key=lambda a: score["attributes"][a]["effect_std"])
    return {"moves": attribute, **score["attributes"][attribute],
            **{k: score[k] for k in ("effect_at_1", "step_effects", "raw_scales")}}  # fmt: skip


def calibration_figures(scores: dict[str, dict], attributes: dict[str, dict]) -> dict:
    """effect_at_1_spread and step_cv (the worse slider) over the recovered sliders, in the calibration's
    latent distance as `benchmarks/calibration.py`; and the same in the probe's world stds of the
    attribute each one recovered (`probe_*`)."""
    recovered = {m["slider"]: a for a, m in attributes.items() if m["recovered"]}
    if not recovered:
        return {"effect_at_1_spread": None, "step_cv": None}
    effects = [scores[s]["effect_at_1"] for s in recovered]
    cvs = [float(np.std(scores[s]["step_effects"]) / np.mean(scores[s]["step_effects"])) for s in recovered]
    probe = [scores[s]["attributes"][a] for s, a in recovered.items()]
    return {"effect_at_1_spread": spread(effects), "step_cv": round(max(cvs), 4),
            "step_cv_mean": round(float(np.mean(cvs)), 4), "effect_at_1": dict(zip(recovered, effects)),
            "probe_effect_at_1_spread": spread([m["at_1"] for m in probe]),
            "probe_step_cv": max(m["step_cv"] for m in probe),
            "probe_at_1": {s: m["at_1"] for s, m in zip(recovered, probe)}}  # fmt: skip


def gan_varies(probe) -> list[str]:
    """The world attributes the toy GAN itself varies along some style channel or w direction."""
    from stylegan_bridge.mining import load_gan
    from stylegan_bridge.style_space import style_stats
    from toyworld.gan_attributes import gan_varies as measure
    from toyworld.toy_gan import toy_gan_path

    G, _ = load_gan(toy_gan_path(), device="cpu")
    return measure(G, style_stats(G, num_samples=10_000, seed=0), probe)["varies"]


def time_training(work: Path, index: dict, size: int, steps: int) -> dict:
    """Seconds per slider, training only (`steps` steps), of the first `size` library sliders: one loop
    each, and all in one loop, in the order one, together, together, one (a load that drifts during the
    run weighs on both alike), each on fresh copies of their corpora (latents encoded again, as in a build)."""
    from stylegan_bridge.candidates import load_candidates
    from transfer.library.build import PipelineHolder, train_together
    from transfer.library.plan import LibrarySettings

    settings = LibrarySettings(**{**index["settings"], "steps": steps, "gan": "toy", "model": "toy",
                                  "device": "cpu", **_aliases()})  # fmt: skip
    done = [s for s in index["sliders"] if s["status"] == "done"][:size]
    candidates = {c.name: c for c in load_candidates(work / "lib" / "candidates" / "candidates.json").entries}
    holder = PipelineHolder(settings, "cpu")
    holder.get()
    runs: dict[str, list[float]] = {"one_at_a_time": [], "together": []}
    for i, way in enumerate(("one_at_a_time", "together", "together", "one_at_a_time")):
        root = work / "timing" / f"{i}-{way}"
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        for group in [[s] for s in done] if way == "one_at_a_time" else [done]:
            plans = []
            for s in group:
                shutil.copytree(work / "lib" / s["id"] / "corpus", root / s["id"] / "corpus",
                                ignore=shutil.ignore_patterns("cache"))  # fmt: skip
                plans.append(settings.plan(candidates[s["id"]], root))
            train_together(holder, plans)
        runs[way].append((time.perf_counter() - started) / len(done))
    return {**{way: round(float(np.mean(t)), 1) for way, t in runs.items()},
            "runs": {way: [round(t, 1) for t in times] for way, times in runs.items()},
            "sliders": len(done), "steps": steps, "load": round(os.getloadavg()[0], 2)}  # fmt: skip


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean of the values that are there (None if none is)."""
    there = [v for v in values if v is not None]
    return round(float(np.mean(there)), 1) if there else None


def _aliases() -> dict:
    from transfer.commands.aliases import gan_aliases, model_aliases

    return {"gan_aliases": gan_aliases(), "model_aliases": model_aliases()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--top", type=int, default=12, help="candidates to discover and build (12)")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200, help="training steps per slider (200)")
    parser.add_argument("--together", type=int, default=4, help="sliders per loop in the timing (4)")
    parser.add_argument(
        "--timing-steps", type=int, default=50, help="training steps per slider of the timing (50)"
    )
    parser.add_argument("--seeds", type=int, default=8, help="evaluation seeds per prompt (8; x 4 prompts)")
    parser.add_argument(
        "--calibration-seeds", type=int, default=4, help="seeds 0..N-1 of the calibration (4)"
    )
    parser.add_argument("--preview-seeds", type=int, default=2, help="seeds 0..N-1 of the previews (2)")
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads, also of the commands (default: their rule, 1 for the toy world)",
    )
    parser.add_argument("--work", type=Path, help="keep everything here (default: a temp folder)")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Discover, build, score; print a table (and with --json one JSON line last)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from toyworld import assets_dir
    from toyworld.demo import find_probe_folder
    from toyworld.probe import load_probe
    from transfer.sdxl import load_sdxl

    started, load = time.perf_counter(), os.getloadavg()[0]
    probe = load_probe(find_probe_folder(assets_dir()))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        index, discover_s, build_s = build_library(work, args)
        varies = gan_varies(probe)
        pipe = load_sdxl("toy", device="cpu", dtype="float32", aliases=_aliases()["model_aliases"])
        done = [s for s in index["sliders"] if s["status"] == "done"]
        scores = {s["id"]: score_slider(pipe, probe, work / "lib" / s["file"], args) for s in done}
        timing = time_training(work, index, args.together, args.timing_steps) if done else {}
    attributes = {a: recovered_by(scores, a) for a in varies} if scores else {}
    summary = {  # the issue's fields first, in its order
        "recovered": sum(m["recovered"] for m in attributes.values()), "of": len(varies),
        "attributes": attributes, "gan_varies": varies, "calibration": calibration_figures(scores, attributes),
        "build_s": round(build_s, 1),
        "s_per_slider": {"one_at_a_time": timing.get("one_at_a_time"), "together": timing.get("together")},
        "benchmark": "library_quality", "world": "toy", "top": args.top, "pairs": args.pairs,
        "steps": args.steps, "eval_seeds": args.seeds, "sample_steps": args.sample_steps,
        "calibration_seeds": args.calibration_seeds, "built": len(done),
        "failed": [f"{s['id']}: {s['reason']}" for s in index["sliders"] if s["status"] == "failed"],
        "discover_s": None if discover_s is None else round(discover_s, 1),
        "timing": {**timing, "build_train_mean_s": mean_or_none([s["seconds"].get("train") for s in done])},
        "stage_s": {s["id"]: s["seconds"] for s in done},  # this run's (a resumed build skips finished stages)
        "sliders": {name: compact(score) for name, score in scores.items()}, "goals": GOALS,
        "seconds": round(time.perf_counter() - started, 1), "torch_threads": torch.get_num_threads(),
        "load_at_start": round(load, 2), "load_at_end": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    print(f"{'attribute':<12}{'slider':<16}{'spearman':>9}{'off-tgt':>9}{'effect':>8}  recovered")
    for name, m in attributes.items():
        print(f"{name:<12}{m['slider']:<16}{m['spearman']:>9.3f}{m['off_target']:>9.1%}{m['effect_std']:>8.2f}  {m['recovered']}")  # fmt: skip
    print(f"recovered {summary['recovered']} of {summary['of']}; calibration {summary['calibration']}")
    print(f"build {build_s:.0f} s; seconds per slider: {summary['s_per_slider']}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
