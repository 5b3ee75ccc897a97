"""One browser tab's state: its own panel of sliders (card, scale, on/off) and its own results folder.

The page keeps one `SessionState` per tab (Gradio's per-session state), so two tabs never share sliders,
settings or images. The state holds cards, not weights: the engine loads each file once for everyone.
The page shows a fixed number of slider rows; `rows()` says what each row shows.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transfer.studio.cards import SliderCard
from transfer.studio.job import SliderSetting

MAX_SLIDERS = 8


@dataclass
class SliderEntry:
    """A slider in the panel: its card, the scale the user set, whether it is switched on."""

    card: SliderCard
    scale: float = 0.0
    enabled: bool = True


@dataclass
class SessionState:
    """The panel of one tab, and the folder name its results are written under."""

    entries: list[SliderEntry] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(6))
    results: int = 0
    gallery: list[Path] = field(default_factory=list)  # the slider files the library tab lists, in order

    def add(self, card: SliderCard, scale: float = 0.0) -> SliderEntry:
        """Add a slider (ValueError when the panel is full or the file is already in it)."""
        if any(entry.card.path == card.path for entry in self.entries):
            raise ValueError(f"{card.path}: already in the panel")
        if len(self.entries) >= MAX_SLIDERS:
            raise ValueError(f"the panel holds {MAX_SLIDERS} sliders; remove one first")
        low, high = card.scale_range
        entry = SliderEntry(card, min(max(float(scale), low), high))
        self.entries.append(entry)
        return entry

    def remove(self, index: int) -> SliderEntry:
        """Take the slider in row `index` out of the panel."""
        if not 0 <= index < len(self.entries):
            raise ValueError(f"no slider in row {index + 1}")
        return self.entries.pop(index)

    def sync(self, scales: Sequence[object], enabled: Sequence[object]) -> None:
        """Take the rows' values from the page; a row's scale is clamped to its range, a bad value ignored."""
        for entry, scale, on in zip(self.entries, scales, enabled):
            entry.enabled = bool(on)
            try:
                value = float(scale)
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                low, high = entry.card.scale_range
                entry.scale = min(max(value, low), high)

    def active(self) -> list[SliderSetting]:
        """The switched-on sliders in panel order, as a job takes them."""
        return [SliderSetting(e.card.path, e.card.name, e.scale) for e in self.entries if e.enabled]

    def swept_first(self, index: int) -> list[SliderSetting]:
        """The active sliders with row `index` first (it must be switched on): a comparison's order."""
        if not 0 <= index < len(self.entries) or not self.entries[index].enabled:
            raise ValueError("compare: choose a slider that is in the panel and switched on")
        swept = self.entries[index].card.path
        active = self.active()
        return [s for s in active if s.path == swept] + [s for s in active if s.path != swept]

    def next_result(self) -> int:
        """A new result number for this tab (files are named by it)."""
        self.results += 1
        return self.results
