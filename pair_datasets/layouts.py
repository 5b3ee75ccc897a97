"""Find the before/after pairs in a folder of user artwork, one function per layout.

Each planner returns candidate pairs and the problems it found while listing (unmatched files, duplicate
stems, non-images); no image is decoded here. Files are matched by stem (name without extension), so
identically named files match; hidden files (names starting with ".") are skipped and reported.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from pair_datasets.images import is_image_name

LAYOUTS = ("auto", "stems", "levels", "side-by-side", "csv")
# The original Concept Sliders image-slider folders and their scales (`--folders` / `--scales`).
ORIGINAL_LEVEL_FOLDERS = {"verylow": -2.0, "low": -1.0, "high": 1.0, "veryhigh": 2.0}
CSV_COLUMNS = ("before", "after", "level", "caption", "id")


@dataclass
class Candidate:
    """A pair to ingest; with `split`, `before` and `after` are the same side-by-side file."""

    name: str
    before: Path
    after: Path
    level: float = 1.0
    caption: str | None = None
    split: bool = False


@dataclass
class Problem:
    """A file (or pair) left out of the corpus: `kind` for machines, `reason` for people."""

    kind: str
    paths: list[str]
    reason: str


@dataclass
class Plan:
    """What a layout found: the layout name, the base folder paths are shown relative to, pairs, problems."""

    layout: str
    base: Path
    candidates: list[Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def show(self, path: Path) -> str:
        """`path` relative to the source folder when inside it (for reports), else absolute."""
        try:
            return (
                Path(os.path.relpath(path, self.base)).as_posix() if _inside(path, self.base) else str(path)
            )
        except ValueError:  # different drives on Windows
            return str(path)


def _inside(path: Path, base: Path) -> bool:
    path, base = Path(os.path.abspath(path)), Path(os.path.abspath(base))
    return path == base or base in path.parents


def detect_layout(src: Path | None, before: Path | None = None, after: Path | None = None) -> str:
    """Guess the layout of `src` (see LAYOUTS); ValueError saying what was looked for if none fits."""
    if before is not None or after is not None:
        return "stems"
    if src is None:
        raise ValueError("no source given: pass SRC or --before DIR --after DIR")
    if src.is_file():
        if src.suffix.lower() == ".csv":
            return "csv"
        if is_image_name(src):
            return "side-by-side"
        raise ValueError(f"{src}: a source file must be a .csv or a side-by-side image")
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such file or folder")
    subdirs = {p.name.lower() for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if {"before", "after"} <= subdirs:
        return "stems"
    if len(subdirs & set(ORIGINAL_LEVEL_FOLDERS)) >= 2:
        return "levels"
    csvs = [p for p in src.iterdir() if p.is_file() and p.suffix.lower() == ".csv"]
    if len(csvs) == 1:
        return "csv"
    if any(p.is_file() and is_image_name(p) for p in src.iterdir()):
        return "side-by-side"
    raise ValueError(
        f"{src}: cannot tell the layout (no before/ and after/ folders, no level folders such as "
        f"{', '.join(ORIGINAL_LEVEL_FOLDERS)}, no single .csv, no images); pass --layout"
    )


def list_images(folder: Path, plan: Plan) -> dict[str, Path]:
    """Image files of `folder` by stem; non-images, sub-folders and duplicate stems go to plan.problems."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            reason = f"hidden {'folder' if path.is_dir() else 'file'} (its name starts with '.'), skipped"
            plan.problems.append(Problem("hidden", [plan.show(path)], reason))
            continue
        if path.is_dir():
            plan.problems.append(
                Problem("ignored", [plan.show(path)], "is a folder (sub-folders are not searched)")
            )
        elif not is_image_name(path):
            reason = f"not an image (extension {path.suffix.lower() or 'none'!r})"
            plan.problems.append(Problem("not_image", [plan.show(path)], reason))
        else:
            by_stem.setdefault(path.stem, []).append(path)
    images: dict[str, Path] = {}
    for stem, paths in by_stem.items():
        if len(paths) == 1:
            images[stem] = paths[0]
            continue
        names = ", ".join(p.name for p in paths)
        for path in paths:
            reason = f"duplicate stem {stem!r} in {plan.show(folder)}/ ({names}); rename or remove one"
            plan.problems.append(Problem("duplicate", [plan.show(path)], reason))
    return images


def _match(
    plan: Plan,
    befores: dict[str, Path],
    afters: dict[str, Path],
    dirs: tuple[Path, Path],
    level: float,
    suffix: str,
) -> None:
    """Pair files by stem; a stem on one side only is reported as unmatched."""
    for stem in sorted(set(befores) | set(afters)):
        if stem in befores and stem in afters:
            plan.candidates.append(Candidate(stem + suffix, befores[stem], afters[stem], level))
            continue
        path, other_dir = (befores[stem], dirs[1]) if stem in befores else (afters[stem], dirs[0])
        reason = f"no file with stem {stem!r} in {plan.show(other_dir)}/"
        plan.problems.append(Problem("unmatched", [plan.show(path)], reason))


def plan_stems(src: Path | None, before: Path | None, after: Path | None) -> Plan:
    """Two folders (`before/` & `after/` in SRC, or --before/--after) matched by file stem."""
    if (before is None) != (after is None):
        raise ValueError("--before and --after must be given together")
    if before is None:
        if src is None or not src.is_dir():
            raise FileNotFoundError(f"{src}: no such folder")
        dirs = {p.name.lower(): p for p in src.iterdir() if p.is_dir()}
        if "before" not in dirs or "after" not in dirs:
            raise ValueError(
                f"{src}: the stems layout needs before/ and after/ folders (or --before/--after)"
            )
        before, after = dirs["before"], dirs["after"]
    common = os.path.commonpath([os.path.abspath(before), os.path.abspath(after)])
    base = src if src is not None and src.is_dir() else Path(common)
    plan = Plan("stems", base)
    befores = list_images(before, plan)
    afters = list_images(after, plan)
    _match(plan, befores, afters, (before, after), 1.0, "")
    return plan


def parse_scales(text: str) -> tuple[float, ...]:
    """Parse `--scales -2,-1,1,2`; ValueError naming the bad value."""
    scales = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"--scales: {part.strip()!r} is not a number") from None
        if not math.isfinite(value) or value == 0:
            raise ValueError(f"--scales: {part.strip()!r} must be a non-zero finite number")
        scales.append(value)
    return tuple(scales)


def plan_levels(src: Path, folders: tuple[str, ...] | None, scales: tuple[float, ...] | None) -> Plan:
    """One folder per intensity; pairs are (folder at -s, folder at +s) with level s, matched by stem."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder")
    subdirs = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if folders is None:
        known = [name for name in ORIGINAL_LEVEL_FOLDERS if name in subdirs]
        if scales is None and len(known) >= 2:
            folders = tuple(known)
        elif scales is not None and len(scales) == len(known) and len(known) >= 2:
            folders = tuple(known)  # the original order verylow, low, high, veryhigh
        else:
            folders = tuple(subdirs)
    if scales is None:
        unknown = [name for name in folders if name not in ORIGINAL_LEVEL_FOLDERS]
        if unknown:
            raise ValueError(f"{src}: folders {unknown} have no known scale; pass --scales (and --folders)")
        scales = tuple(ORIGINAL_LEVEL_FOLDERS[name] for name in folders)
    if len(scales) != len(folders):
        raise ValueError(
            f"--scales has {len(scales)} values but there are {len(folders)} level folders "
            f"({', '.join(folders)}); pass --folders in the order of --scales"
        )
    if len(set(scales)) != len(scales):
        raise ValueError(f"--scales: values repeat in {list(scales)}")
    for scale in scales:
        if -scale not in scales:
            raise ValueError(f"--scales: scale {scale:g} has no mirrored scale {-scale:g}")
    plan = Plan("levels", src)
    dirs = {scale: src / name for name, scale in zip(folders, scales)}
    listed = {scale: list_images(folder, plan) for scale, folder in dirs.items()}
    for scale in sorted(s for s in scales if s > 0):
        pair_dirs = (dirs[-scale], dirs[scale])
        _match(plan, listed[-scale], listed[scale], pair_dirs, scale, f"-l{scale:g}")
    return plan


def plan_side_by_side(src: Path) -> Plan:
    """One image per pair: left half before, right half after (SRC a folder of such images, or one)."""
    if src.is_file():
        plan = Plan("side-by-side", src.parent)
        images = {src.stem: src}
    else:
        plan = Plan("side-by-side", src)
        images = list_images(src, plan)
    for stem, path in sorted(images.items()):
        plan.candidates.append(Candidate(stem, path, path, 1.0, split=True))
    return plan


def plan_csv(src: Path) -> Plan:
    """A CSV with a header `before,after[,level,caption,id]`; paths relative to the CSV's folder."""
    if src.is_dir():
        csvs = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
        if len(csvs) != 1:
            raise ValueError(f"{src}: the csv layout needs exactly one .csv file there, found {len(csvs)}")
        src = csvs[0]
    plan = Plan("csv", src.parent)
    try:
        _read_csv(plan, src)
    except UnicodeDecodeError as error:
        raise ValueError(f"{src}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise ValueError(f"{src}: not a readable CSV ({error})") from None
    return plan


def _read_csv(plan: Plan, src: Path) -> None:
    """Check the header, then turn each non-blank row into a candidate or a problem."""
    with open(src, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        unknown = [name for name in header if name not in CSV_COLUMNS]
        if unknown:
            raise ValueError(f"{src}: unknown column(s) {unknown}; columns are {', '.join(CSV_COLUMNS)}")
        for required in ("before", "after"):
            if required not in header:
                raise ValueError(f"{src}: missing column {required!r} (header: {','.join(header)})")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            _csv_row(plan, src, reader.line_num, dict(zip(header, (cell.strip() for cell in row))))


def _csv_row(plan: Plan, src: Path, line: int, row: dict[str, str]) -> None:
    """Turn one CSV row into a candidate, or a `bad_row` / `missing` problem naming the line."""
    where = f"{src.name} line {line}"
    if not row.get("before") or not row.get("after"):
        plan.problems.append(Problem("bad_row", [where], "'before' and 'after' must both be given"))
        return
    paths = [src.parent / row[name] for name in ("before", "after")]
    level_text = row.get("level") or "1"
    try:
        level = float(level_text)
    except ValueError:
        level = float("nan")
    if not math.isfinite(level) or level <= 0:
        reason = f"{where}: level {level_text!r} must be a positive number"
        plan.problems.append(Problem("bad_row", [plan.show(p) for p in paths], reason))
        return
    missing = [p for p in paths if not p.is_file()]
    if missing:
        for path in missing:
            plan.problems.append(Problem("missing", [plan.show(path)], f"{where}: file not found"))
        return
    name = row.get("id") or paths[0].stem
    plan.candidates.append(Candidate(name, paths[0], paths[1], level, row.get("caption") or None))
