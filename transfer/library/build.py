"""`library build`: every candidate -> mine pairs -> train a visual slider -> calibrate -> preview sweep.

The build reads top to bottom in `build_library`: record how the library is built (`build.json`), then
each work unit (one slider, or `together` sliders trained in one loop) of this process, then the index.

- Resumable: a slider whose `entry.json` says done is never touched again. An unfinished one continues
  stage by stage: mining keeps the pairs it has, a training checkpoint (left by Ctrl-C / SIGTERM, or
  `checkpoint_every`) is resumed, a slider file that holds a calibration is not measured again.
- A slider that fails (any error in any of its stages) is recorded with its stage and reason; the others
  go on, and the next build tries it again. An interrupt (Ctrl-C, SIGTERM) stops the whole build.
- Sharded (`transfer.library.sharding`): unit i belongs to process i mod world; process 0 writes the
  index once all processes have finished. Alone, the index is rewritten after every unit.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pair_datasets import Corpus
from sliders.checkpoint import checkpoint_path
from sliders.text_slider import free_text_encoders
from sliders.visual_slider import VisualSliderTask
from stylegan_bridge.candidates import CandidateEntry
from transfer.library.index import (
    BUILD_FILE,
    ENTRY_FILE,
    FORMAT,
    assemble_index,
    check_build,
    is_done,
    write_index,
    write_json,
)
from transfer.library.plan import LibrarySettings, check_names, edit_provenance
from transfer.library.sharding import Shard
from transfer.library.together import VisualSliderGroup, train_slider_group
from transfer.recipe import TransferPlan, mine_stage, sweep_stage

Say = Callable[[str], None]


def build_record(settings: LibrarySettings, generator: Mapping[str, Any]) -> dict[str, Any]:
    """What `build.json` (and the head of `index.json`) says: format, generator, model, settings."""
    return {
        "format": FORMAT,
        "generator": dict(generator),
        "model": settings.model,
        "settings": settings.key(),
    }


def pending_record(candidate: CandidateEntry, plan: TransferPlan, build: Mapping[str, Any]) -> dict[str, Any]:
    """A candidate's index record before its slider is finished."""
    mining = plan.mining
    return {
        "id": candidate.name,
        "name": candidate.name,
        "rank": candidate.rank,
        "status": "pending",
        "reason": None,
        "file": f"{candidate.name}/{plan.slider_path.name}",
        "provenance": {
            "generator_sha256": build["generator"]["sha256"],
            **edit_provenance(candidate),
            "discovery_delta": candidate.delta,
            "delta": mining.delta,
            "levels": list(mining.levels),
            "symmetric": mining.symmetric,
            "psi": mining.psi,
            "seeds": {"first": mining.seed, "count": mining.pairs},
        },
        "scores": dict(candidate.scores),
        "calibration": None,
        "previews": [],
        "pairs_sheet": f"{candidate.name}/corpus/contact_sheet.png",
        "training": {"steps": plan.slider.train.steps, "together_with": []},
        "seconds": {},
    }


def work_units(candidates: Sequence[CandidateEntry], together: int) -> list[list[CandidateEntry]]:
    """Candidates in rank order, cut into consecutive groups of `together` (one training loop each)."""
    ordered = sorted(candidates, key=lambda c: c.rank)
    return [ordered[i : i + together] for i in range(0, len(ordered), together)]


@dataclass
class SliderWork:
    """One unfinished slider of this build: its candidate, its plan and its record (entry.json to be)."""

    candidate: CandidateEntry
    plan: TransferPlan
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return self.candidate.name

    def fail(self, stage: str, error: BaseException, say: Say) -> None:
        """Record the failure (stage, error type, first line of the message) in entry.json."""
        reason = f"{stage}: {type(error).__name__}: {error}".splitlines()[0]
        self.record.update(status="failed", reason=reason)
        write_json(self.plan.out / ENTRY_FILE, self.record)
        say(f"  {self.name}: FAILED at {reason}")

    def attempt(self, stage: str, work: Callable[[], Any], say: Say) -> bool:
        """Run one stage; its time goes into the record, a failure into entry.json (never raised)."""
        started = time.perf_counter()
        try:
            work()
        except Exception as error:  # noqa: BLE001 - one slider's failure must not stop the library
            self.fail(stage, error, say)
            return False
        self.record["seconds"][stage] = round(time.perf_counter() - started, 2)
        return True

    def finish(self, say: Say) -> None:
        """Mark the slider done: its entry.json is what makes a later build skip it."""
        self.record.update(status="done", reason=None)
        write_json(self.plan.out / ENTRY_FILE, self.record)
        say(f"  {self.name}: done")


class PipelineHolder:
    """The SDXL pipeline of this process, loaded on first use and shared by all its sliders."""

    def __init__(self, settings: LibrarySettings, device: str | None):
        self.settings, self.device, self._pipe = settings, device, None

    def get(self):
        """The pipeline (loads it the first time)."""
        if self._pipe is None:
            from transfer.cpu_threads import configure_threads, is_small_unet
            from transfer.sdxl import load_sdxl

            self._pipe = load_sdxl(
                self.settings.model, device=self.device, aliases=self.settings.model_aliases
            )
            configure_threads(self.settings.threads, self._pipe.unet.device, is_small_unet(self._pipe.unet))
            self.home = self._pipe.unet.device
        return self._pipe

    def clean(self) -> None:
        """After training: no adapter left on the UNet, every part back on its device."""
        from transfer.apply import remove_adapters

        remove_adapters(self._pipe.unet)
        self._pipe.to(self.home)  # training moved the text encoders and the VAE off the accelerator


def loop_checkpoint(plans: Sequence[TransferPlan]) -> Path:
    """The `checkpoint_for` path of a training loop: the slider's own for one, one per group otherwise."""
    if len(plans) == 1:
        return plans[0].slider_path
    digest = hashlib.sha256("\n".join(p.out.name for p in plans).encode()).hexdigest()[:12]
    return plans[0].out / f"together-{digest}.safetensors"


def needs_training(plans: Sequence[TransferPlan], plan: TransferPlan) -> bool:
    """Whether `plan`'s slider is still to train: no file yet, or its loop left a checkpoint."""
    return not plan.slider_path.exists() or checkpoint_path(loop_checkpoint(plans)).exists()


def train_together(holder: PipelineHolder, plans: Sequence[TransferPlan]) -> None:
    """Train the sliders of `plans` in one loop, resuming the loop's checkpoint if it left one.

    This process trains alone (no gradient averaging) even when the build is sharded.
    """
    pipe = holder.get()
    members = {
        f"slider_{i}": VisualSliderTask(pipe, Corpus.open(p.corpus_dir), p.slider)
        for i, p in enumerate(plans)
    }
    free_text_encoders(pipe)  # latents and prompts are cached
    outs = {name: plan.slider_path for name, plan in zip(members, plans)}
    ckpt = checkpoint_path(loop_checkpoint(plans))
    try:
        train_slider_group(VisualSliderGroup(members), plans[0].slider.train, outs, loop_checkpoint(plans),
                           base_model=plans[0].model, resume=ckpt.exists(), data_parallel=False)  # fmt: skip
    finally:
        holder.clean()
    ckpt.unlink(missing_ok=True)  # finished: a later run must not resume it


def train_stage_of(holder: PipelineHolder, works: Sequence[SliderWork], say: Say) -> list[SliderWork]:
    """Train `works` in one loop; returns them, or none when the loop failed (each records the failure)."""
    names = [w.name for w in works]
    say(
        f"  train {', '.join(names)}: {works[0].plan.slider.train.steps} steps"
        + (" in one loop" if len(works) > 1 else "")
    )
    holder.get()  # loading the model is not the sliders' training time
    started = time.perf_counter()
    try:
        train_together(holder, [w.plan for w in works])
    except Exception as error:  # noqa: BLE001 - the loop's failure is each of its sliders'
        for work in works:
            work.fail("train", error, say)
        return []
    seconds = round((time.perf_counter() - started) / len(works), 2)  # the loop's time, shared
    for work in works:
        work.record["seconds"]["train"] = seconds
        work.record["training"]["together_with"] = [n for n in names if n != work.name]
    return list(works)


def calibrate(holder: PipelineHolder, work: SliderWork, settings: LibrarySettings) -> None:
    """Calibrate the slider (unless its file already holds a calibration) and record the calibration."""
    from sliders.slider_file import load_slider
    from transfer.calibrate import CalibrationSettings, calibrate_slider

    calibration = load_slider(work.plan.slider_path).calibration
    if calibration is None:
        scales = {"raw_scales": settings.calibration_scales} if settings.calibration_scales else {}
        measure = CalibrationSettings(prompts=settings.prompts, seeds=settings.calibration_seeds,
                                      steps=settings.sample_steps, guidance=settings.guidance,
                                      width=settings.size, height=settings.size, **scales)  # fmt: skip
        calibration = calibrate_slider(holder.get(), work.plan.slider_path, measure, say=lambda _: None,
                                       model=settings.model)  # fmt: skip
    work.record["calibration"] = {
        "user_range": list(calibration.user_range),
        "raw_range": list(calibration.raw_range),
        "raw_at_1": calibration.to_raw(1.0),
        "raw_at_minus_1": calibration.to_raw(-1.0),
        "unit_effect": calibration.unit_effect,
        "distance": calibration.distance,
    }


def preview(holder: PipelineHolder, work: SliderWork, root: Path) -> None:
    """The preview sweep at the library's user scales (calibrated); its grids become the record's previews."""
    summary = sweep_stage(work.plan, holder.get())
    work.record["previews"] = [
        (work.plan.sweep_dir / grid).relative_to(root).as_posix() for grid in summary["grids"]
    ]


def build_unit(holder: PipelineHolder, unit: Sequence[CandidateEntry], settings: LibrarySettings, root: Path,
               build: Mapping[str, Any], say: Say) -> None:  # fmt: skip
    """Finish every slider of one work unit that is not done yet (see the module docstring)."""
    works = []
    for candidate in unit:
        if is_done(root / candidate.name):
            say(f"[{candidate.rank}] {candidate.name}: kept (done)")
            continue
        plan = settings.plan(candidate, root)
        works.append(SliderWork(candidate, plan, pending_record(candidate, plan, build)))
    plans = [w.plan for w in works]
    for work in list(works):
        say(
            f"[{work.candidate.rank}] {work.name}: pairs ({settings.pairs} seeds x {len(settings.levels)} levels)"
        )
        if not work.attempt("mine", lambda p=work.plan: p.slider_path.exists() or mine_stage(p), say):
            works.remove(work)
    to_train = [w for w in works if needs_training(plans, w.plan)]
    if to_train:
        trained = train_stage_of(holder, to_train, say)
        works = [w for w in works if w not in to_train or w in trained]
    for work in works:
        say(f"  {work.name}: calibrate and preview")
        if work.attempt("calibrate", lambda w=work: calibrate(holder, w, settings), say) and work.attempt(
            "preview", lambda w=work: preview(holder, w, root), say
        ):
            work.finish(say)


def build_library(settings: LibrarySettings, candidates: Sequence[CandidateEntry], root: Path,
                  generator: Mapping[str, Any], shard: Shard | None = None, say: Say = print) -> dict[str, Any] | None:  # fmt: skip
    """Build this process's share of the library in `root`; the main process returns the written index."""
    root, shard = Path(root), shard or Shard()
    check_names(candidates)
    root.mkdir(parents=True, exist_ok=True)
    build = build_record(settings, generator)
    check_build(root, build)
    shard.barrier()  # every process checked build.json before the main one (re)writes it
    if shard.is_main:
        write_json(root / BUILD_FILE, build)
    plans = {c.name: settings.plan(c, root) for c in candidates}
    pending = [pending_record(c, plans[c.name], build) for c in sorted(candidates, key=lambda c: c.rank)]
    holder = PipelineHolder(settings, shard.device(settings.device))
    for i, unit in enumerate(work_units(candidates, settings.together)):
        if shard.owns(i):
            build_unit(holder, unit, settings, root, build, say)
            if shard.world == 1:
                write_index(root, assemble_index(root, build, pending))
    shard.barrier()  # the index waits for every process's sliders
    if not shard.is_main:
        return None
    index = assemble_index(root, build, pending)
    write_index(root, index)
    return index
