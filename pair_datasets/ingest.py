"""Ingest user artwork into a pair corpus: plan the pairs, validate and fit every image, write, report.

The corpus is built in a hidden temporary folder beside `out` and moved into place only when it holds at
least one pair, so a failed ingest leaves nothing behind. Source files are only ever read.
Size policy: `pair_datasets.images` (center square crop, Lanczos resize; aspect mismatch rejected).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from pair_datasets.atomic import atomic_write_bytes
from pair_datasets.corpus import Corpus, CorpusInfo, encode_png
from pair_datasets.images import (
    DEFAULT_MAX_ASPECT_DIFF,
    DEFAULT_MAX_PIXELS,
    ImageRejected,
    center_square,
    check_resolution,
    fit_pair,
    load_image,
    split_side_by_side,
)
from pair_datasets.layouts import (
    LAYOUTS,
    Candidate,
    Plan,
    Problem,
    detect_layout,
    plan_csv,
    plan_levels,
    plan_side_by_side,
    plan_stems,
)
from pair_datasets.overview import contact_sheet

REPORT_FILE = "ingest_report.json"
SHEET_FILE = "contact_sheet.png"
SUMMARY_PROBLEMS = 40  # printed; the report file lists all


@dataclass(frozen=True)
class IngestOptions:
    """How to read the source and shape the pairs; `min_side` defaults to resolution // 2."""

    layout: str = "auto"
    before: Path | None = None
    after: Path | None = None
    scales: tuple[float, ...] | None = None
    folders: tuple[str, ...] | None = None
    resolution: int = 1024
    name: str | None = None
    min_side: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect_diff: float = DEFAULT_MAX_ASPECT_DIFF
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        check_resolution(self.resolution, "resolution")
        if self.min_side is not None and self.min_side < 1:
            raise ValueError(f"min_side must be at least 1, got {self.min_side}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, got {self.max_pixels}")
        if not (math.isfinite(self.max_aspect_diff) and self.max_aspect_diff >= 0):
            raise ValueError(f"max_aspect_diff must be a non-negative number, got {self.max_aspect_diff}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")

    @property
    def smallest_side(self) -> int:
        """The shortest image side accepted: upscaling by more than 2x is refused by default."""
        return self.min_side if self.min_side is not None else max(1, self.resolution // 2)


@dataclass
class IngestReport:
    """What an ingest did: accepted pairs and every file left out with its reason."""

    source: str
    corpus: str
    layout: str
    resolution: int
    pairs: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON object written to `ingest_report.json`."""
        return {
            "source": self.source,
            "corpus": self.corpus,
            "layout": self.layout,
            "resolution": self.resolution,
            "policy": "center square crop, Lanczos resize to resolution; aspect mismatch rejected",
            "accepted": len(self.pairs),
            "rejected": len(self.problems),
            "pairs": self.pairs,
            "problems": [asdict(problem) for problem in self.problems],
        }

    def summary(self) -> str:
        """A few lines for a person: counts, then each left-out file and why."""
        res = self.resolution
        lines = [f"ingested {len(self.pairs)} pairs ({self.layout} layout, {res}x{res}) into {self.corpus}"]
        if self.problems:
            lines.append(f"left out {len(self.problems)}:")
            lines += [f"  {', '.join(p.paths)}: {p.reason}" for p in self.problems[:SUMMARY_PROBLEMS]]
            if len(self.problems) > SUMMARY_PROBLEMS:
                lines.append(f"  ... and {len(self.problems) - SUMMARY_PROBLEMS} more in the report")
        lines.append(f"report: {Path(self.corpus) / REPORT_FILE}")
        lines.append(f"contact sheet: {Path(self.corpus) / SHEET_FILE}")
        return "\n".join(lines)


def plan_pairs(src: Path | None, options: IngestOptions) -> Plan:
    """List the candidate pairs of `src` for the chosen (or detected) layout."""
    layout = options.layout
    if layout == "auto" and (options.scales or options.folders) and options.before is None:
        layout = "levels"  # --scales/--folders only mean something for level folders
    elif layout == "auto":
        layout = detect_layout(src, options.before, options.after)
    if layout == "stems":
        return plan_stems(src, options.before, options.after)
    if src is None:
        raise ValueError(f"the {layout} layout needs SRC")
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    if layout == "levels":
        return plan_levels(src, options.folders, options.scales)
    if layout == "side-by-side":
        return plan_side_by_side(src)
    return plan_csv(src)


def ingest(
    src: Path | None, out: Path, options: IngestOptions | None = None, progress: bool = True
) -> IngestReport:
    """Ingest the pairs found in `src` into a new corpus at `out`; ValueError if no pair is usable."""
    options = options or IngestOptions()
    src = Path(src) if src is not None else None
    out = Path(out)
    _check_out(src, out, options)
    plan = plan_pairs(src, options)
    source = str(Path(os.path.abspath(src if src is not None else plan.base)))
    info = CorpusInfo(
        name=options.name or out.name,
        resolution=options.resolution,
        provenance={
            "kind": "ingest",
            "layout": plan.layout,
            "source": source,
            "scales": list(options.scales) if options.scales else None,
            "policy": "center-square-lanczos",
            "max_aspect_diff": options.max_aspect_diff,
        },
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.ingest-"))
    try:
        report = IngestReport(source, str(out), plan.layout, options.resolution, problems=list(plan.problems))
        corpus = Corpus.create(tmp, info)
        _write_pairs(corpus, plan, options, report, progress)
        if not report.pairs:
            reasons = "; ".join(f"{', '.join(p.paths)}: {p.reason}" for p in report.problems[:8])
            more = f" (and {len(report.problems) - 8} more)" if len(report.problems) > 8 else ""
            raise ValueError(f"no usable pair in {source}: {reasons or 'no pairs found'}{more}")
        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
        atomic_write_bytes(tmp / REPORT_FILE, text.encode("utf-8"))
        contact_sheet(corpus, tmp / SHEET_FILE)
        if out.exists():
            out.rmdir()  # checked empty by _check_out; rename needs it gone or empty
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _check_out(src: Path | None, out: Path, options: IngestOptions) -> None:
    """Refuse an output folder that is not empty, or that is the source or contains it."""
    real_out = Path(os.path.abspath(out))
    for source in (src, options.before, options.after):
        if source is not None:
            real_src = Path(os.path.abspath(source))
            if real_out == real_src or real_out in real_src.parents:
                raise ValueError(f"--out {out} must not be the source folder or contain it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not an empty folder")


def _write_pairs(
    corpus: Corpus, plan: Plan, options: IngestOptions, report: IngestReport, progress: bool
) -> None:
    """Decode, fit and PNG-encode candidates on worker threads (Pillow releases the GIL); append in order."""
    workers = options.workers or min(8, os.cpu_count() or 1)
    taken: set[str] = set()
    pending: deque[tuple[Candidate, Future]] = deque()
    candidates = iter(plan.candidates)
    bar = tqdm(
        total=len(plan.candidates), desc="ingest", unit="pair", disable=not progress or not plan.candidates
    )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while True:
            # A bounded window keeps memory flat: at most 2 x workers decoded pairs wait for the writer.
            while len(pending) < 2 * workers:
                candidate = next(candidates, None)
                if candidate is None:
                    break
                pending.append((candidate, pool.submit(_prepare, candidate, options, plan)))
            if not pending:
                break
            candidate, future = pending.popleft()
            outcome = future.result()
            bar.update(1)
            if isinstance(outcome, list):
                report.problems.extend(outcome)
                continue
            before_png, after_png, source = outcome
            pair_id = _unique_id(candidate.name, taken)
            source["layout"] = plan.layout
            corpus.append_png(pair_id, before_png, after_png, candidate.level, candidate.caption, source)
            report.pairs.append({"id": pair_id, "level": candidate.level, **source})
    bar.close()


def _prepare(candidate: Candidate, options: IngestOptions, plan: Plan):
    """Load, validate, fit and encode one candidate: (before PNG, after PNG, source), or its problems."""
    load = dict(max_pixels=options.max_pixels)
    b_show, a_show = plan.show(candidate.before), plan.show(candidate.after)
    if candidate.split:
        try:
            whole = load_image(candidate.before, **load)
            before, after = split_side_by_side(whole.image)
            _check_min_side(before.size, options.smallest_side, "each half")
        except ImageRejected as error:
            return [Problem("invalid_image", [b_show], error.reason)]
        source = {"file": b_show, "sha256": whole.sha256}
        res = options.resolution
        return encode_png(center_square(before, res)), encode_png(center_square(after, res)), source
    loaded, problems = {}, []
    for key, path, shown in (("before", candidate.before, b_show), ("after", candidate.after, a_show)):
        try:
            loaded[key] = load_image(
                path, min_side=options.smallest_side, draft_side=options.resolution, **load
            )
        except ImageRejected as error:
            problems.append(Problem("invalid_image", [shown], error.reason))
    if problems:
        bad = {p.paths[0] for p in problems}
        for key, shown in (("before", b_show), ("after", a_show)):
            if shown not in bad:
                problems.append(Problem("pair_rejected", [shown], f"its {_other(key)} image was rejected"))
        return problems
    try:
        before, after = fit_pair(
            loaded["before"].image, loaded["after"].image, options.resolution, options.max_aspect_diff
        )
    except ImageRejected as error:
        return [Problem("pair_rejected", [b_show, a_show], error.reason)]
    source = {"before": b_show, "after": a_show}
    source.update(before_sha256=loaded["before"].sha256, after_sha256=loaded["after"].sha256)
    return encode_png(before), encode_png(after), source


def _other(key: str) -> str:
    return "after" if key == "before" else "before"


def _check_min_side(size: tuple[int, int], min_side: int, what: str) -> None:
    if min(size) < min_side:
        raise ImageRejected(
            f"too small: {what} is {size[0]}x{size[1]}, the shorter side must be at least {min_side} pixels"
        )


def _unique_id(name: str, taken: set[str]) -> str:
    """A manifest-safe id from a file stem: unsafe characters become '_', clashes get '-2', '-3', ..."""
    base = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:100] or "pair"
    if not re.match(r"[A-Za-z0-9_]", base[0]):
        base = "_" + base
    pair_id, n = base, 1
    while pair_id in taken:
        n += 1
        pair_id = f"{base}-{n}"
    taken.add(pair_id)
    return pair_id
