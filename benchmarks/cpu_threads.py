"""Benchmark CPU threads on a small model: text-slider training steps and sampling on the toy SDXL.

Why this exists: with torch's default (one thread per core) a toy-world slider trained several times
slower on the 2-core development machine than with one thread, and far slower again when the other
core was busy. Each configuration runs in its own process (OpenMP settings are read at start-up),
the configurations are interleaved over `--rounds` rounds, and the median per configuration is
reported with its ratio to one thread. A tiny-op probe times one small convolution (the size of the
toy UNet's) at each thread count: the fixed cost every parallel region pays.

    python benchmarks/cpu_threads.py                  # threads 1 and torch's default, 3 rounds
    python benchmarks/cpu_threads.py --threads 1,2,4 --wait-policy passive
    ... --json                                        # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(threads: int, steps: int, images: int) -> dict:
    """In this process: seconds per text-slider step, per sampled image, and per tiny convolution."""
    import torch

    from sliders.config import PromptEntry, TextSliderConfig, TrainSettings
    from sliders.text_slider import TextSliderTask
    from sliders.trainer import prepare_slider, seed_everything, train_step
    from toyworld import toy_sdxl_path
    from transfer.sdxl import load_sdxl

    torch.set_num_threads(threads)
    pipe = load_sdxl(str(toy_sdxl_path()), device="cpu")
    entry = PromptEntry("a face", "a face, smiling", "a face, frowning", guidance_scale=4.0, resolution=64)
    config = TextSliderConfig(prompts=(entry,), train=TrainSettings(steps=steps + 1, seed=0))
    task = TextSliderTask(pipe, config)
    params = prepare_slider(task.unet, config.train)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    generator = seed_everything(0)

    def backward(loss):
        loss.backward()

    train_step(task, task.unet, optimizer, generator, backward)  # warm-up (and the first trajectory)
    started = time.perf_counter()
    for _ in range(steps):
        train_step(task, task.unet, optimizer, generator, backward)
    step_seconds = (time.perf_counter() - started) / steps
    task.unet.delete_adapters(list(task.unet.peft_config))
    pipe.to("cpu")
    sample = {"num_inference_steps": 20, "height": 64, "width": 64, "output_type": "latent"}
    pipe("a face", generator=torch.Generator().manual_seed(0), **sample)  # warm-up
    started = time.perf_counter()
    for seed in range(images):
        pipe("a face with red hair", generator=torch.Generator().manual_seed(seed), **sample)
    image_seconds = (time.perf_counter() - started) / images
    return {
        "threads": torch.get_num_threads(),
        "step_s": round(step_seconds, 4),
        "image_s": round(image_seconds, 4),
        "tiny_conv_us": round(tiny_conv_seconds() * 1e6, 1),
        "parallel": torch.__config__.parallel_info().splitlines()[:6],
    }


def tiny_conv_seconds(repeats: int = 400) -> float:
    """Seconds per 3x3 convolution of a [2, 64, 16, 16] activation: the scale of the toy UNet's ops."""
    import torch

    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(2, 64, 16, 16)
    with torch.no_grad():
        for _ in range(20):
            conv(x)
        started = time.perf_counter()
        for _ in range(repeats):
            conv(x)
    return (time.perf_counter() - started) / repeats


def run_child(threads: int, policy: str | None, steps: int, images: int) -> dict:
    """Measure one configuration in a fresh process (OMP_WAIT_POLICY is read when OpenMP starts)."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy.upper()
    else:
        env.pop("OMP_WAIT_POLICY", None)
    command = [
        sys.executable,
        __file__,
        "--child",
        str(threads),
        "--steps",
        str(steps),
        "--images",
        str(images),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="", help="thread counts, e.g. 1,2 (default: 1 and torch's)")
    parser.add_argument(
        "--wait-policy", default="", help="also run these OMP_WAIT_POLICY values, e.g. passive"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.steps, args.images)))
        return
    import torch

    counts = [int(t) for t in args.threads.split(",") if t] or sorted({1, torch.get_num_threads()})
    policies = [None] + [p for p in args.wait_policy.split(",") if p]
    configs = [(n, p) for p in policies for n in counts]
    runs: dict[str, list[dict]] = {}
    for round_index in range(args.rounds):
        for threads, policy in configs:
            result = run_child(threads, policy, args.steps, args.images)
            runs.setdefault(f"{threads}{'/' + policy if policy else ''}", []).append(result)
            print(f"round {round_index}: threads {threads} {policy or ''}: {result['step_s']} s/step, "
                  f"{result['image_s']} s/image, tiny conv {result['tiny_conv_us']} us", flush=True)  # fmt: skip
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            key: round(statistics.median(r[key] for r in results), 4)
            for key in ("step_s", "image_s", "tiny_conv_us")
        }
    base = summary[next(iter(summary))]
    for name, figures in summary.items():
        figures["step_vs_first"] = round(figures["step_s"] / base["step_s"], 2)
        figures["image_vs_first"] = round(figures["image_s"] / base["image_s"], 2)
        print(f"threads {name}: median {figures['step_s']} s/step ({figures['step_vs_first']}x), "
              f"{figures['image_s']} s/image ({figures['image_vs_first']}x), tiny conv {figures['tiny_conv_us']} us")  # fmt: skip
    load = os.getloadavg()
    openmp = [line.strip() for line in runs[next(iter(runs))][0]["parallel"] if "OpenMP" in line]
    print(f"cores {os.cpu_count()}, load average {load[0]:.1f}; {', '.join(openmp)}")
    if args.json:
        print(json.dumps({"benchmark": "cpu_threads", "cores": os.cpu_count(), "load_average": round(load[0], 2),
                          "rounds": args.rounds, "steps": args.steps, "images": args.images, "results": summary}))  # fmt: skip


if __name__ == "__main__":
    main()
