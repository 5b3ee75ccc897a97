"""What each control of the page does, as plain functions of the page's values and the tab's state.

The page (`app.py`) wires these to its controls. Every handler returns a status line instead of raising:
a bad file, a path outside the allowed folders or a value out of range becomes a message in the page,
and the server keeps serving. Nothing here imports Gradio except for the updates it returns.
"""

from __future__ import annotations

import random
import shutil
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from transfer.errors import USER_ERRORS
from transfer.gate import GateSpec
from transfer.studio.engine import Cancelled, StudioEngine
from transfer.studio.job import Job, parse_scales, parse_seed
from transfer.studio.library import LibraryItem, blank_preview, read_library
from transfer.studio.paths import PathGuard
from transfer.studio.results import Result
from transfer.studio.session import MAX_SLIDERS, SessionState

ROW_FIELDS = 4  # per slider row: visible, description, on/off, scale


@dataclass
class Settings:
    """The sampling settings as the page sends them (checked when the job is built)."""

    prompt: str
    negative_prompt: str
    seed: Any
    random_seed: bool
    steps: Any
    guidance: Any
    width: Any
    height: Any
    gate_from_files: bool
    start_noise: Any

    def gate(self) -> GateSpec:
        """The user's gate, or unset (the files' recommendation) when the page says so."""
        return GateSpec() if self.gate_from_files else GateSpec(start_noise=float(self.start_noise))


def message(error: BaseException) -> str:
    """The status line of a failed action: the error's own words for user errors, else a short note."""
    if isinstance(error, Cancelled):
        return "Cancelled."
    if isinstance(error, USER_ERRORS):
        return f"Error: {error}"
    traceback.print_exception(error, file=sys.stderr)
    return f"Error: {type(error).__name__}: {error} (the studio keeps running; details in its log)"


@dataclass
class Handlers:
    """The page's actions over one engine, one path guard and the startup sliders."""

    engine: StudioEngine
    guard: PathGuard
    startup: Sequence[tuple[Path, float]]
    library: Path | None = None

    def new_session(self) -> SessionState:
        """A fresh tab: its own token and the startup sliders at their scales."""
        state = SessionState()
        for path, scale in self.startup:
            state.add(self.engine.card(path), scale)
        return state

    def rows(self, state: SessionState) -> list[dict[str, Any]]:
        """What every slider row shows (hidden rows past the panel's sliders)."""
        import gradio as gr

        updates: list[dict[str, Any]] = []
        for index in range(MAX_SLIDERS):
            if index >= len(state.entries):
                updates += [gr.update(visible=False), gr.update(), gr.update(), gr.update()]
                continue
            entry = state.entries[index]
            low, high = entry.card.scale_range
            updates += [
                gr.update(visible=True),
                gr.update(value=entry.card.label()),
                gr.update(value=entry.enabled),
                gr.update(minimum=low, maximum=high, value=entry.scale, label=f"{entry.card.name} scale"),
            ]
        return updates

    def choices(self, state: SessionState) -> dict[str, Any]:
        """The compare menu: one entry per slider in the panel."""
        import gradio as gr

        names = [f"{i + 1}. {e.card.name}" for i, e in enumerate(state.entries)]
        return gr.update(choices=names, value=names[0] if names else None)

    def add_file(self, state: SessionState, path: Path, copy: bool) -> str:
        """Add the slider at `path` (an upload is first copied into the tab's folder, so commands can name it)."""
        if copy:
            folder = self.folder(state) / "uploads"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / Path(path).name
            shutil.copyfile(path, target)
            path = target
        card = self.engine.card(path)
        state.add(card)
        return f"Added {card.name} ({card.kind}, {card.modules} modules)."

    def add_typed(self, state: SessionState, text: str) -> str:
        """Add the slider file a typed path names (confined to the allowed folders)."""
        path = self.guard.resolve(text, "slider path")
        if path.is_dir():
            raise IsADirectoryError(f"slider path {text}: a folder; browse it in the Library tab")
        return self.add_file(state, path, copy=False)

    def browse(self, state: SessionState, text: str) -> list[tuple[Image.Image, str]]:
        """The gallery of a typed folder (or the library the studio was started with)."""
        folder = self.guard.resolve(text, "library folder") if text and text.strip() else self.library
        if folder is None:
            raise ValueError("library: type a folder of slider files")
        items = read_library(folder)
        state.gallery = [item.file for item in items]
        return [(_picture(item), item.name) for item in items]

    def pick(self, state: SessionState, index: int) -> str:
        """Add the gallery's slider number `index`."""
        if not 0 <= index < len(state.gallery):
            raise ValueError("library: that slider is no longer listed; browse the folder again")
        return self.add_file(state, state.gallery[index], copy=False)

    def folder(self, state: SessionState) -> Path:
        """The tab's results folder."""
        return self.engine.out_dir / state.token

    def job(self, kind: str, state: SessionState, settings: Settings, **extra: Any) -> Job:
        """Build and check a job from the page's values (a new seed first when 'random' is ticked)."""
        if settings.random_seed:
            settings.seed = random.randrange(2**31)
        sliders = extra.pop("sliders", None)
        return Job(
            kind=kind,
            prompt=settings.prompt or "",
            seed=parse_seed(settings.seed),
            sliders=tuple(state.active() if sliders is None else sliders),
            negative_prompt=settings.negative_prompt or None,
            steps=int(_number(settings.steps, "steps")),
            guidance=_number(settings.guidance, "guidance"),
            width=int(_number(settings.width, "width")),
            height=int(_number(settings.height, "height")),
            gate=settings.gate(),
            **extra,
        )

    def compare_job(self, state: SessionState, settings: Settings, choice: str, scales: str) -> Job:
        """A comparison of the chosen row's slider over `scales`, the other switched-on sliders held."""
        index = _row_of(choice)
        return self.job(
            "compare", state, settings, sliders=state.swept_first(index), sweep_scales=parse_scales(scales)
        )

    def edit_job(
        self, state: SessionState, settings: Settings, picture: Any, strength: Any, method: str = "img2img"
    ) -> Job:
        """An edit of the uploaded picture, saved into the tab's folder first (the command names the copy).

        `method`: img2img at `strength`, or an inversion (`apply --invert`), which ignores the strength.
        """
        if picture is None:
            raise ValueError("edit: upload a picture to edit")
        try:
            with Image.open(picture) as opened:
                image = opened.convert("RGB")
        except (OSError, ValueError) as error:
            raise ValueError(f"edit: the uploaded file is not a readable picture ({error})") from None
        number = state.next_result()
        path = self.folder(state) / f"{number:04d}-input.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        if method != "img2img":
            return self.job("edit", state, settings, image=path, invert=method)
        return self.job("edit", state, settings, image=path, strength=_number(strength, "strength"))

    def run(self, state: SessionState, job: Job, progress: Callable[[float, str], None] | None) -> Result:
        """Render `job` for this tab."""
        return self.engine.run(job, state.token, self.folder(state), state.next_result(), progress)

    def cancel(self, state: SessionState) -> str:
        """Stop this tab's running job (other tabs' jobs are not touched)."""
        return "Cancelling..." if self.engine.cancel(state.token) else "Nothing of this tab is running."


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return number


def _row_of(choice: str | None) -> int:
    """The row index of a compare-menu entry ('2. smile' -> 1)."""
    head = (choice or "").split(".", 1)[0]
    if not head.isdigit():
        raise ValueError("compare: choose the slider to compare")
    return int(head) - 1


def _picture(item: LibraryItem) -> Image.Image:
    if item.preview is None:
        return blank_preview()
    try:
        with Image.open(item.preview) as opened:
            return opened.convert("RGB")
    except OSError:
        return blank_preview()
