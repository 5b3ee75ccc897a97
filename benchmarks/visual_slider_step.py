"""Benchmark one visual-slider training iteration: our trainer against the original image-pair procedure.

On the same model and corpus in one run (one pair per iteration, the same slider adapter):
- `original`: the original `train_lora-scale-xl.py` step (sliders_repo.md §2b): read both images from disk
  and resize, VAE-encode each in fp32 (`latent_dist.sample`), shared noise and timestep, two frozen
  predictions with the slider off (computed and thrown away, as the original did), then +s on the after
  latent and -s on the before latent as two CFG-doubled passes with a backward each, one optimizer step;
- `ours`: `VisualSliderTask` with latents from the corpus cache (encoded once, not timed per step), one
  batched pass at per-sample scales [-s, +s], one backward; VAE and text encoders off the accelerator;
- `ours_separate`: the same with two passes (what batching gives).
It prints seconds per iteration (median of interleaved rounds), peak memory (CUDA: max_memory_allocated,
resident weights included; CPU: RSS growth, only indicative since freed memory is reused between
variants) and the ratios.

    python benchmarks/visual_slider_step.py                   # the tiny fixture at 64 px, CPU
    python benchmarks/visual_slider_step.py --model stabilityai/stable-diffusion-xl-base-1.0
    python benchmarks/visual_slider_step.py --arch sdxl       # real SDXL shapes, random weights, GPU only
    ... --json                                                # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from text_slider_step import PeakMemory, device_name, load_model  # noqa: E402  (same folder)

from pair_datasets import Corpus, CorpusInfo  # noqa: E402
from pair_datasets.latent_cache import image_to_tensor  # noqa: E402
from sliders.config import TrainSettings  # noqa: E402
from sliders.lora import adapter_disabled, slider_scale  # noqa: E402
from sliders.text_slider import free_text_encoders  # noqa: E402
from sliders.trainer import prepare_slider, seed_everything, train_step  # noqa: E402
from sliders.visual_slider import VisualSliderConfig, VisualSliderTask  # noqa: E402


def make_corpus(root: Path, pairs: int, resolution: int, seed: int = 0) -> Corpus:
    """A corpus of random before/after PNG pairs at `resolution` (after: a bright square added)."""
    corpus = Corpus.create(root, CorpusInfo(name="bench", resolution=resolution))
    rng = np.random.default_rng(seed)
    for i in range(pairs):
        before = rng.integers(0, 160, (resolution, resolution, 3)).astype(np.uint8)
        after = before.copy()
        after[resolution // 4 : resolution // 2, resolution // 4 : resolution // 2] = 250
        corpus.append(f"p{i}", Image.fromarray(before), Image.fromarray(after))
    return Corpus.open(root)


class OriginalStep:
    """The original procedure's iteration as a `SliderTask`-shaped object (see the module docstring)."""

    def __init__(self, task: VisualSliderTask, pipe):
        self.unet, self.task, self.vae = task.unet, task, pipe.vae
        self.paths = [
            (task.corpus.path_of(r.before), task.corpus.path_of(r.after)) for r in task.corpus.records()
        ]
        # [uncond, cond]: the original's doubled batch; its image-slider prompts are all "".
        self.cond = task.prompts.batch(["", ""])

    def encode(self, path: Path, generator: torch.Generator) -> torch.Tensor:
        pixels = image_to_tensor(path, self.task.resolution)[None].to(self.vae.device, torch.float32)
        with torch.no_grad():
            latent = self.vae.encode(pixels).latent_dist.sample(generator)
        return latent * self.vae.config.scaling_factor

    def doubled(self, model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # predict_noise_xl with guidance 1: [uncond, cond] in one batch, uncond + 1 * (cond - uncond).
        uncond, cond = self.task.predict(model, torch.cat([x, x]), t.repeat(2), self.cond).chunk(2)
        return uncond + (cond - uncond)

    def compute_loss(self, model, generator: torch.Generator, backward) -> torch.Tensor:
        index = int(torch.randint(len(self.paths), (1,), generator=generator))
        level = float(self.task.levels[index])
        before, after = (self.encode(p, generator).to(self.task.device) for p in self.paths[index])
        noise = torch.randn(before.shape, generator=generator).to(self.task.device)
        t = torch.randint(0, 1000, (1,), generator=generator).to(self.task.device)
        x_a, x_b = self.task.noisy(before, noise, t), self.task.noisy(after, noise, t)
        with torch.no_grad(), adapter_disabled(self.unet):
            # The original's frozen predictions: computed, never used.
            _unused = (self.doubled(self.unet, x_b, t), self.doubled(self.unet, x_a, t))
        total = torch.zeros((), device=noise.device)
        for x, scale in ((x_b, level), (x_a, -level)):
            with slider_scale(self.unet, scale):
                loss = torch.nn.functional.mse_loss(self.doubled(model, x, t).float(), noise)
                backward(loss)
            total += loss.detach()
        return total


class Variant:
    """One way of training: a step object with its own optimizer and random stream over the shared slider."""

    def __init__(self, name: str, step, unet, lr: float, seed: int):
        self.name, self.step, self.unet = name, step, unet
        self.generator = seed_everything(seed)
        self.optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=lr)
        self.seconds: list[float] = []  # per-iteration time of each timed round

    def run(self, iters: int) -> float:
        """Run `iters` optimizer steps; returns seconds per step (CUDA synchronised)."""
        start = time.perf_counter()
        for _ in range(iters):
            train_step(self.step, self.unet, self.optimizer, self.generator, lambda loss: loss.backward())
        if self.unet.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / max(1, iters)  # warm-up may be 0

    def peak_memory(self, iters: int) -> float:
        """Peak memory (MiB) over `iters` steps."""
        with PeakMemory(self.unet.device) as memory:
            self.run(iters)
        return round(memory.mib, 1)


def bench(variants: dict[str, Variant], pipe, iters: int, warmup: int, rounds: int) -> list[dict]:
    """Memory per variant in its own phase, then time in interleaved rounds (median), so a machine whose
    load changes during the run slows every variant alike."""
    per_round = max(1, iters // rounds)
    for variant in variants.values():
        variant.run(warmup)
    # Ours first, with the VAE and text encoders moved off as train_visual_slider does: on the CPU, where
    # the figure is RSS growth, this makes ours an upper bound and the original a lower bound.
    free_text_encoders(pipe)
    memory = {name: v.peak_memory(per_round) for name, v in variants.items() if name != "original"}
    for module in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.to(pipe.unet.device)  # the original keeps them and encodes every iteration
    memory["original"] = variants["original"].peak_memory(per_round)
    for _ in range(rounds):
        for variant in variants.values():
            variant.seconds.append(variant.run(per_round))
    return [
        {"variant": name, "s_per_iter": statistics.median(v.seconds), "peak_memory_mib": memory[name]}
        for name, v in variants.items()
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the three variants and print a table (and with --json, one JSON object as the last line)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="SDXL model (default: the tiny fixture)")
    parser.add_argument("--arch", choices=["tiny", "sdxl"], default="tiny")
    parser.add_argument("--device", help="default: the best available")
    parser.add_argument("--resolution", type=int, help="px (default: 64 tiny, 512 otherwise)")
    parser.add_argument("--pairs", type=int, default=8, help="pairs in the synthetic corpus (8)")
    parser.add_argument("--iters", type=int, default=30, help="timed steps per variant, over all rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="default on with --arch sdxl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="visual_bench_") as scratch:
        return run(args, Path(scratch))


def run(args: argparse.Namespace, scratch: Path) -> int:
    """Build the model and corpus under `scratch`, run the variants, print the figures."""
    pipe, name = load_model(args, scratch)
    tiny = args.model is None and args.arch == "tiny"
    resolution = args.resolution or (64 if tiny else 512)
    settings = TrainSettings(steps=1, seed=args.seed,
                             gradient_checkpointing=args.gradient_checkpointing or args.arch == "sdxl")  # fmt: skip
    corpus = make_corpus(scratch / "corpus", args.pairs, resolution)

    start = time.perf_counter()
    ours = VisualSliderTask(pipe, corpus, VisualSliderConfig(resolution=resolution, train=settings))
    cache_s = time.perf_counter() - start
    separate = VisualSliderTask(pipe, corpus, VisualSliderConfig(resolution=resolution, separate_passes=True))
    original = OriginalStep(ours, pipe)
    prepare_slider(pipe.unet, settings)

    steps = {"original": original, "ours": ours, "ours_separate": separate}
    variants = {k: Variant(k, step, pipe.unet, settings.lr, args.seed) for k, step in steps.items()}
    results = bench(variants, pipe, args.iters, args.warmup, args.rounds)
    by_name = {r["variant"]: r for r in results}
    for r in results:
        print(f"{name} {resolution}px {r['variant']:>14}: {r['s_per_iter']:.4f} s/iter, "
              f"peak {r['peak_memory_mib']:.1f} MiB", flush=True)  # fmt: skip
    speedup = by_name["original"]["s_per_iter"] / by_name["ours"]["s_per_iter"]
    batching = by_name["ours_separate"]["s_per_iter"] / by_name["ours"]["s_per_iter"]
    print(f"ours is {speedup:.2f}x faster per iteration than the original procedure; "
          f"one batched pass is {batching:.2f}x faster than two; latent cache built once in {cache_s:.2f} s "
          f"({ours.num_encoded} images)")  # fmt: skip
    summary = {
        "model": name, "device": device_name(pipe.unet.device), "dtype": str(pipe.unet.dtype).replace("torch.", ""),
        "resolution": resolution, "iters": args.iters, "rounds": args.rounds, "gradient_checkpointing": settings.gradient_checkpointing,
        "results": results, "speedup_vs_original": round(speedup, 2), "batched_vs_separate": round(batching, 2),
        "cache_build_s": round(cache_s, 3), "images_encoded_once": ours.num_encoded,
    }  # fmt: skip
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
