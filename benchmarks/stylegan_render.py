"""Render speed of our StyleGAN3 generator (images/s), and of NVlabs' code in the same run when available.

    python benchmarks/stylegan_render.py [--json] [--configs T32,R32] [--batches 1,8] [--min-seconds 3]
    python benchmarks/stylegan_render.py --configs T256,R256 --batches 8     # the CPU goal (>= 4x NVlabs)
    python benchmarks/stylegan_render.py --configs "" --gpu-configs R1024 --batches 8   # a GPU

CPU: small T and R configs (`--configs`, 1 thread unless OMP_NUM_THREADS says otherwise; the clock is
the process's CPU time). CUDA (when available): also the FFHQ-1024 T and R architectures with random
weights (`--gpu-configs`, wall time), each as `ours` (fp32) and `ours_fp16` (NVlabs' fp16 in the
`num_fp16_res` highest resolutions, `force_fp32=False`); `--compile` adds `ours_compiled`
(torch.compile of the synthesis network). NVlabs: when $STYLEGAN3_DIR (or NVlabs on sys.path) is set,
their generator is built with the same init kwargs, loaded with *our* state dict (the names are equal)
and timed in the same process on the same inputs, alternating with ours: on CPU their reference ops
(`nvlabs`), on CUDA their default (`nvlabs`: compiled CUDA kernels and fp16 layers;
`nvlabs_cuda_kernels` says whether the kernels compiled) and `nvlabs_fp32`. Every variant's max
|difference| from ours (fp32) is reported; `ours_over_<variant>` is the best of ours over it.
With --json the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
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
    # 256 px with the FFHQ configs' proportions at a quarter of their widths (16 / 32 channels in the
    # 256 px layers): the largest size whose NVlabs reference path a 2-core CPU times in minutes.
    "T256": GeneratorConfig(img_resolution=256, channel_base=4096, channel_max=128),
    "R256": GeneratorConfig(
        img_resolution=256, channel_base=8192, channel_max=256, conv_kernel=1, use_radial_filters=True
    ),
    # The FFHQ-1024 architectures (random weights): GPU only.
    "T1024": GeneratorConfig(),
    "R1024": GeneratorConfig(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
}


Render = Callable[[torch.Tensor], torch.Tensor]


def images_per_second(
    variants: dict[str, Render], z: torch.Tensor, min_seconds: float, min_runs: int = 3
) -> dict[str, float]:
    """Images/s of each variant from the median time per call; calls alternate between the variants so
    that load from other processes on a shared machine hits them alike (CPU: the process's CPU time)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for render in variants.values():  # warm-up (and compilation)
            render(z)
        start = _clock(z.device)
        while min(map(len, times.values())) < min_runs or _clock(z.device) - start < min_seconds * len(
            variants
        ):
            for name, render in variants.items():
                t0 = _clock(z.device)
                render(z)
                times[name].append(_clock(z.device) - t0)
    return {name: z.shape[0] / statistics.median(bucket) for name, bucket in times.items()}


def _clock(device: torch.device) -> float:
    # CUDA: wall time after synchronising. CPU: the process's CPU time, since the machine may be shared
    # (the benchmark runs one thread unless told otherwise, so CPU time is the work done).
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def nvlabs_twin(G: Generator) -> torch.nn.Module:
    """NVlabs' Generator with the same init kwargs and our weights (runs NVlabs code from $STYLEGAN3_DIR)."""
    from training.networks_stylegan3 import Generator as NVGenerator  # NVlabs code, opt-in

    kwargs = G.config.to_init_kwargs()
    twin = NVGenerator(**kwargs)
    twin.load_state_dict(G.state_dict(), strict=True)
    return twin.eval().requires_grad_(False)


def nvlabs_uses_cuda_kernels() -> bool:
    """Whether NVlabs' filtered_lrelu plugin got compiled and loaded (else it ran its reference path)."""
    from torch_utils.ops import filtered_lrelu  # NVlabs code, opt-in

    return filtered_lrelu._plugin is not None


def render_variants(
    G: Generator, device: torch.device, with_nvlabs: bool, compile_: bool
) -> dict[str, Render]:
    """What is timed: ours in fp32, on CUDA also with NVlabs' fp16 layers, compiled, and NVlabs' own code."""
    kwargs = {"truncation_psi": 0.7, "noise_mode": "const"}
    variants: dict[str, Render] = {"ours": lambda z: G(z, None, **kwargs)}
    if device.type == "cuda":
        variants["ours_fp16"] = lambda z: G(z, None, force_fp32=False, **kwargs)
    if compile_:
        synthesis = torch.compile(G.synthesis, dynamic=False)  # one graph per layer shape
        fp32 = device.type != "cuda"
        variants["ours_compiled"] = lambda z: synthesis(
            G.mapping(z, None, truncation_psi=0.7), force_fp32=fp32
        )
    if with_nvlabs:
        twin = nvlabs_twin(G).to(device)
        variants["nvlabs"] = lambda z: twin(z, None, **kwargs)  # NVlabs' default: fp16 layers on CUDA
        if device.type == "cuda":
            variants["nvlabs_fp32"] = lambda z: twin(z, None, force_fp32=True, **kwargs)
    return variants


def _checked(variants: dict[str, Render], z: torch.Tensor, row: dict) -> dict[str, Render]:
    """The variants that run; each one's failure and max |difference| from ours (fp32) go into `row`."""
    with torch.inference_mode():
        reference = variants["ours"](z)
        kept = {"ours": variants["ours"]}
        for name, render in list(variants.items())[1:]:
            try:
                row[f"max_abs_diff_{name}"] = float((render(z) - reference).abs().max())
                kept[name] = render
            except Exception as error:  # report, keep timing the others
                row[f"{name}_error"] = f"{type(error).__name__}: {str(error)[:300]}"
    return kept


def bench_config(name: str, batches: list[int], device: torch.device, args, with_nvlabs: bool) -> list[dict]:
    """Time every variant on one config at each batch size."""
    torch.manual_seed(0)
    G = Generator(CONFIGS[name]).eval().requires_grad_(False).to(device)
    try:
        variants = render_variants(G, device, with_nvlabs, args.compile)
        setup_error = None
    except Exception as error:  # NVlabs missing a dependency, say: report, time ours
        variants = render_variants(G, device, False, args.compile)
        setup_error = f"{type(error).__name__}: {str(error)[:300]}"
    rows = []
    for batch in batches:
        z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(batch)).to(device)
        row = {"config": name, "resolution": G.img_resolution, "batch": batch, "device": device.type}
        if setup_error:
            row["nvlabs_error"] = setup_error
        kept = _checked(variants, z, row)
        rates = images_per_second(kept, z, args.min_seconds, args.min_runs)
        row.update({f"{variant}_img_s": rate for variant, rate in rates.items()})
        for variant in rates:
            if variant.startswith("nvlabs"):
                row[f"ours_over_{variant}"] = max(rates.get("ours_fp16", 0), rates["ours"]) / rates[variant]
        if "nvlabs" in rates:
            row["nvlabs_cuda_kernels"] = nvlabs_uses_cuda_kernels()
        rows.append(row)
        print(f"{name:6s} batch {batch:2d} {device.type}: "
              + " | ".join(f"{v} {r:8.2f} img/s" for v, r in rates.items())
              + "".join(f" | {k} {v:.2f}x" for k, v in row.items() if k.startswith("ours_over"))
              + "".join(f" | {k} {v}" for k, v in row.items() if k.endswith("error")), flush=True)  # fmt: skip
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
    parser.add_argument("--min-runs", type=int, default=3, help="time each variant at least this often")
    parser.add_argument("--no-nvlabs", action="store_true", help="skip NVlabs even when available")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(G.synthesis)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    with_nvlabs = not args.no_nvlabs and nvlabs_available()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, NVlabs {'yes' if with_nvlabs else 'no'}"
    )
    rows = []
    for name in filter(None, args.configs.split(",")):  # --configs "" times nothing on the CPU
        rows += bench_config(name, batches, torch.device("cpu"), args, with_nvlabs)
    if torch.cuda.is_available():
        for name in filter(None, args.gpu_configs.split(",")):
            rows += bench_config(name, batches, torch.device("cuda"), args, with_nvlabs)
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
