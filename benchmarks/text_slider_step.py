"""Benchmark one text-slider training iteration: our default schedule against the original procedure.

For each schedule (default: ours, then `reference`) on the same model in one run, it measures UNet
forwards per iteration (a forward pre-hook on the UNet), seconds per iteration (CUDA: wall time; CPU:
the process's CPU time, as the machine may be shared; `--rounds N` alternates the schedules N times
and takes the median) and peak memory (CUDA:
max_memory_allocated; CPU: peak RSS above the starting RSS, from /proc after resetting the high-water
mark), and prints the speed ratio. `reference` trains +1 only (as the original); ours is bipolar.

    python benchmarks/text_slider_step.py                    # the tiny fixture model, CPU
    python benchmarks/text_slider_step.py --model stabilityai/stable-diffusion-xl-base-1.0
    python benchmarks/text_slider_step.py --arch sdxl        # real SDXL shapes, random weights, GPU only
    ... --json                                               # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sliders.config import PromptEntry, TextSliderConfig, TrainSettings  # noqa: E402
from sliders.sampling import DEFAULT_SCHEDULE, SCHEDULES  # noqa: E402
from sliders.text_slider import TextSliderTask, free_text_encoders  # noqa: E402
from sliders.trainer import prepare_slider, seed_everything, train_step  # noqa: E402

SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)  # fmt: skip
SDXL_TEXT = {
    "clip_l": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                   hidden_act="quick_gelu", projection_dim=768),
    "clip_g": dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                   hidden_act="gelu", projection_dim=1280),
}  # fmt: skip


def build_random_sdxl(device: str = "cuda", dtype: torch.dtype = torch.bfloat16):
    """A StableDiffusionXLPipeline with SDXL base's UNet/text-encoder/VAE shapes and random weights."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from toyworld.tiny_sdxl import build_char_tokenizer

    tokenizer = build_char_tokenizer()

    def text_config(name: str) -> CLIPTextConfig:
        return CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                              **SDXL_TEXT[name])  # fmt: skip

    with torch.device(device):
        parts = dict(
            unet=UNet2DConditionModel(**SDXL_UNET),
            text_encoder=CLIPTextModel(text_config("clip_l")),
            text_encoder_2=CLIPTextModelWithProjection(text_config("clip_g")),
            vae=AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                              sample_size=1024, scaling_factor=0.13025),
        )  # fmt: skip
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")  # fmt: skip
    pipe = StableDiffusionXLPipeline(
        tokenizer=tokenizer, tokenizer_2=build_char_tokenizer(), scheduler=scheduler, **parts
    )
    return pipe.to(device, dtype)


SDXL_ARCH_NAME = "sdxl-architecture (random weights, bf16 UNet)"


def random_sdxl_pipeline(device: str | None = None):
    """`build_random_sdxl` as the benchmarks use it: bf16, the VAE in fp32 (as load_sdxl), CUDA by default.

    A CPU run (`--device cpu`, small resolutions) only checks the code path: it takes minutes per step.
    """
    device = device or "cuda"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --arch sdxl needs a CUDA GPU (it builds the full SDXL in bf16); none found")
    pipe = build_random_sdxl(device, torch.bfloat16)
    pipe.vae.to(torch.float32)
    return pipe


def device_name(device: torch.device) -> str:
    """The device and, on CUDA, the GPU's name (so JSON lines from different cards are not compared)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB from /proc/self/status."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = int(value.split()[0]) if value.strip().endswith("kB") else 0
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, else peak RSS above the RSS at the start (MiB)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self.proc = os.path.exists("/proc/self/clear_refs")
            if self.proc:
                with open("/proc/self/clear_refs", "w") as refs:
                    refs.write("5")  # resets VmHWM to the current RSS
                self.start = _rss_kib()[0]
            else:
                self.start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = _rss_kib()[1] if self.proc else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.mib = max(0, peak - self.start) / 1024


def clock(device: torch.device) -> float:
    """Seconds: wall time on CUDA (after synchronising), the process's CPU time on a (shared) CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def bench_schedule(
    pipe, schedule: str, resolution: int, iters: int, warmup: int, grad_ckpt: bool, seed: int
) -> dict:
    """Seconds, UNet forwards and peak memory per iteration of one schedule on `pipe`.

    A schedule that reuses a trajectory for `reuse` draws runs whole cycles: warm-up and timed
    iterations are rounded up to multiples of `reuse`, so the timing starts with a fresh trajectory
    and counts each trajectory's sampling once, as training does over many steps.
    """
    spec = SCHEDULES[schedule]
    cycle = spec.reuse if spec.pool else 1
    iters, warmup = -(-iters // cycle) * cycle, -(-warmup // cycle) * cycle
    entry = PromptEntry(target="a person", positive="a very old person", unconditional="a very young person",
                        guidance_scale=4.0, resolution=resolution)  # fmt: skip
    settings = TrainSettings(steps=iters + warmup, seed=seed, gradient_checkpointing=grad_ckpt)
    config = TextSliderConfig(
        prompts=(entry,), schedule=schedule, bipolar=schedule != "reference", train=settings
    )
    unet = pipe.unet
    task = TextSliderTask(pipe, config)
    free_text_encoders(pipe)  # as the trainer does: prompts are cached, encoders and VAE leave the GPU
    generator = seed_everything(seed)
    params = prepare_slider(unet, settings)
    optimizer = torch.optim.AdamW(params, lr=settings.lr)
    forwards = [0]
    hook = unet.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    try:
        for _ in range(warmup):
            train_step(task, unet, optimizer, generator, lambda loss: loss.backward())
        forwards[0] = 0
        with PeakMemory(unet.device) as memory:
            start = clock(unet.device)
            for _ in range(iters):
                train_step(task, unet, optimizer, generator, lambda loss: loss.backward())
            seconds = clock(unet.device) - start
    finally:
        hook.remove()
        unet.unload_lora()  # back to the plain UNet for the next schedule
        if grad_ckpt:
            unet.disable_gradient_checkpointing()
    return {"schedule": schedule, "resolution": resolution, "iters": iters, "s_per_iter": seconds / iters,
            "unet_forwards_per_iter": forwards[0] / iters, "peak_memory_mib": memory.mib,
            "bipolar": config.bipolar}  # fmt: skip


def load_model(args, scratch: Path):
    """The pipeline to benchmark and a name for it (the tiny fixture is built under `scratch`)."""
    from transfer.sdxl import load_sdxl

    if args.arch == "sdxl":
        return random_sdxl_pipeline(args.device), SDXL_ARCH_NAME
    if args.model is None:
        from toyworld.tiny_sdxl import build_tiny_sdxl

        folder = build_tiny_sdxl(scratch / "tiny_sdxl")
        return load_sdxl(str(folder), device=args.device), "tiny fixture (toyworld.tiny_sdxl)"
    return load_sdxl(args.model, device=args.device), args.model


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (and with --json, one JSON object as the last line)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="SDXL model (default: the tiny fixture)")
    parser.add_argument("--arch", choices=["tiny", "sdxl"], default="tiny")
    parser.add_argument("--device", help="default: the best available")
    parser.add_argument("--schedules", default=f"{DEFAULT_SCHEDULE},reference")
    parser.add_argument(
        "--resolutions", help="comma-separated px (default: 32 tiny, 512 otherwise; sdxl: 512,1024)"
    )
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the schedules this often (median)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="default on with --arch sdxl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="text_bench_") as scratch:
        pipe, name = load_model(args, Path(scratch))  # weights are in memory once loaded
    default_res = "512,1024" if args.arch == "sdxl" else ("32" if args.model is None else "512")
    resolutions = [int(r) for r in (args.resolutions or default_res).split(",")]
    grad_ckpt = args.gradient_checkpointing or args.arch == "sdxl"
    results = []
    for resolution in resolutions:
        rounds: dict[str, list[dict]] = {}
        # The schedules alternate, so drifting load on a shared machine hits them alike.
        for _ in range(args.rounds):
            for schedule in args.schedules.split(","):
                rounds.setdefault(schedule, []).append(
                    bench_schedule(pipe, schedule, resolution, args.iters, args.warmup, grad_ckpt, args.seed)
                )
        for schedule, runs in rounds.items():
            result = {**runs[-1], "s_per_iter": statistics.median(r["s_per_iter"] for r in runs),
                      "s_per_iter_rounds": [round(r["s_per_iter"], 4) for r in runs]}  # fmt: skip
            results.append(result)
            print(f"{name} {resolution}px {schedule:>10}: {result['s_per_iter']:.4f} s/iter, "
                  f"{result['unet_forwards_per_iter']:.2f} UNet forwards/iter, "
                  f"peak {result['peak_memory_mib']:.1f} MiB", flush=True)  # fmt: skip
    summary = {"model": name, "device": device_name(pipe.unet.device), "dtype": str(pipe.unet.dtype).replace("torch.", ""),
               "gradient_checkpointing": grad_ckpt, "results": results, "speedup": {}}  # fmt: skip
    for resolution in resolutions:
        by_name = {r["schedule"]: r for r in results if r["resolution"] == resolution}
        if "reference" in by_name and len(by_name) > 1:
            for schedule, r in by_name.items():
                if schedule != "reference":
                    ratio = by_name["reference"]["s_per_iter"] / r["s_per_iter"]
                    summary["speedup"][f"{schedule}@{resolution}"] = round(ratio, 2)
                    print(f"{resolution}px: {schedule} is {ratio:.2f}x faster per iteration than reference")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
