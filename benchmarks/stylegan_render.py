"""Render speed of our StyleGAN3 generator (images/s), and of NVlabs' code in the same run when available.

    python benchmarks/stylegan_render.py [--json] [--configs T32,R32] [--batches 1,8] [--min-seconds 3]

CPU: tiny T and R configs at batch 1 and 8. CUDA (when available): also the FFHQ-1024 T and R
architectures with random weights. NVlabs: when $STYLEGAN3_DIR (or NVlabs on sys.path) is set, their
generator is built with the same init kwargs, loaded with *our* state dict (the names are equal) and
timed in the same process on the same inputs; the max |difference| of the images is reported too.
On CPU NVlabs runs its reference ops (its custom kernels are CUDA-only). With --json the last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylegan_bridge.config import GeneratorConfig  # noqa: E402
from stylegan_bridge.loading import nvlabs_available  # noqa: E402
from stylegan_bridge.networks import Generator  # noqa: E402

CONFIGS = {
    # 32 px micro configs (as in the facts sheet): seconds on a laptop CPU.
    "T32": GeneratorConfig(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32),
    "R32": GeneratorConfig(
        z_dim=32,
        w_dim=32,
        img_resolution=32,
        channel_base=1024,
        channel_max=64,
        conv_kernel=1,
        use_radial_filters=True,
    ),
    # 64 px tiny configs with full-width latents.
    "T64": GeneratorConfig(img_resolution=64, channel_base=4096, channel_max=128),
    "R64": GeneratorConfig(
        img_resolution=64, channel_base=8192, channel_max=256, conv_kernel=1, use_radial_filters=True
    ),
    # The FFHQ-1024 architectures (random weights): GPU only.
    "T1024": GeneratorConfig(),
    "R1024": GeneratorConfig(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
}


def images_per_second(
    models: list[torch.nn.Module], z: torch.Tensor, min_seconds: float, min_runs: int = 3
) -> list[float]:
    """Images/s of each model from the median time per call; calls alternate between the models so that
    load from other processes on a shared machine hits them alike."""
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for G in models:  # warm-up
            G(z, None, truncation_psi=0.7, noise_mode="const")
        _sync(z.device)
        start = time.perf_counter()
        while len(times[0]) < min_runs or time.perf_counter() - start < min_seconds * len(models):
            for G, bucket in zip(models, times):
                t0 = time.perf_counter()
                G(z, None, truncation_psi=0.7, noise_mode="const")
                _sync(z.device)
                bucket.append(time.perf_counter() - t0)
    return [z.shape[0] / statistics.median(bucket) for bucket in times]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def nvlabs_twin(G: Generator) -> torch.nn.Module:
    """NVlabs' Generator with the same init kwargs and our weights (runs NVlabs code from $STYLEGAN3_DIR)."""
    from training.networks_stylegan3 import Generator as NVGenerator  # NVlabs code, opt-in

    kwargs = G.config.to_init_kwargs()
    twin = NVGenerator(**kwargs)
    twin.load_state_dict(G.state_dict(), strict=True)
    return twin.eval().requires_grad_(False)


def bench_config(
    name: str, batches: list[int], device: torch.device, min_seconds: float, with_nvlabs: bool
) -> list[dict]:
    """Time ours (and NVlabs) on one config at each batch size."""
    torch.manual_seed(0)
    G = Generator(CONFIGS[name]).eval().requires_grad_(False).to(device)
    twin = None
    twin_error = None
    if with_nvlabs:
        try:
            twin = nvlabs_twin(G).to(device)
        except Exception as error:  # report, keep timing ours
            twin_error = f"{type(error).__name__}: {error}"
    rows = []
    for batch in batches:
        z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(batch)).to(device)
        row = {"config": name, "resolution": G.img_resolution, "batch": batch, "device": device.type}
        if twin is None:
            (row["ours_img_s"],) = images_per_second([G], z, min_seconds)
            if twin_error:
                row["nvlabs_error"] = twin_error
        else:
            try:
                with torch.inference_mode():
                    ours, theirs = (
                        G(z, None, truncation_psi=0.7),
                        twin(z, None, truncation_psi=0.7, noise_mode="const"),
                    )
                row["max_abs_diff"] = float((ours - theirs).abs().max())
                row["ours_img_s"], row["nvlabs_img_s"] = images_per_second([G, twin], z, min_seconds)
                row["ratio_ours_over_nvlabs"] = row["ours_img_s"] / row["nvlabs_img_s"]
            except Exception as error:
                row["nvlabs_error"] = f"{type(error).__name__}: {error}"
                (row["ours_img_s"],) = images_per_second([G], z, min_seconds)
        rows.append(row)
        text = f"{name:6s} batch {batch:2d} {device.type}: ours {row['ours_img_s']:8.2f} img/s"
        if "nvlabs_img_s" in row:
            text += f" | nvlabs {row['nvlabs_img_s']:8.2f} img/s | ratio {row['ratio_ours_over_nvlabs']:.2f}x"
            text += f" | max|diff| {row['max_abs_diff']:.1e}"
        elif "nvlabs_error" in row:
            text += f" | nvlabs failed: {row['nvlabs_error']}"
        print(text, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (and one JSON line with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--configs", default="T32,R32", help=f"CPU configs, from {', '.join(CONFIGS)}")
    parser.add_argument("--gpu-configs", default="T1024,R1024", help="configs timed on CUDA when available")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument(
        "--min-seconds", type=float, default=3.0, help="time each measurement at least this long"
    )
    parser.add_argument("--no-nvlabs", action="store_true", help="skip NVlabs even when available")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    with_nvlabs = not args.no_nvlabs and nvlabs_available()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, NVlabs {'yes' if with_nvlabs else 'no'}"
    )
    rows = []
    for name in filter(None, args.configs.split(",")):  # --configs "" times nothing on the CPU
        rows += bench_config(name, batches, torch.device("cpu"), args.min_seconds, with_nvlabs)
    if torch.cuda.is_available():
        for name in filter(None, args.gpu_configs.split(",")):
            rows += bench_config(name, batches, torch.device("cuda"), args.min_seconds, with_nvlabs)
    if args.json:
        summary = {
            "benchmark": "stylegan_render",
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "machine": platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "nvlabs": with_nvlabs,
            "results": rows,
        }
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
