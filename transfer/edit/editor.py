"""Slider edits of one photo: invert it once per (prompt, seed), then render any scales behind the gate.

The inversion runs with the sliders off; each edit is `transfer.apply.render` on the re-generating
pipeline (`transfer.edit.regenerate`) from the inverted `x_T`, so the gate, the composition and the
records are those of every other `apply` image. Inversions are kept in memory for the editor's life
and, with a cache folder, on disk (`transfer.edit.cache`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from transfer.apply import RenderRequest, render
from transfer.compose import Composition
from transfer.edit.cache import InversionCache, model_fingerprint
from transfer.edit.inversion import Inversion, InversionSettings, invert
from transfer.edit.photo import Photo, load_photo
from transfer.edit.regenerate import edit_pipeline
from transfer.gate import GateSpec

INVERSION_CACHE = "inversion-cache"  # the default cache folder, inside the output folder


class PhotoEditor:
    """One photo, one inversion method, one model; `render(composition, request)` edits it."""

    def __init__(
        self,
        pipe: Any,
        photo: Photo,
        method: str,
        cache: InversionCache | None = None,
        model: str | None = None,
    ) -> None:
        self.pipe, self.photo, self.method, self.cache = pipe, photo, method, cache
        # The fingerprint is taken now, before any slider is composed onto the UNet (or given: one
        # taken earlier by a caller that keeps sliders composed between images, as the studio).
        self.model = model or (model_fingerprint(pipe) if cache is not None else None)
        self.inversions_run = 0  # how many inversions were computed (not read from memory or disk)
        self._ready: dict[InversionSettings, tuple[Any, Inversion, dict[str, Any]]] = {}

    def settings(self, request: RenderRequest) -> InversionSettings:
        """What the inversion for `request` depends on."""
        size = self.photo.size
        if (request.width or size, request.height or size) != (size, size):
            raise ValueError(
                f"--size: the edited photo is {size}x{size}, the request {request.width}x{request.height}"
            )
        seed = request.seed if self.method == "edit-friendly" else 0  # DDIM inversion draws no noise
        return InversionSettings(self.method, request.prompt, request.negative_prompt, request.steps,
                                 request.guidance, seed)  # fmt: skip

    def key_fields(self, settings: InversionSettings) -> dict[str, Any]:
        """Everything an inversion depends on: the photo's bytes and size, the model, the settings."""
        return {
            "photo_sha256": self.photo.sha256,
            "size": self.photo.size,
            "model": self.model,
            "dtype": str(self.pipe.unet.dtype),
            **settings.describe(),
        }

    def prepare(self, request: RenderRequest) -> tuple[Any, Inversion, dict[str, Any]]:
        """The re-generating pipeline, the inversion and its record (cache hit or miss) for `request`."""
        settings = self.settings(request)
        if settings in self._ready:
            return self._ready[settings]
        fields = self.key_fields(settings)
        device = self.pipe._execution_device
        inversion = self.cache.load(fields, device) if self.cache is not None else None
        record: dict[str, Any] = {**settings.describe(), "cache": "off" if self.cache is None else "hit"}
        if inversion is None:
            with torch.no_grad():
                inversion = invert(self.pipe, [self.photo.image], settings)
            self.inversions_run += 1
            if self.cache is not None:
                self.cache.save(fields, inversion)
                record["cache"] = "miss"
        if self.cache is not None:
            record["file"] = str(self.cache.path(fields))
        self._ready[settings] = (edit_pipeline(self.pipe, inversion), inversion, record)
        return self._ready[settings]

    def render(
        self,
        composition: Composition,
        request: RenderRequest,
        default_gate: GateSpec | None = None,
        **options: Any,
    ) -> tuple[Image.Image, dict[str, Any], dict[str, Any]]:
        """The edited photo at `request.scales`, the gate's record and the inversion's record.

        `options` go to `transfer.apply.render` (the studio's cached `conditioning` and `on_step`).
        """
        if composition.weight != 0.0:
            raise RuntimeError("PhotoEditor: the sliders must be off (gate weight 0) between images")
        pipeline, inversion, record = self.prepare(request)
        image, gate = render(
            pipeline, composition, request, default_gate, latents=inversion.latents, **options
        )
        return image, gate, record


def open_editor(
    pipe: Any, path: Path, method: str, size: int | None, cache: Path | None, model: str | None = None
) -> PhotoEditor:
    """An editor of the photo at `path`, fitted to `size` x `size` (default: the model's native size)."""
    photo = load_photo(path, size or pipe.default_sample_size * pipe.vae_scale_factor)
    return PhotoEditor(pipe, photo, method, None if cache is None else InversionCache(cache), model)
