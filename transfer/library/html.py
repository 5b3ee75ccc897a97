"""`lib/index.html`: the library as a page a person scrolls, one card per slider.

Static and self-contained: inline CSS, no script, no external asset; images are the library's own PNGs
by relative path, so the page works offline from `file://` and moves with the folder. Every text that
comes from the index (names, prompts, reasons) is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

STYLE = """
body { font-family: sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
header p { color: #555; margin: 0.2em 0; }
.card { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 0.8em 1em; margin: 1em 0; }
.card h2 { font-size: 1.15em; margin: 0 0 0.3em 0; }
.id { color: #777; font-weight: normal; font-size: 0.85em; }
.status { font-size: 0.8em; padding: 0.1em 0.5em; border-radius: 3px; margin-left: 0.5em; }
.done { background: #d8f0d8; } .failed { background: #f6d3d3; } .pending { background: #eee; }
.body { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
dl { flex: 0 0 24em; display: grid; grid-template-columns: max-content 1fr; gap: 0.15em 1em; margin: 0.4em 0;
     font-size: 0.9em; }
dt { color: #666; } dd { margin: 0; overflow-wrap: anywhere; }
.previews { flex: 1 1 30em; } .previews h3 { font-size: 0.9em; color: #666; margin: 0.4em 0 0.2em 0; }
.previews img { max-width: 100%; margin: 0.2em 0; image-rendering: pixelated; display: block; }
nav a { margin-right: 0.8em; white-space: nowrap; }
.reason { color: #a00; font-family: monospace; white-space: pre-wrap; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)


def _rows(pairs: Mapping[str, Any]) -> str:
    return "".join(
        f"<dt>{escape(str(key))}</dt><dd>{escape(_fmt(value))}</dd>"
        for key, value in pairs.items()
        if value is not None
    )


def _calibration_rows(calibration: Mapping[str, Any] | None) -> dict[str, Any]:
    if not calibration:
        return {"calibration": "none"}
    low, high = calibration["user_range"]
    return {
        "usable user scales": f"{low:+.2f} .. {high:+.2f}",
        "raw weight at user ±1": f"{calibration['raw_at_minus_1']:+.3g} / {calibration['raw_at_1']:+.3g}",
        "user scale 1 =": f"{calibration['unit_effect']:g} {calibration['distance']}",
    }


def _card(slider: Mapping[str, Any]) -> str:
    status = slider["status"]
    provenance = dict(slider.get("provenance") or {})
    provenance["generator_sha256"] = str(provenance.get("generator_sha256", ""))[:12] or None
    details = {
        "rank": slider.get("rank"),
        **provenance,
        **{f"score {k}": v for k, v in (slider.get("scores") or {}).items()},
        **(_calibration_rows(slider.get("calibration")) if status == "done" else {}),
        **{f"{k} s": v for k, v in (slider.get("seconds") or {}).items()},
        "file": slider.get("file") if status == "done" else None,
    }
    reason = f'<p class="reason">{escape(slider["reason"])}</p>' if slider.get("reason") else ""
    return (
        f'<section class="card" id="{escape(slider["id"], quote=True)}">'
        f'<h2>{escape(slider["name"])} <span class="id">{escape(slider["id"])}</span>'
        f'<span class="status {escape(status)}">{escape(status)}</span></h2>'
        f'{reason}<div class="body"><dl>{_rows(details)}</dl>'
        f'<div class="previews">{_pictures(slider) if status == "done" else ""}</div></div></section>'
    )


def _pictures(slider: Mapping[str, Any]) -> str:
    """The preview grids (prompts; rows = seeds, columns = user scales) and the sheet of mined pairs."""

    def img(path: str) -> str:
        return f'<img src="{escape(path, quote=True)}" alt="{escape(path, quote=True)}" loading="lazy">'

    previews = "".join(img(p) for p in slider.get("previews", []))
    pairs = img(slider["pairs_sheet"]) if slider.get("pairs_sheet") else ""
    return f"<h3>previews</h3>{previews}<h3>mined pairs (before / after)</h3>{pairs}"


def render_gallery(index: Mapping[str, Any]) -> str:
    """The whole page for a library index (see `transfer.library.index`)."""
    generator, counts = index.get("generator", {}), index.get("counts", {})
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    prompts = "; ".join(index.get("settings", {}).get("prompts", []))
    head = (
        f"<header><h1>Slider library</h1>"
        f"<p>generator {escape(str(generator.get('file')))} (sha256 {escape(str(generator.get('sha256', ''))[:12])})"
        f" &rarr; model {escape(str(index.get('model')))}</p>"
        f"<p>{escape(summary)}. Previews: {escape(prompts)}, at user scales "
        f"{escape(_fmt(index.get('settings', {}).get('preview_scales', [])))} (columns), seeds as rows.</p></header>"
    )
    sliders = index.get("sliders", [])
    links = "".join(
        f'<a href="#{escape(s["id"], quote=True)}">{escape(s["name"])} ({escape(s["status"])})</a>'
        for s in sliders
    )
    cards = f"<nav>{links}</nav>" + "".join(_card(slider) for slider in sliders)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Slider library</title><style>{STYLE}</style></head><body>{head}{cards}</body></html>\n"
    )
