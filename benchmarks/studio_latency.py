"""Seconds from a changed slider to the new image in the studio, against the bare model's image time.

    python benchmarks/studio_latency.py [--arch toy|sdxl] [--steps 20] [--size PX] [--repeats 5] [--json]

What the studio does when a person moves a slider and presses Generate: `StudioEngine.run` with one
scale changed (model loaded, slider files read, prompt embeddings cached, the composition kept; only the
fused weights are recomputed, once, at the gate), including writing the PNG with its metadata. Measured
against, in the same run and interleaved: `base` = the bare pipeline on the same prompt, seed, size and
steps with no slider (what no slider tooling can beat), and `cold` = what a fresh `apply` does for the
same image once the model is loaded (read both slider files, compose, encode the prompt, render).

`changed_slider_s` is wall time (what a person waits for), median of `--repeats`; `*_cpu_s` the process's
CPU time (on a shared machine wall time also measures the neighbours; `load_avg_1m` says how busy it
was). Goal: <= 2 s on two CPU cores for the toy world at 64 px, 20 steps.

`--arch toy` (default): the shipped toy SDXL and its two demo sliders, on the CPU. `--arch sdxl`: SDXL
base's shapes with random weights in bf16 on a GPU (as `compose.py --arch sdxl`) and two random rank-4
sliders on the default modules, at 1024 px by default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compose import random_sliders  # noqa: E402  (same folder)
from text_slider_step import SDXL_ARCH_NAME, device_name, random_sdxl_pipeline  # noqa: E402

from sliders.slider_file import save_slider  # noqa: E402
from transfer.apply import RenderRequest, load_sliders, render  # noqa: E402
from transfer.apply import SliderSpec as Spec  # noqa: E402
from transfer.compose import compose_sliders  # noqa: E402
from transfer.cpu_threads import configure_threads, is_small_unet  # noqa: E402
from transfer.gate import default_gate  # noqa: E402
from transfer.studio.engine import StudioEngine  # noqa: E402
from transfer.studio.job import Job, SliderSetting  # noqa: E402

GOAL_S = 2.0
PROMPT = "a face with red hair"
GUIDANCE = 5.0  # the studio's default, which Job uses too


def toy_setup() -> tuple[object, list[Path], str]:
    """The toy SDXL on the CPU and the two shipped demo sliders."""
    from toyworld import demo_slider_paths
    from transfer.commands.aliases import model_aliases
    from transfer.sdxl import load_sdxl

    pipe = load_sdxl("toy", device="cpu", aliases=model_aliases())
    return pipe, list(demo_slider_paths().values()), "toy"


def sdxl_setup(device: str | None, folder: Path) -> tuple[object, list[Path], str]:
    """SDXL base's shapes with random weights, and two random sliders saved as files."""
    pipe = random_sdxl_pipeline(device)
    paths = []
    for index, factors in enumerate(random_sliders(pipe.unet, 2)):
        meta = {"concept_transfer.concept": f"random {index}"}
        paths.append(save_slider(folder / f"random{index}.safetensors", factors, meta))
    return pipe, paths, SDXL_ARCH_NAME


class Clock:
    """Wall and process CPU time of a block (CUDA synchronised)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> Clock:
        self._sync()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def time_base(pipe, engine: StudioEngine, args) -> Clock:
    """One bare image: no slider, cached prompt embeddings, same settings."""
    request = RenderRequest(
        PROMPT, 0, (), steps=args.steps, guidance=GUIDANCE, width=args.size, height=args.size
    )
    with compose_sliders(pipe.unet, [], []) as nothing, Clock(pipe.device) as clock:
        render(pipe, nothing, request, conditioning=engine.conditioning(PROMPT, None))
    return clock


def time_cold(pipe, paths: list[Path], scales: tuple[float, ...], args) -> Clock:
    """What a fresh `apply` does for one image once the model is loaded."""
    with Clock(pipe.device) as clock:
        sliders = load_sliders([Spec(path) for path in paths], pipe.unet)
        gate, _ = default_gate([s.metadata for s in sliders])
        raw = tuple(slider.raw_scale(scale) for slider, scale in zip(sliders, scales))
        request = RenderRequest(
            PROMPT, 0, raw, steps=args.steps, guidance=GUIDANCE, width=args.size, height=args.size
        )
        with compose_sliders(pipe.unet, [s.factors for s in sliders], raw) as composition:
            render(pipe, composition, request, gate)
    return clock


def measure(pipe, paths: list[Path], out: Path, args) -> dict:
    """Interleave base images, slider changes in the studio and cold applies; medians."""
    engine = StudioEngine(pipe, "benchmark", out)

    def job(scale: float) -> Job:
        sliders = (SliderSetting(paths[0], "a", scale), SliderSetting(paths[1], "b", 0.5))
        return Job("generate", PROMPT, 0, sliders, steps=args.steps, width=args.size, height=args.size)

    engine.run(job(0.0), "bench", out, 0)  # warm-up: reads the files, encodes, composes once
    time_base(pipe, engine, args)
    base, changed, unchanged, cold = [], [], [], []
    for repeat in range(args.repeats):
        base.append(time_base(pipe, engine, args))
        with Clock(pipe.device) as clock:
            engine.run(job(0.25 * (repeat + 1)), "bench", out, 2 * repeat + 1)
        changed.append(clock)
        with Clock(pipe.device) as clock:
            engine.run(job(0.25 * (repeat + 1)), "bench", out, 2 * repeat + 2)
        unchanged.append(clock)
        if repeat < 2:
            cold.append(time_cold(pipe, paths, (0.25 * (repeat + 1), 0.5), args))

    def median(clocks: list[Clock], field: str) -> float:
        return round(statistics.median(getattr(c, field) for c in clocks), 4)

    report = {f"{name}_s": median(clocks, "wall") for name, clocks in _named(base, changed, unchanged, cold)}
    report |= {
        f"{name}_cpu_s": median(clocks, "cpu") for name, clocks in _named(base, changed, unchanged, cold)
    }
    report["slider_loads"], report["compositions"] = (
        engine.stats["slider_loads"],
        engine.stats["compositions"],
    )
    engine.close()
    return report


def _named(base, changed, unchanged, cold):
    return [("base_image", base), ("changed_slider", changed), ("unchanged", unchanged), ("cold_apply", cold)]


def run(args) -> dict:
    """The benchmark's report."""
    with tempfile.TemporaryDirectory(prefix="studio_latency_") as scratch:
        if args.arch == "sdxl":
            pipe, paths, arch = sdxl_setup(args.device, Path(scratch))
        else:
            pipe, paths, arch = toy_setup()
        # The studio's own rule (`concept-transfer studio` applies it after loading).
        configure_threads(args.threads, pipe.unet.device, is_small_unet(pipe.unet))
        args.size = args.size or (1024 if args.arch == "sdxl" else 64)
        report = measure(pipe, paths, Path(scratch) / "out", args)
    ratio = report["changed_slider_s"] / report["base_image_s"]
    return {
        "benchmark": "studio_latency",
        "arch": arch,
        "device": device_name(pipe.device),
        "threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "size": args.size,
        "steps": args.steps,
        "repeats": args.repeats,
        **report,
        "changed_over_base": round(ratio, 3),
        "cold_over_changed": round(report["cold_apply_s"] / report["changed_slider_s"], 3),
        "goal_s": GOAL_S if args.arch == "toy" else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the report (one JSON line last with --json)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=["toy", "sdxl"], default="toy")
    parser.add_argument("--device", default=None, help="--arch sdxl: the GPU (default cuda)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="pixels (default 64 toy, 1024 sdxl)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: the studio's rule, 1 for the toy model on a CPU)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line last")
    args = parser.parse_args(argv)
    report = run(args)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
