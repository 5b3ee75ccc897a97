"""Sweeps: per prompt, a labelled grid (rows = seeds, columns = scales of the swept slider, others held).

Every image is also saved alone with its prompt, seed, sliders, scales and gate in the PNG text
metadata, and `summary.json` lists everything (rewritten after each prompt, so a stopped run still
describes what it made).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from tqdm import tqdm

from pair_datasets.atomic import atomic_write, atomic_write_text
from transfer.apply import LoadedSlider, RenderRequest, img2img_pipeline, load_image, render
from transfer.compose import compose_sliders
from transfer.edit.editor import INVERSION_CACHE, PhotoEditor, open_editor
from transfer.gate import GateSpec, default_gate
from transfer.sweep_settings import SweepSettings

MIN_CELL = 128  # grid cells are enlarged (nearest) to at least this many pixels so tiny renders stay visible


def save_png(image: Image.Image, path: Path, text: dict[str, str] | None = None) -> None:
    """Write a PNG atomically (temp file in the same folder, then rename), with text chunks."""
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as stream:
        image.save(stream, format="PNG", pnginfo=info)


def write_json(data: Any, path: Path) -> None:
    """Write JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def make_grid(
    cells: Sequence[Sequence[Image.Image]], row_labels: Sequence[str], col_labels: Sequence[str], title: str
) -> Image.Image:
    """A labelled grid: a title line, a header row of column labels, a label column, the images."""
    width, height = cells[0][0].size
    zoom = max(1, -(-MIN_CELL // min(width, height)))
    cell_w, cell_h = width * zoom, height * zoom
    font = _font(14)
    label_w, header_h, title_h, pad = 90, 22, 26, 4
    grid = Image.new(
        "RGB",
        (label_w + len(col_labels) * (cell_w + pad), title_h + header_h + len(row_labels) * (cell_h + pad)),
        "white",
    )
    draw = ImageDraw.Draw(grid)
    draw.text((pad, pad), title if len(title) <= 120 else title[:117] + "...", fill="black", font=font)
    for c, label in enumerate(col_labels):
        draw.text((label_w + c * (cell_w + pad) + pad, title_h + 2), label, fill="black", font=font)
    for r, (label, row) in enumerate(zip(row_labels, cells)):
        top = title_h + header_h + r * (cell_h + pad)
        draw.text((pad, top + cell_h // 2 - 7), label, fill="black", font=font)
        for c, image in enumerate(row):
            grid.paste(
                image.resize((cell_w, cell_h), Image.Resampling.NEAREST), (label_w + c * (cell_w + pad), top)
            )
    return grid


def _raw(sliders: Sequence[LoadedSlider], scales: tuple[float, ...]) -> tuple[float, ...]:
    """The adapter weights of the scales the user gave (calibrated sliders map them, others keep them)."""
    return tuple(slider.raw_scale(scale) for slider, scale in zip(sliders, scales))


def _columns(sliders: Sequence[LoadedSlider], settings: SweepSettings) -> list[tuple[float, ...]]:
    held = tuple(s.spec.scale for s in sliders)
    if settings.sweep_scales is None:
        return [held]
    if not sliders:
        raise ValueError("--scales: a sweep needs at least one --slider")
    return [(scale,) + held[1:] for scale in settings.sweep_scales]


def _column_label(sliders: Sequence[LoadedSlider], scales: tuple[float, ...], swept: bool) -> str:
    if not sliders:
        return "no slider"
    if swept:
        return f"{sliders[0].name} {scales[0]:+g}"
    return ", ".join(f"{s.name} {v:+g}" for s, v in zip(sliders, scales))


def _title(prompt: str, sliders: Sequence[LoadedSlider], swept: bool) -> str:
    held = sliders[1:] if swept else []
    return prompt + (f"   (held: {', '.join(f'{s.name} {s.spec.scale:+g}' for s in held)})" if held else "")


def _summary_header(
    settings: SweepSettings, slider_info: list[dict[str, Any]], gate_default: GateSpec, gate_source: str
) -> dict[str, Any]:
    swept = settings.sweep_scales is not None
    return {
        "tool": "concept-transfer apply",
        "model": settings.model,
        "sliders": slider_info,
        "swept_slider": 0 if swept else None,
        "scales": list(settings.sweep_scales) if swept else None,
        "prompts": list(settings.prompts),
        "negative_prompt": settings.negative_prompt,
        "seeds": list(settings.seeds),
        "steps": settings.steps,
        "guidance": settings.guidance,
        "size": [settings.width, settings.height],
        "image": str(settings.image) if settings.image else None,
        "strength": _strength(settings),
        "invert": settings.invert,
        "gate": {
            **settings.gate.describe(),
            "default": gate_default.describe(),
            "default_from": gate_source,
            "used": "user" if settings.gate.is_set else gate_source,
        },
        "composition": settings.method,
        "torch_threads": torch.get_num_threads(),  # CPU threads change the bits of an image
        "grids": [],
        "images": [],
    }


def _request(settings: SweepSettings, prompt: str, seed: int, scales: tuple[float, ...]) -> RenderRequest:
    return RenderRequest(
        prompt=prompt,
        seed=seed,
        scales=scales,
        negative_prompt=settings.negative_prompt,
        steps=settings.steps,
        guidance=settings.guidance,
        width=settings.width,
        height=settings.height,
        gate=settings.gate,
        strength=_strength(settings),
    )


def _strength(settings: SweepSettings) -> float | None:
    """The img2img strength, where the picture is edited by img2img (not by inversion)."""
    return settings.strength if settings.image and not settings.invert else None


def run_sweep(
    pipe: Any,
    sliders: Sequence[LoadedSlider],
    settings: SweepSettings,
    out_dir: Path,
    progress: bool = True,
    on_grid: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Render prompts × seeds × columns into `out_dir` (grids, single images, summary.json); returns the summary.

    Columns run outermost within a prompt, so a fused composition re-fuses once per column, not per image.
    """
    sweep = Sweep.start(pipe, sliders, settings, Path(out_dir))
    started = time.perf_counter()
    total = len(settings.prompts) * len(settings.seeds) * len(sweep.columns)
    with (
        tqdm(total=total, desc="apply", unit="image", disable=not progress) as bar,
        compose_sliders(sweep.pipe.unet, [s.factors for s in sliders], _raw(sliders, sweep.columns[0]),
                        settings.method, [s.name for s in sliders]) as composition,
    ):  # fmt: skip
        for p, prompt in enumerate(settings.prompts):
            cells = sweep.render_prompt(composition, p, prompt, on_image=lambda: bar.update(1))
            grid_path = sweep.save_grid(p, prompt, cells)
            sweep.summary["seconds"] = round(time.perf_counter() - started, 3)
            write_json(sweep.summary, sweep.out_dir / "summary.json")
            if on_grid is not None:
                on_grid(grid_path)
    return sweep.summary


@dataclass
class Sweep:
    """One sweep in progress: what it renders (columns of scales), where to, and its growing summary."""

    pipe: Any
    sliders: Sequence[LoadedSlider]
    settings: SweepSettings
    out_dir: Path
    columns: list[tuple[float, ...]]
    gate_default: GateSpec
    image: Image.Image | None
    slider_info: list[dict[str, Any]]
    summary: dict[str, Any]
    editor: PhotoEditor | None = None  # with --invert: edits of the inverted photo

    @classmethod
    def start(
        cls, pipe: Any, sliders: Sequence[LoadedSlider], settings: SweepSettings, out_dir: Path
    ) -> Sweep:
        """Plan the columns and the default gate, load the picture to edit, make the output folder."""
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        columns = _columns(sliders, settings)
        gate_default, gate_source = default_gate([s.metadata for s in sliders])
        image = editor = None
        if settings.invert is not None:  # before any slider is composed: the editor fingerprints the model
            cache = settings.inversion_cache or out_dir / INVERSION_CACHE
            editor = open_editor(pipe, settings.image, settings.invert, settings.width, cache)
        elif settings.image is not None:
            size = (settings.width, settings.height) if settings.width and settings.height else None
            image = load_image(settings.image, size)
            pipe = img2img_pipeline(pipe)
        slider_info = [
            {"path": str(s.spec.path), "name": s.name, "scale": s.spec.scale, "raw_scale": s.raw_scale(s.spec.scale),
             "calibrated": s.calibration is not None, "modules": len(s.factors)}
            for s in sliders
        ]  # fmt: skip
        summary = _summary_header(settings, slider_info, gate_default, gate_source)
        if editor is not None:
            summary["photo"] = editor.photo.describe()
        return cls(
            pipe, sliders, settings, out_dir, columns, gate_default, image, slider_info, summary, editor
        )

    @property
    def swept(self) -> bool:
        """Whether the first slider's scale changes along the columns."""
        return self.settings.sweep_scales is not None

    def render_prompt(
        self, composition: Any, p: int, prompt: str, on_image: Callable[[], None]
    ) -> list[list[Image.Image]]:
        """Render and save every (seed, column) image of prompt `p`; returns them as grid cells [seed][column]."""
        cells: list[list[Any]] = [[None] * len(self.columns) for _ in self.settings.seeds]
        for c, scales in enumerate(self.columns):
            for r, seed in enumerate(self.settings.seeds):
                raw = _raw(self.sliders, scales)
                request = _request(self.settings, prompt, seed, raw)
                picture, gate_record, inversion = self.render_one(composition, request)
                file = f"images/p{p:02d}_seed{seed}_c{c:02d}.png"
                record = self.image_record(file, request, scales, gate_record)
                if inversion is not None:
                    record["inversion"] = inversion
                save_png(picture, self.out_dir / record["file"], png_text(record))
                self.summary["images"].append(record)
                cells[r][c] = picture
                on_image()
        return cells

    def render_one(
        self, composition: Any, request: RenderRequest
    ) -> tuple[Image.Image, dict[str, Any], dict[str, Any] | None]:
        """One image and its gate record; an edit of the inverted photo also returns its inversion record."""
        if self.editor is not None:
            return self.editor.render(composition, request, self.gate_default)
        return (*render(self.pipe, composition, request, self.gate_default, self.image), None)

    def image_record(
        self, file: str, request: RenderRequest, scales: tuple[float, ...], gate_record: dict[str, Any]
    ) -> dict[str, Any]:
        """What summary.json and the PNG's text say about one image (`scales` as the user gave them)."""
        return {
            "file": file,
            "prompt": request.prompt,
            "negative_prompt": self.settings.negative_prompt,
            "seed": request.seed,
            "sliders": [
                {**info, "scale": v, "raw_scale": w}
                for info, v, w in zip(self.slider_info, scales, request.scales)
            ],
            "scales": list(scales),
            "raw_scales": list(request.scales),
            "gate": gate_record,
            **{key: self.summary[key] for key in ("steps", "guidance", "model", "image", "strength")},
        }

    def save_grid(self, p: int, prompt: str, cells: list[list[Image.Image]]) -> Path:
        """Write prompt `p`'s labelled grid (rows = seeds, columns = scales) and list it in the summary."""
        grid_path = self.out_dir / f"grid_p{p:02d}.png"
        row_labels = [f"seed {seed}" for seed in self.settings.seeds]
        col_labels = [_column_label(self.sliders, scales, self.swept) for scales in self.columns]
        grid = make_grid(cells, row_labels, col_labels, _title(prompt, self.sliders, self.swept))
        save_png(grid, grid_path, {"prompt": prompt, "sliders": json.dumps(self.slider_info)})
        self.summary["grids"].append(grid_path.name)
        return grid_path


def png_text(record: dict[str, Any]) -> dict[str, str]:
    """The PNG text chunks of one image: readable single fields plus the whole record as JSON."""
    text = {
        "prompt": record["prompt"],
        "seed": str(record["seed"]),
        "sliders": json.dumps(record["sliders"]),
        "scales": json.dumps(record["scales"]),
        "raw_scales": json.dumps(record["raw_scales"]),
        "gate": json.dumps(record["gate"]),
        "steps": str(record["steps"]),
        "guidance": str(record["guidance"]),
        "model": record["model"],
        "concept_transfer": json.dumps(record),
    }
    if record["negative_prompt"]:
        text["negative_prompt"] = record["negative_prompt"]
    if record["image"]:
        text["image"] = record["image"]
    if record["strength"] is not None:
        text["strength"] = str(record["strength"])
    if record.get("inversion"):
        text["invert"] = record["inversion"]["method"]
    return text
