"""What the page shows of a slider file: name, kind, provenance and the range of its scale control.

Everything comes from the file's header (DESIGN §4): the kind and concept, the training prompts of a
text slider, the generator layer and channel (or the pair corpus) of a visual or GAN slider, and the
range of the scale control: the calibrated user range when the file has a calibration (scales are then
user scales, mapped to raw weights as `apply` maps them), else the recommended raw range (-3..3 when the
file records none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sliders.slider_file import SliderFile
from sliders.slider_metadata import KEY_CORPUS, KEY_PROMPTS
from transfer.apply import LoadedSlider

DEFAULT_RANGE = (-3.0, 3.0)


@dataclass(frozen=True)
class SliderCard:
    """A loaded slider file as the page shows it (no tensors: sessions hold cards, the engine the weights)."""

    path: Path
    name: str
    kind: str
    provenance: str
    scale_range: tuple[float, float]
    modules: int
    calibrated: bool = False

    def label(self) -> str:
        """One line: name, kind, provenance, and whether its scale is calibrated."""
        scale = "calibrated scale" if self.calibrated else "raw scale"
        return f"**{self.name}** · {self.kind} · {self.provenance} · {scale}"


def _json(metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key]) if key in metadata else None
    except ValueError:
        return None


def _text_provenance(prompts: Any) -> str | None:
    entries = prompts.get("entries") if isinstance(prompts, dict) else prompts
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        return None
    first = entries[0]
    more = f" (+{len(entries) - 1} more)" if len(entries) > 1 else ""
    return f"prompts: '{first.get('positive', '')}' vs '{first.get('unconditional', '')}'{more}"


def _corpus_provenance(corpus: Any) -> str | None:
    if not isinstance(corpus, dict):
        return None
    source = corpus.get("provenance")
    if isinstance(source, str):
        try:
            source = json.loads(source)
        except ValueError:
            source = None
    edit = source.get("edit") if isinstance(source, dict) else None
    if isinstance(edit, dict) and "layer" in edit:
        where = f"channel {edit['channel']}" if "channel" in edit else edit.get("kind", "direction")
        return f"GAN layer {edit['layer']} {where}, {corpus.get('pairs', '?')} pairs"
    return f"pairs: {corpus.get('name', '?')} ({corpus.get('pairs', '?')} pairs)"


def provenance(metadata: Mapping[str, str]) -> str:
    """Where the slider came from, in one line: training prompts, or GAN layer and channel, or 'unknown'."""
    described = _text_provenance(_json(metadata, KEY_PROMPTS)) or _corpus_provenance(
        _json(metadata, KEY_CORPUS)
    )
    return described or "provenance not recorded"


def card_of(loaded: LoadedSlider) -> SliderCard:
    """The card of a slider loaded by `transfer.apply.load_sliders` (ValueError on a malformed header)."""
    view = SliderFile(factors=loaded.factors, metadata=loaded.metadata, source_path=loaded.spec.path)
    low, high = loaded.calibration.user_range if loaded.calibration else view.scale_range or DEFAULT_RANGE
    if not low < high:  # a calibration that found no usable side: offer the raw default instead of nothing
        low, high = DEFAULT_RANGE
    return SliderCard(
        path=Path(loaded.spec.path),
        name=loaded.name,
        kind=view.kind or "LoRA (no kind recorded)",
        provenance=provenance(loaded.metadata),
        scale_range=(float(low), float(high)),
        modules=len(loaded.factors),
        calibrated=loaded.calibration is not None,
    )
