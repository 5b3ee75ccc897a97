"""The studio's engine: one loaded model shared by every tab, used by one job at a time.

What makes moving a slider cheap: the pipeline is loaded once; each slider file is read and checked
against the UNet once (cached by path, size and modification time); prompt embeddings are cached by
(prompt, negative prompt); the composition of the switched-on sliders is kept on the UNet and rebuilt
only when that set changes. A new scale costs one `Composition.set_scales` (the fused weights are
recomputed once, at the gate), so a changed slider reloads nothing. Scales are the user's: a calibrated
slider maps them to raw weights (`LoadedSlider.raw_scale`), as `apply` does.

Jobs run one at a time under a lock (the page's queue feeds them in order); the tab that started the
running job can cancel it: the step callback raises `Cancelled`, and the gate still switches the sliders
off, leaving the base model as it was.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from transfer.apply import (
    LoadedSlider,
    RenderRequest,
    SliderSpec,
    img2img_pipeline,
    load_image,
    load_sliders,
    render,
)
from transfer.compose import Composition, compose_sliders
from transfer.edit.cache import model_fingerprint
from transfer.edit.editor import INVERSION_CACHE, PhotoEditor, open_editor
from transfer.gate import default_gate
from transfer.studio.cards import SliderCard, card_of
from transfer.studio.command import apply_command
from transfer.studio.job import Job
from transfer.studio.results import Result, image_record, save_grid, save_image

EMBEDDING_CACHE = 64
Progress = Callable[[float, str], None]


class Cancelled(Exception):
    """The user cancelled the running job."""


class StudioEngine:
    """The loaded pipeline, the caches and the lock (see the module docstring)."""

    def __init__(self, pipe: Any, model: str, out_dir: Path, method: str = "fused"):
        self.pipe = pipe
        self.model = model
        self.out_dir = Path(out_dir)
        self.method = method
        self._edit_pipe = None
        self._editors: dict[tuple, PhotoEditor] = {}  # the last picture edited by inversion
        self._fingerprint: str | None = None  # the model's, for the inversion cache
        self._lock = threading.Lock()
        self._sliders: dict[tuple, LoadedSlider] = {}
        self._embeddings: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self._composition: Composition | None = None
        self._composed: tuple[Path, ...] = ()
        self._running: tuple[str, threading.Event] | None = None
        self._running_lock = threading.Lock()
        self.stats = {"slider_loads": 0, "prompt_encodes": 0, "compositions": 0}

    def native_size(self) -> int:
        """The pipeline's default image side in pixels."""
        return int(self.pipe.default_sample_size * self.pipe.vae_scale_factor)

    def slider(self, path: Path) -> LoadedSlider:
        """The slider file at `path`, read and checked against the UNet once (errors name the file)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"slider {path}: no such file")
        status = path.stat()
        key = (path, status.st_size, status.st_mtime_ns)
        if key not in self._sliders:
            loaded = load_sliders([SliderSpec(path)], self.pipe.unet)[0]
            card_of(loaded)  # a malformed header fails now, not at the first generation
            self._sliders[key] = loaded
            self.stats["slider_loads"] += 1
        return self._sliders[key]

    def card(self, path: Path) -> SliderCard:
        """What the page shows of the slider at `path`."""
        return card_of(self.slider(path))

    def conditioning(self, prompt: str, negative_prompt: str | None) -> dict[str, torch.Tensor]:
        """The pipeline's prompt embeddings for (prompt, negative prompt), encoded once."""
        key = (prompt, negative_prompt)
        if key in self._embeddings:
            self._embeddings.move_to_end(key)
            return self._embeddings[key]
        with torch.no_grad():
            embeds = self.pipe.encode_prompt(
                prompt=prompt,
                device=self.pipe._execution_device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=True,
                negative_prompt=negative_prompt,
            )
        names = (
            "prompt_embeds",
            "negative_prompt_embeds",
            "pooled_prompt_embeds",
            "negative_pooled_prompt_embeds",
        )
        self._embeddings[key] = dict(zip(names, embeds))
        self.stats["prompt_encodes"] += 1
        if len(self._embeddings) > EMBEDDING_CACHE:
            self._embeddings.popitem(last=False)
        return self._embeddings[key]

    def _composition_for(self, sliders: list[LoadedSlider]) -> Composition:
        """The composition of exactly these sliders, in this order; rebuilt only when the set changes."""
        paths = tuple(s.spec.path for s in sliders)
        if self._composition is None or paths != self._composed:
            self.close()
            names = [s.name for s in sliders]
            zeros = [0.0] * len(sliders)
            self._composition = compose_sliders(
                self.pipe.unet, [s.factors for s in sliders], zeros, self.method, names
            )
            self._composed = paths
            self.stats["compositions"] += 1
        return self._composition

    def close(self) -> None:
        """Take the sliders off the UNet (the base model exactly as loaded)."""
        if self._composition is not None:
            self._composition.close()
        self._composition, self._composed = None, ()

    def cancel(self, session: str) -> bool:
        """Ask the running job to stop, if it is `session`'s; returns whether one was asked."""
        with self._running_lock:
            if self._running is None or self._running[0] != session:
                return False
            self._running[1].set()
            return True

    def run(
        self, job: Job, session: str, folder: Path, number: int, progress: Progress | None = None
    ) -> Result:
        """Render `job` for `session` into `folder` (files named by `number`); one job at a time."""
        stop = threading.Event()
        with self._lock:
            with self._running_lock:
                self._running = (session, stop)
            try:
                return self._run(job, Path(folder), number, stop, progress)
            finally:
                with self._running_lock:
                    self._running = None

    def _run(
        self, job: Job, folder: Path, number: int, stop: threading.Event, progress: Progress | None
    ) -> Result:
        started = time.perf_counter()
        stem = folder / f"{number:04d}-{job.kind}"
        threads = torch.get_num_threads() if self.pipe.unet.device.type == "cpu" else None
        command = apply_command(job, self.model, str(folder / f"{number:04d}-apply"), threads)
        sliders = [self.slider(s.path) for s in job.sliders]
        gate_default, _ = default_gate([s.metadata for s in sliders])
        editor = self._editor(job) if job.invert else None
        pipe, picture = self.pipe, None
        if job.image is not None and editor is None:
            pipe, picture = self._edit_pipeline(), load_image(job.image, (job.width, job.height))
        composition = self._composition_for(sliders)
        columns = job.columns
        pictures, images, records = [], [], []
        for c, scales in enumerate(columns):
            raw = tuple(slider.raw_scale(scale) for slider, scale in zip(sliders, scales))
            options = {
                "conditioning": self.conditioning(job.prompt, job.negative_prompt),
                "on_step": self._on_step(stop, progress, c, len(columns)),
            }
            request, inversion = self._request(job, raw), None
            if editor is not None:
                image, gate, inversion = editor.render(composition, request, gate_default, **options)
            else:
                image, gate = render(pipe, composition, request, gate_default, picture, **options)
            path = stem.with_name(stem.name + (f"-c{c:02d}" if job.sweep_scales else "") + ".png")
            calibrated = [s.calibration is not None for s in sliders]
            modules = [len(s.factors) for s in sliders]
            record = image_record(job, scales, raw, calibrated, modules, gate, self.model, path.name, command)
            if inversion is not None:
                record["inversion"] = inversion
            images.append(save_image(image, path, record))
            pictures.append(image)
            records.append(record)
        shown = images[0]
        if job.sweep_scales is not None:
            shown = save_grid(job, pictures, stem.with_name(stem.name + "-grid.png"), command)
        seconds = time.perf_counter() - started
        return Result(job.kind, shown, (shown, *[p for p in images if p != shown]), command, seconds, records)

    @staticmethod
    def _request(job: Job, raw: tuple[float, ...]) -> RenderRequest:
        return RenderRequest(
            prompt=job.prompt,
            seed=job.seed,
            scales=raw,
            negative_prompt=job.negative_prompt,
            steps=job.steps,
            guidance=job.guidance,
            width=job.width,
            height=job.height,
            gate=job.gate,
            strength=job.strength,
        )

    @staticmethod
    def _on_step(stop: threading.Event, progress: Progress | None, column: int, columns: int):
        def on_step(step: int, total: int) -> None:
            if stop.is_set():
                raise Cancelled("cancelled")
            if progress is not None:
                progress((column + (step + 1) / total) / columns, f"step {step + 1}/{total}")

        return on_step

    def _editor(self, job: Job) -> PhotoEditor:
        """The editor of the job's picture (its inversions kept in memory and in OUT/inversion-cache)."""
        if self._fingerprint is None:
            self.close()  # the model exactly as loaded: no slider composed onto the UNet
            self._fingerprint = model_fingerprint(self.pipe)
        key = (job.image, job.invert, job.width)
        if key not in self._editors:
            cache = self.out_dir / INVERSION_CACHE
            self._editors = {
                key: open_editor(self.pipe, job.image, job.invert, job.width, cache, self._fingerprint)
            }
        return self._editors[key]

    def _edit_pipeline(self) -> Any:
        if self._edit_pipe is None:
            self._edit_pipe = img2img_pipeline(self.pipe)
        return self._edit_pipe
