"""Sampling time with 0, 1, 10 and 50 sliders: our composition against peft's multi-adapter path.

    python benchmarks/compose.py [--model M] [--steps 12] [--size PX] [--repeats 3] [--json]

Every configuration samples the same prompt and seed through the SDXL pipeline with the gate (default
start_noise 750) switching the sliders, `output_type="latent"` (the VAE does not depend on sliders).
Ratios are time / base time from one run of this script on one machine; each configuration is timed
alternately with the base model (fastest of `--repeats` each); on a CPU the clock is the process's CPU
time (the machine may be shared), on CUDA wall time. Methods:
`ours` = fused composition (the default of `concept-transfer apply`), with new scales for every image
so the one-off fusing is inside the timing; `ours_same_scales` = the same with unchanged scales (the
seed rows of a sweep column); `ours_lowrank` = one adapter of rank sum(r_i); `peft` = one peft adapter
per slider and `set_adapters(names, weights)`; `fuse_seconds` = the one-off cost of fusing new scales.

Default model: the tiny SDXL's text encoders and VAE with a *medium* SDXL-layout UNet (three levels,
64/128/256 channels, two transformer levels, 31M parameters) at 32x32 latents: big enough
that a UNet call (batch 2, CFG) takes about 0.2 s of CPU, so per-call overheads are measured against real
convolution/attention work, yet a full run takes a few minutes on two cores. `--model` takes any SDXL
(hub id, folder, single file, `toy`) for real numbers, preferably on a GPU; `--arch sdxl` builds SDXL
base's shapes with random weights in bf16 (as `text_slider_step.py --arch sdxl`), at 1024 px by default.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from text_slider_step import SDXL_ARCH_NAME, device_name, random_sdxl_pipeline  # noqa: E402  (same folder)

from sliders.lora import target_module_names  # noqa: E402
from sliders.slider_file import LoraFactors  # noqa: E402
from toyworld.tiny_sdxl import TEXT_HIDDEN, TEXT_PROJECTION, TIME_EMBED_DIM, build_tiny_sdxl  # noqa: E402
from transfer.compose import compose_sliders  # noqa: E402
from transfer.gate import DEFAULT_START_NOISE, SliderGate, planned_timesteps  # noqa: E402
from transfer.sdxl import load_sdxl  # noqa: E402

COUNTS = "1,10,50"
# Report key -> (composition method, scales unchanged between images).
METHODS = {
    "ours": ("fused", False),
    "ours_same_scales": ("fused", True),
    "ours_lowrank": ("lowrank", False),
    "peft": ("peft", False),
}
ARCH_NAMES = {
    "medium": "medium SDXL-layout UNet (benchmarks/compose.py)",
    "sdxl": SDXL_ARCH_NAME,
}


def build_medium_unet() -> UNet2DConditionModel:
    """An SDXL-layout UNet of ~40M parameters that fits the tiny SDXL's text encoders."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=32,
        block_out_channels=(64, 128, 256),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 2, 4),
        transformer_layers_per_block=(1, 1, 2),
        use_linear_projection=True,
        cross_attention_dim=2 * TEXT_HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + TEXT_PROJECTION,
    )


def load_pipeline(model: str | None, device: str | None, dtype: str | None, arch: str = "medium"):
    """The benchmark pipeline: `model` loaded as users load it, SDXL's shapes (random), or the medium default."""
    if arch == "sdxl":
        return random_sdxl_pipeline(device)
    if model is not None:
        return load_sdxl(model, device=device, dtype=dtype)
    folder = build_tiny_sdxl(Path(tempfile.mkdtemp(prefix="compose_bench_")) / "tiny")
    pipe = load_sdxl(str(folder), device=device or "cpu", dtype=dtype)
    pipe.unet = build_medium_unet().to(pipe.device, pipe.unet.dtype).eval()
    return pipe


def random_sliders(unet, count: int, rank: int = 4) -> list[dict[str, LoraFactors]]:
    """`count` random rank-`rank` sliders on the default (`noxattn`) modules."""
    generator = torch.Generator().manual_seed(0)
    names = target_module_names(unet, "noxattn")
    sliders = []
    for _ in range(count):
        factors = {}
        for name in names:
            weight = unet.get_submodule(name).weight
            kernel = tuple(weight.shape[2:])
            down = torch.randn(rank, weight.shape[1], *kernel, generator=generator) * 0.01
            up = torch.randn(weight.shape[0], rank, *([1, 1] if kernel else []), generator=generator) * 0.01
            factors[name] = LoraFactors(down.to(weight.dtype), up.to(weight.dtype), 1.0)
        sliders.append(factors)
    return sliders


def _clock(device: torch.device) -> float:
    # On a shared CPU, wall time measures the neighbours; the process's CPU time measures our work.
    # On CUDA, wall time after synchronising is the honest measure.
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def _sample_once(pipe, composition, args, same_scales: bool) -> float:
    """Seconds for one gated sampling (new sign-flipped scales first unless `same_scales`)."""
    gate = None
    if composition is not None:
        gate = SliderGate(composition, DEFAULT_START_NOISE, planned_timesteps(pipe.scheduler, args.steps))
        if not same_scales:
            composition.set_scales([-s for s in composition.scales])
    start = _clock(pipe.device)
    with torch.inference_mode():
        if gate is None:
            pipe(**_call(args), num_inference_steps=args.steps)
        else:
            with gate.active():
                pipe(**_call(args), num_inference_steps=args.steps, callback_on_step_end=gate)
    return _clock(pipe.device) - start


def time_against_base(pipe, base_unet, composition, args, same_scales: bool = False) -> tuple[float, float]:
    """Fastest base and fastest gated sampling, alternated over `args.repeats` (after a warm-up).

    Alternating base and sliders makes both see the same machine state (a shared CPU drifts by
    several percent over minutes). Unless `same_scales`, every sampling gets new (sign-flipped)
    scales, so a fused composition re-fuses inside the timing: a new image with new scales, the
    worst case.
    """
    work_unet = pipe.unet
    base, ours = [], []
    for repeat in range(args.repeats + 1):
        pipe.unet = base_unet
        base_seconds = _sample_once(pipe, None, args, same_scales)
        pipe.unet = work_unet
        seconds = _sample_once(pipe, composition, args, same_scales)
        if repeat:  # the first round warms caches and kernels
            base.append(base_seconds)
            ours.append(seconds)
    return min(base), min(ours)


def time_fusing(pipe, composition) -> float:
    """Seconds to fuse the sliders at new scales (the one-off cost when a sweep column starts)."""
    composition.set_weight(0.0)
    composition.set_scales([-s for s in composition.scales])
    start = _clock(pipe.device)
    composition.set_weight(1.0)
    seconds = _clock(pipe.device) - start
    composition.set_weight(0.0)
    return seconds


def _call(args) -> dict:
    return {
        "prompt": "a photo of a house by a lake",
        "height": args.size,
        "width": args.size,
        "guidance_scale": 5.0,
        "generator": torch.Generator("cpu").manual_seed(0),
        "output_type": "latent",
    }


def run(args) -> dict:
    """Time each method at each slider count against the base model; returns the JSON report."""
    pipe = load_pipeline(args.model, args.device, args.dtype, args.arch)
    if args.size is None:
        latent = 32 if args.model is None and args.arch == "medium" else pipe.unet.config.sample_size
        args.size = latent * pipe.vae_scale_factor
    pristine = copy.deepcopy(pipe.unet)
    counts = [int(c) for c in args.counts.split(",")]
    all_sliders = random_sliders(pipe.unet, max(counts))
    keys = args.methods.split(",")
    report: dict = {key: {} for key in keys} | {"fuse_seconds": {}}
    base_times = []
    for key in keys:
        method, same_scales = METHODS[key]
        for count in counts:
            # Each run starts from an untouched UNet: deleted peft adapters leave wrappers behind.
            pipe.unet = copy.deepcopy(pristine)
            scales = [(-1.0) ** i for i in range(count)]
            with compose_sliders(pipe.unet, all_sliders[:count], scales, method=method) as composition:
                base, seconds = time_against_base(pipe, pristine, composition, args, same_scales)
                if key == "ours":
                    report["fuse_seconds"][str(count)] = round(time_fusing(pipe, composition), 4)
            base_times.append(base)
            report[key][str(count)] = round(seconds / base, 3)
            line = f"{key} {count:>2} sliders: {seconds:.3f} s, base {base:.3f} s ({seconds / base:.3f}x)"
            print(line, file=sys.stderr)
    pipe.unet = pristine
    report.update(
        base_seconds={"min": round(min(base_times), 4), "max": round(max(base_times), 4)},
        clock="wall" if pipe.device.type == "cuda" else "process CPU time",
        model=args.model or ARCH_NAMES[args.arch],
        unet_parameters=sum(p.numel() for p in pristine.parameters()),
        steps=args.steps,
        size=args.size,
        repeats=args.repeats,
        device=device_name(pipe.device),
        dtype=str(pipe.unet.dtype).replace("torch.", ""),
        torch_threads=torch.get_num_threads(),
    )
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print a table (stderr) and the JSON line (stdout)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="an SDXL model (default: the medium benchmark UNet)")
    parser.add_argument(
        "--arch", choices=list(ARCH_NAMES), default="medium", help="built model when no --model"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="image side in pixels (default: 32x32 latents; --model: native)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--counts", default=COUNTS, help=f"slider counts ({COUNTS})")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"from {', '.join(METHODS)}")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line last")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.methods.split(",")) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    report = run(args)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
