"""The library's records: `build.json` (how it is built), one `entry.json` per slider, and `index.json`.

    lib/build.json          format, generator (file, sha256, resolution), model, settings
    lib/<id>/entry.json     one slider once it is finished or failed (what the index says of it)
    lib/index.json          build.json's fields + "sliders": every candidate's record, in rank order
    lib/index.html          the same as a gallery (`transfer.library.html`)

A slider record: `id` (the candidate's name, also its folder), `name` (what people call it: the id until
renamed; `library rename` sets it and re-builds keep it), `rank`, `status` (`done`, `failed` with a
`reason`, or `pending`), `file`, `provenance` (generator sha256, the edit, delta, levels, seeds),
`scores` (discovery's), `calibration`, `previews` and `pairs_sheet` (paths relative to lib/), `training`
(steps, and the sliders trained in the same loop), `seconds` (wall time per stage). Every file is written
atomically; paths are relative to the library folder, so it can be moved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pair_datasets.atomic import atomic_write_text

FORMAT = "concept-transfer.library/1"
BUILD_FILE, INDEX_FILE, ENTRY_FILE = "build.json", "index.json", "entry.json"
STATUSES = ("done", "failed", "pending")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (indented, keys in the order given), creating its folder if needed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    """The JSON in `path`; ValueError naming the file when it is not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def check_build(root: Path, build: Mapping[str, Any]) -> None:
    """Refuse to extend a library that was built from another generator, model or settings."""
    path = Path(root) / BUILD_FILE
    if not path.is_file():
        return
    old = read_json(path)
    if old.get("format") != FORMAT:
        raise ValueError(f"{path}: not a concept-transfer library (format {old.get('format')!r})")
    if old["generator"]["sha256"] != build["generator"]["sha256"]:
        raise ValueError(
            f"{path}: this library was built from another generator ({old['generator']['file']}, "
            f"sha256 {old['generator']['sha256'][:12]}); use another --out"
        )
    changed = sorted(k for k in {*old["settings"], *build["settings"]}
                     if old["settings"].get(k) != build["settings"].get(k))  # fmt: skip
    if old.get("model") != build.get("model"):
        changed.insert(0, "model")
    if changed:
        raise ValueError(
            f"{path}: this library was built with other settings ({', '.join(changed)}); "
            "use the same settings to extend it, or another --out"
        )


def read_entry(folder: Path) -> dict[str, Any] | None:
    """The finished or failed record of the slider in `folder`, if there is one."""
    path = Path(folder) / ENTRY_FILE
    return read_json(path) if path.is_file() else None


def is_done(folder: Path) -> bool:
    """Whether the slider in `folder` is finished (its record says done and its file is there)."""
    entry = read_entry(folder)
    return bool(entry and entry["status"] == "done" and (Path(folder).parent / entry["file"]).is_file())


def slider_names(root: Path) -> dict[str, str]:
    """{id: name} of an existing index (the names people gave), empty when there is none."""
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        return {}
    return {s["id"]: s["name"] for s in read_json(path).get("sliders", [])}


def assemble_index(
    root: Path, build: Mapping[str, Any], pending: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The index: `build` plus, per candidate in rank order, its entry.json or else its pending record."""
    names = slider_names(root)
    sliders = []
    for record in pending:
        entry = read_entry(Path(root) / record["id"]) or dict(record)
        sliders.append({**entry, "name": names.get(entry["id"], entry["name"])})
    counts = {status: sum(s["status"] == status for s in sliders) for status in STATUSES}
    return {**build, "counts": counts, "sliders": sliders}


def write_index(root: Path, index: Mapping[str, Any]) -> Path:
    """Write index.json and the index.html gallery (both atomically); returns index.json's path."""
    from transfer.library.html import render_gallery

    root = Path(root)
    write_json(root / INDEX_FILE, index)
    atomic_write_text(root / "index.html", render_gallery(index))
    return root / INDEX_FILE


def load_index(root: Path) -> dict[str, Any]:
    """The index of the library in `root`; FileNotFoundError naming the folder when there is none."""
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{root}: no library index ({INDEX_FILE}); build one with `library build`")
    index = read_json(path)
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: not a concept-transfer library index (format {index.get('format')!r})")
    return index


def rename(root: Path, slider: str, name: str) -> dict[str, Any]:
    """Give the slider `slider` (its id or current name) the name `name`; rewrites index.json and html."""
    name = name.strip()
    if not name:
        raise ValueError("library rename: the new name is empty")
    index = load_index(root)
    matches = [s for s in index["sliders"] if slider in (s["id"], s["name"])]
    if not matches:
        known = ", ".join(s["id"] for s in index["sliders"])
        raise ValueError(f"{Path(root) / INDEX_FILE}: no slider {slider!r} (sliders: {known})")
    if any(s["name"] == name and s is not matches[0] for s in index["sliders"]):
        raise ValueError(f"library rename: another slider is already called {name!r}")
    matches[0]["name"] = name
    write_index(root, index)
    return matches[0]
