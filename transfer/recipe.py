"""GAN → slider in one run: mine style-edit pairs, train a visual slider, sweep it over other prompts.

Each stage writes into its own sub-folder of the run folder and is skipped when its output exists and
its input did not change (new pairs re-train; a new slider or other sweep settings re-sweep), so a
stage can be re-run alone (delete its output, or name it in `redo`) or with its own command.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pair_datasets import Corpus
from sliders.checkpoint import checkpoint_path
from sliders.visual_slider import VisualSliderConfig, train_visual_slider
from stylegan_bridge.mining import (
    MiningConfig,
    MiningReport,
    channel_source,
    direction_source,
    gan_source,
    load_gan,
    mine,
)
from stylegan_bridge.style_space import style_stats
from transfer.apply import SliderSpec, load_sliders, remove_adapters
from transfer.cpu_threads import configure_threads, is_small_generator, is_small_unet
from transfer.gate import GateSpec
from transfer.sdxl import load_sdxl
from transfer.sweep import SweepSettings, run_sweep

# The paper's point: a concept learnt from a face GAN moves things that are not faces.
DEFAULT_PROMPTS = (
    "a photo of a cat sitting on a sofa",
    "a red sports car parked on a city street",
    "a mountain landscape at sunset, oil painting",
    "a portrait of a knight in armour, fantasy illustration",
)
STAGES = ("mine", "train", "sweep")


@dataclass(frozen=True)
class TransferPlan:
    """Everything the three stages need; `layer`/`channel` or `direction` names the style edit."""

    gan: str
    model: str
    out: Path
    layer: str | None = None
    channel: int | None = None
    direction: Path | None = None
    direction_index: int = 0
    mining: MiningConfig = field(default_factory=lambda: MiningConfig(pairs=64))
    stats_samples: int = 10_000
    stats_cache: Path | None = None  # where the style statistics are cached (None: the user's cache)
    slider: VisualSliderConfig = field(default_factory=VisualSliderConfig)
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    sweep_scales: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    seeds: tuple[int, ...] = (0, 1)
    sample_steps: int = 30
    guidance: float = 5.0
    gate: GateSpec = field(default_factory=GateSpec)
    size: int | None = None
    device: str | None = None
    gan_aliases: dict[str, Path] = field(default_factory=dict)
    model_aliases: dict[str, Path] = field(default_factory=dict)
    redo: tuple[str, ...] = ()
    threads: int | None = None  # CPU threads (None: `transfer.cpu_threads`' choice for each model)

    def __post_init__(self) -> None:
        if (self.direction is None) == (self.layer is None or self.channel is None):
            raise ValueError("transfer: give --layer and --channel, or --direction (not both)")
        if self.sample_steps < 1:  # checked here: SweepSettings would name apply's --steps
            raise ValueError(f"--sample-steps must be >= 1, got {self.sample_steps}")
        self.sweep_settings()  # the sweep's options fail now, not after mining and training
        if self.stats_samples < 2:
            raise ValueError(f"--stats-samples must be >= 2, got {self.stats_samples}")
        unknown = set(self.redo) - set(STAGES)
        if unknown:
            raise ValueError(
                f"--redo: unknown stage(s) {', '.join(sorted(unknown))}; stages are {', '.join(STAGES)}"
            )

    def sweep_settings(self) -> SweepSettings:
        """The validated settings of the sweep stage."""
        return SweepSettings(
            prompts=self.prompts,
            seeds=self.seeds,
            sweep_scales=self.sweep_scales,
            steps=self.sample_steps,
            guidance=self.guidance,
            width=self.size,
            height=self.size,
            gate=self.gate,
            model=self.model,
        )

    @property
    def corpus_dir(self) -> Path:
        return self.out / "corpus"

    @property
    def slider_path(self) -> Path:
        return self.out / "slider.safetensors"

    @property
    def sweep_dir(self) -> Path:
        return self.out / "sweep"


def load_pipeline(plan: TransferPlan):
    """The plan's SDXL pipeline, with the CPU threads its size wants (or the plan's)."""
    pipe = load_sdxl(plan.model, device=plan.device, aliases=plan.model_aliases)
    configure_threads(plan.threads, pipe.unet.device, is_small_unet(pipe.unet))
    return pipe


def mine_stage(plan: TransferPlan) -> MiningReport:
    """Render the before/after corpus from the GAN's style edit (resumes a partial corpus)."""
    G, path = load_gan(plan.gan, device=plan.device, aliases=plan.gan_aliases)
    configure_threads(plan.threads, next(G.parameters()).device, is_small_generator(G))

    def stats():
        return style_stats(G, num_samples=plan.stats_samples, psi=1.0, cache_dir=plan.stats_cache)

    if plan.direction is not None:
        edit, source = direction_source(G, plan.direction, plan.direction_index, stats)
    else:
        edit, source = channel_source(G, plan.layer, plan.channel, stats())
    return mine(
        G, edit, plan.corpus_dir, plan.mining, gan_source(G, path, source), name=plan.out.name or "transfer"
    )


def train_stage(plan: TransferPlan, pipe) -> Path:
    """Train the visual slider from the corpus; a checkpoint left by an interrupted run is resumed.

    A checkpoint older than the slider file belongs to a finished run: re-training (redo, or a grown
    corpus) then starts afresh instead of "resuming" a run that is already at its last step.
    """
    corpus = Corpus.open(plan.corpus_dir)
    ckpt = checkpoint_path(plan.slider_path)
    resume = ckpt.exists() and (
        not plan.slider_path.exists() or ckpt.stat().st_mtime_ns > plan.slider_path.stat().st_mtime_ns
    )
    return train_visual_slider(
        pipe, corpus, plan.slider, plan.slider_path, base_model=plan.model, resume=resume
    )


def sweep_stage(plan: TransferPlan, pipe) -> dict:
    """Sweep the slider over the prompts (rows = seeds, columns = scales), with the gate."""
    sliders = load_sliders([SliderSpec(plan.slider_path, 1.0)], pipe.unet)
    return run_sweep(pipe, sliders, plan.sweep_settings(), plan.sweep_dir)


def _needed(stage: str, output: Path, plan: TransferPlan) -> bool:
    return stage in plan.redo or not output.exists()


def run_transfer(plan: TransferPlan, say: Callable[[str], None] = print) -> dict[str, str]:
    """Run mine → train → sweep, skipping stages whose output exists; returns the output paths."""
    plan.out.mkdir(parents=True, exist_ok=True)
    manifest = plan.corpus_dir / "manifest.jsonl"
    # A stage whose input changed runs again even if its output exists (new pairs -> new slider -> new sweep).
    changed = False
    if _needed("mine", manifest, plan) or _mining_incomplete(plan):
        say(f"[1/3] mine: {plan.mining.pairs} seeds x {len(plan.mining.levels)} levels -> {plan.corpus_dir}")
        changed = mine_stage(plan).written > 0
    else:
        say(f"[1/3] mine: kept {plan.corpus_dir}")
    pipe = None
    if changed or _needed("train", plan.slider_path, plan):
        changed = True
        say(f"[2/3] train visual slider: {plan.slider.train.steps} steps -> {plan.slider_path}")
        pipe = load_pipeline(plan)
        device = pipe.unet.device
        train_stage(plan, pipe)
        remove_adapters(pipe.unet)  # the sweep composes the saved slider; the trained one must not stay on
        pipe.to(device)  # training moved the text encoders and VAE off the accelerator
    else:
        say(f"[2/3] train: kept {plan.slider_path}")
    if changed or _needed("sweep", plan.sweep_dir / "summary.json", plan) or _sweep_outdated(plan):
        say(
            f"[3/3] sweep: {len(plan.prompts)} prompts x {len(plan.seeds)} seeds x {len(plan.sweep_scales)} scales"
        )
        pipe = pipe or load_pipeline(plan)
        sweep_stage(plan, pipe)
    else:
        say(f"[3/3] sweep: kept {plan.sweep_dir}")
    return {
        "corpus": str(plan.corpus_dir),
        "contact_sheet": str(plan.corpus_dir / "contact_sheet.png"),
        "slider": str(plan.slider_path),
        "sweep": str(plan.sweep_dir),
    }


def _sweep_outdated(plan: TransferPlan) -> bool:
    """Whether the kept sweep was made with other settings (prompts, seeds, scales, ...) or stopped early."""
    try:
        old = json.loads((plan.sweep_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    settings = plan.sweep_settings()
    wanted = {
        "prompts": list(settings.prompts),
        "seeds": list(settings.seeds),
        "scales": list(settings.sweep_scales or ()),
        "steps": settings.steps,
        "guidance": settings.guidance,
        "size": [settings.width, settings.height],
    }
    gate = old.get("gate") or {}
    return (
        any(old.get(key) != value for key, value in wanted.items())
        or gate.get("start_noise") != settings.gate.start_noise
        or len(old.get("grids") or ()) != len(settings.prompts)
    )


def _mining_incomplete(plan: TransferPlan) -> bool:
    """Whether the corpus holds fewer pairs than the plan asks (a larger --pairs extends it)."""
    if not (plan.corpus_dir / "manifest.jsonl").exists():
        return True
    expected = plan.mining.pairs * len(plan.mining.levels)
    return len(Corpus.open(plan.corpus_dir).ids()) < expected
