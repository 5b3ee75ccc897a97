"""What a library build makes of each candidate: its settings, and one GAN -> slider plan per candidate.

A candidate is one entry of `candidates.json` (`stylegan_bridge.candidates.CandidateEntry`, written by
`concept-transfer discover`): a style channel (`layer`, `channel`) or a w direction (`direction_file`,
`direction_index`), the edit size `delta` it was judged at, and its scores. Its slider lives in
`<lib>/<candidate name>/`, made by the same stages as `concept-transfer transfer` (`transfer.recipe`):
corpus/, slider.safetensors, sweep/. Torch-free at import (the command line's help reads the defaults).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sliders.config import TrainSettings

if TYPE_CHECKING:
    from sliders.visual_slider import VisualSliderConfig
    from stylegan_bridge.candidates import CandidateEntry
    from stylegan_bridge.mining import MiningConfig
    from transfer.recipe import TransferPlan

# A candidate's name names its folder: no separators, no leading dot (`L3_72_64.c0`, `pca3`).
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")


def check_names(candidates: Sequence[CandidateEntry]) -> None:
    """Every candidate name must be usable as a folder name, and unique (ValueError naming it)."""
    seen = set()
    for candidate in candidates:
        if not SAFE_NAME.match(candidate.name):
            raise ValueError(f"candidate {candidate.name!r}: a name must be letters, digits and _ . + - only")
        if candidate.name in seen:
            raise ValueError(f"candidate {candidate.name!r}: two candidates have this name")
        seen.add(candidate.name)


def edit_provenance(candidate: CandidateEntry) -> dict[str, Any]:
    """What the candidate's edit is, JSON-ready (the index's provenance): layer/channel or direction."""
    if candidate.kind == "channel":
        return {"kind": candidate.kind, "layer": candidate.layer, "channel": candidate.channel}
    return {"kind": candidate.kind, "direction_file": Path(candidate.direction_file).name,
            "direction_index": candidate.direction_index}  # fmt: skip


@dataclass(frozen=True)
class LibrarySettings:
    """How every slider of a library is made; the same for all of them (recorded in `build.json`).

    Pairs: `pairs` seeds, each at `levels` of the candidate's delta times `delta_scale` (symmetric: before
    at -delta, after at +delta). Training: `steps` at `lr`, `batch` pairs per step, `together` sliders
    per training loop (1: one at a time). Previews: `prompts` x `preview_seeds` at the user scales
    `preview_scales` of the calibrated slider; calibration measures `prompts` x `calibration_seeds` at the
    raw weights `calibration_scales`.
    """

    gan: str
    model: str
    pairs: int = 32
    delta_scale: float = 0.5
    levels: tuple[float, ...] = (1.0, 2.0)
    symmetric: bool = True
    psi: float = 0.7
    resolution: int | None = None
    stats_samples: int = 10_000
    steps: int = 200
    lr: float = 1e-3
    rank: int = 4
    alpha: float = 1.0
    batch: int = 8
    together: int = 1
    checkpoint_every: int = 0
    seed: int = 0
    prompts: tuple[str, ...] | None = None  # None: four prompts that are not faces (transfer.recipe's)
    preview_scales: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    preview_seeds: tuple[int, ...] = (0, 1)
    sample_steps: int = 30
    guidance: float = 5.0
    size: int | None = None
    calibration_seeds: tuple[int, ...] = (0, 1, 2, 3)  # as `slider calibrate`: effects vary 20-30% by seed
    calibration_scales: tuple[float, ...] | None = None  # raw weights measured (None: calibrate's default)
    device: str | None = None
    threads: int | None = None  # CPU threads (None: `transfer.cpu_threads`' choice for each model)
    gan_aliases: dict[str, Path] = field(default_factory=dict)
    model_aliases: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.prompts is None:
            from transfer.recipe import DEFAULT_PROMPTS

            object.__setattr__(self, "prompts", DEFAULT_PROMPTS)
        if self.together < 1:
            raise ValueError(f"--together must be >= 1, got {self.together}")
        if not (self.delta_scale > 0 and math.isfinite(self.delta_scale)):
            raise ValueError(f"--delta-scale must be a finite number > 0, got {self.delta_scale}")
        if len(self.calibration_seeds) * len(self.prompts) < 2:
            raise ValueError(
                "--prompts/--calibration-seeds: calibration needs at least two renders (prompts x seeds)"
            )
        self.mining(1.0)  # every option fails now, before any slider is made
        self.slider_config("check")

    def mining(self, delta: float) -> MiningConfig:
        """The mining settings of a candidate judged at `delta`."""
        from stylegan_bridge.mining import MiningConfig

        return MiningConfig(pairs=self.pairs, delta=delta * self.delta_scale, levels=self.levels, psi=self.psi,
                            seed=self.seed, resolution=self.resolution, symmetric=self.symmetric)  # fmt: skip

    def slider_config(self, concept: str) -> VisualSliderConfig:
        """The visual-slider settings (the concept is the slider's name)."""
        from sliders.visual_slider import VisualSliderConfig

        train = TrainSettings(steps=self.steps, lr=self.lr, rank=self.rank, alpha=self.alpha, seed=self.seed,
                              checkpoint_every=self.checkpoint_every)  # fmt: skip
        return VisualSliderConfig(
            concept=concept, resolution=self.resolution, batch_size=self.batch, train=train
        )

    def plan(self, candidate: CandidateEntry, root: Path) -> TransferPlan:
        """The mine -> train -> sweep plan of one candidate, in `root/<candidate name>/`."""
        from transfer.gate import GateSpec
        from transfer.recipe import TransferPlan

        edit: dict[str, Any] = (
            {"layer": candidate.layer, "channel": candidate.channel}
            if candidate.kind == "channel"
            else {"direction": candidate.direction_file, "direction_index": candidate.direction_index}
        )
        return TransferPlan(
            gan=self.gan,
            model=self.model,
            out=Path(root) / candidate.name,
            **edit,
            mining=self.mining(candidate.delta),
            stats_samples=self.stats_samples,
            slider=self.slider_config(candidate.name),
            prompts=self.prompts,
            sweep_scales=self.preview_scales,
            seeds=self.preview_seeds,
            sample_steps=self.sample_steps,
            guidance=self.guidance,
            gate=GateSpec(),
            size=self.size,
            device=self.device,
            threads=self.threads,
            gan_aliases=self.gan_aliases,
            model_aliases=self.model_aliases,
        )

    def key(self) -> dict[str, Any]:
        """The settings that decide the sliders (JSON-ready): a library is extended only with the same."""
        skip = ("gan", "model", "device", "threads", "gan_aliases", "model_aliases", "checkpoint_every")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k not in skip}
