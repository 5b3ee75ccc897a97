"""The pair corpus: a folder of before/after PNGs, a `manifest.jsonl` and a `corpus.json` (DESIGN §4).

A pair exists only once its manifest line exists: `append` writes the two images atomically first and
then appends one flushed line, so an interrupted writer leaves at most orphan images, never a manifest
line that points nowhere. Resumable writers skip the ids already in `corpus.ids()`.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from pair_datasets.atomic import atomic_write_bytes
from pair_datasets.images import to_rgb

MANIFEST = "manifest.jsonl"
INFO_FILE = "corpus.json"
BEFORE_DIR = "before"
AFTER_DIR = "after"
# Ids become file names, so they are restricted to characters that are safe on every file system.
PAIR_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
# PNG level 1: a few times faster to write than the default and only a little larger on disk; the
# StyleGAN3 bridge writes thousands of 1024x1024 pairs.
PNG_COMPRESS_LEVEL = 1


def tool_version() -> str:
    """Version of the installed concept-transfer distribution, or "unknown" when run from a bare tree."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("concept-transfer")
    except PackageNotFoundError:
        return "unknown"


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class CorpusInfo:
    """What `corpus.json` records: name, training resolution, provenance, creation time, tool version."""

    name: str
    resolution: int
    provenance: dict = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    tool_version: str = field(default_factory=tool_version)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"{INFO_FILE}: field 'name' must be a non-empty string, got {self.name!r}")
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution <= 0:
            raise ValueError(
                f"{INFO_FILE}: field 'resolution' must be a positive integer, got {self.resolution!r}"
            )
        if not isinstance(self.provenance, dict):
            raise ValueError(f"{INFO_FILE}: field 'provenance' must be an object, got {self.provenance!r}")
        for name in ("created", "tool_version"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{INFO_FILE}: field '{name}' must be a string")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to `corpus.json`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> CorpusInfo:
        """Parse `corpus.json`; unknown or missing fields are errors naming the field."""
        if not isinstance(data, dict):
            raise ValueError(f"{INFO_FILE}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{INFO_FILE}: unknown field(s) {unknown}; known: {sorted(known)}")
        for name in ("name", "resolution"):
            if name not in data:
                raise ValueError(f"{INFO_FILE}: missing field '{name}'")
        return cls(**data)


@dataclass(frozen=True)
class PairRecord:
    """One manifest line: `before`/`after` are POSIX paths relative to the corpus folder."""

    id: str
    before: str
    after: str
    level: float = 1.0
    caption: str | None = None
    source: dict = field(default_factory=dict)

    def to_json(self) -> str:
        """One manifest line (no newline); `caption` is left out when there is none."""
        data: dict[str, Any] = {"id": self.id, "before": self.before, "after": self.after}
        data["level"] = self.level
        if self.caption is not None:
            data["caption"] = self.caption
        data["source"] = self.source
        try:
            return json.dumps(data, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"pair {self.id!r}: 'source' must be plain JSON data ({error})") from None


def check_relpath(relpath: str, where: str) -> str:
    """Return `relpath` if it is a relative POSIX path that stays inside the corpus, else ValueError."""
    if not isinstance(relpath, str) or not relpath:
        raise ValueError(f"{where}: must be a non-empty relative path, got {relpath!r}")
    pure = PurePosixPath(relpath)
    if "\\" in relpath or pure.is_absolute() or re.match(r"^[A-Za-z]:", relpath):
        raise ValueError(f"{where}: path {relpath!r} must be relative to the corpus folder")
    if ".." in pure.parts:
        raise ValueError(f"{where}: path {relpath!r} leaves the corpus folder")
    return relpath


def is_level(value: Any) -> bool:
    """Whether `value` is a valid pair level: a positive, finite number (not a bool)."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def parse_manifest_line(text: str, line_no: int) -> PairRecord:
    """Parse one manifest line into a PairRecord; ValueError names `manifest.jsonl line N` and the field."""
    where = f"{MANIFEST} line {line_no}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    allowed = {"id", "before", "after", "level", "caption", "source"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}")
    for name in ("id", "before", "after"):
        if name not in data:
            raise ValueError(f"{where}: missing field '{name}'")
    pair_id = data["id"]
    if not isinstance(pair_id, str) or not PAIR_ID_PATTERN.match(pair_id):
        raise ValueError(f"{where}: field 'id' must match {PAIR_ID_PATTERN.pattern}, got {pair_id!r}")
    before = check_relpath(data["before"], f"{where}: field 'before'")
    after = check_relpath(data["after"], f"{where}: field 'after'")
    level = data.get("level", 1.0)
    if not is_level(level):
        raise ValueError(f"{where}: field 'level' must be a positive number, got {level!r}")
    caption = data.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise ValueError(f"{where}: field 'caption' must be a string, got {caption!r}")
    source = data.get("source", {})
    if not isinstance(source, dict):
        raise ValueError(f"{where}: field 'source' must be an object, got {source!r}")
    return PairRecord(pair_id, before, after, float(level), caption, source)


def iter_manifest(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) for each non-blank manifest line; a final line without newline too."""
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                yield line_no, line


def read_info(root: Path) -> CorpusInfo:
    """Read and validate `corpus.json` in `root`."""
    path = root / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (is {root} a pair corpus?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    try:
        return CorpusInfo.from_dict(data)
    except ValueError as error:  # name the full path, not just "corpus.json"
        raise ValueError(f"{path}: {str(error).removeprefix(INFO_FILE + ': ')}") from None


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of `image` converted to RGB, at the corpus's fast compression level."""
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def png_size(data: bytes, what: str) -> tuple[int, int]:
    """(width, height) from PNG bytes; ValueError naming `what` if they are not a PNG."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise ValueError(f"{what}: expected PNG bytes, got {image.format}")
            return image.size
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{what}: not readable PNG bytes ({error})") from None


def _read_manifest(manifest: Path) -> tuple[list[PairRecord], bool]:
    """The records of a manifest and whether its last line lacks its newline; ValueError names line and field."""
    records: list[PairRecord] = []
    seen: dict[str, int] = {}
    needs_newline = False
    for line_no, text in iter_manifest(manifest):
        needs_newline = not text.endswith("\n")
        if needs_newline:
            try:
                parse_manifest_line(text, line_no)
            except ValueError:
                raise ValueError(
                    f"{MANIFEST} line {line_no}: incomplete last line (an interrupted append?); "
                    "delete that line to resume"
                ) from None
        record = parse_manifest_line(text, line_no)
        if record.id in seen:
            raise ValueError(
                f"{MANIFEST} line {line_no}: field 'id' {record.id!r} duplicates line {seen[record.id]}"
            )
        seen[record.id] = line_no
        records.append(record)
    return records, needs_newline


class Corpus:
    """A pair corpus folder: create or open it, append pairs, read records (DESIGN §4)."""

    def __init__(self, root: Path, info: CorpusInfo, records: list[PairRecord]) -> None:
        self.root = Path(root)
        self.info = info
        self._records = records
        self._ids = {record.id for record in records}
        # Set by `open` when the manifest's last line has no newline, so `append` starts a new line.
        self._needs_newline = False

    @classmethod
    def create(cls, root: Path, info: CorpusInfo) -> Corpus:
        """Make a new corpus folder (it may exist if empty); error if a corpus is already there."""
        root = Path(root)
        if (root / INFO_FILE).exists() or (root / MANIFEST).exists():
            raise FileExistsError(f"{root}: a pair corpus already exists there")
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"{root}: exists and is not a folder")
        try:
            text = json.dumps(info.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        except (TypeError, ValueError) as error:
            raise ValueError(f"{INFO_FILE}: field 'provenance' must be plain JSON data ({error})") from None
        root.mkdir(parents=True, exist_ok=True)
        (root / BEFORE_DIR).mkdir(exist_ok=True)
        (root / AFTER_DIR).mkdir(exist_ok=True)
        (root / MANIFEST).touch()
        # corpus.json last: a folder with corpus.json is a complete, openable corpus.
        atomic_write_bytes(root / INFO_FILE, text.encode("utf-8"))
        return cls(root, info, [])

    @classmethod
    def open(cls, root: Path) -> Corpus:
        """Open an existing corpus; ValueError naming the file, line and field if anything is broken."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such corpus folder")
        info = read_info(root)
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest}: not found")
        try:
            records, needs_newline = _read_manifest(manifest)
        except UnicodeDecodeError as error:
            raise ValueError(f"{manifest}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        except ValueError as error:  # name the full path, not just "manifest.jsonl"
            raise ValueError(f"{manifest}{str(error).removeprefix(MANIFEST)}") from None
        corpus = cls(root, info, records)
        corpus._needs_newline = needs_newline
        return corpus

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"Corpus({str(self.root)!r}, name={self.info.name!r}, pairs={len(self)})"

    def records(self) -> list[PairRecord]:
        """All pairs in manifest order (a copy)."""
        return list(self._records)

    def ids(self) -> set[str]:
        """The ids already in the manifest (resumable writers skip these)."""
        return set(self._ids)

    def path_of(self, relpath: str) -> Path:
        """Absolute path of a corpus-relative POSIX path; ValueError if it would leave the corpus."""
        check_relpath(relpath, "corpus path")
        root = self.root.resolve()
        path = (root / relpath).resolve()
        # resolve() follows symbolic links, so a link pointing out of the corpus is refused too.
        if path != root and root not in path.parents:
            raise ValueError(f"corpus path {relpath!r} leaves the corpus folder {self.root}")
        return path

    def append(
        self,
        pair_id: str,
        before: Image.Image,
        after: Image.Image,
        level: float = 1.0,
        caption: str | None = None,
        source: dict | None = None,
    ) -> PairRecord:
        """Write `before/<id>.png` and `after/<id>.png` atomically, then append one flushed manifest line."""
        self._check_new(pair_id, level)
        if before.size != after.size:
            raise ValueError(f"pair {pair_id!r}: before is {before.size} but after is {after.size}")
        return self.append_png(pair_id, encode_png(before), encode_png(after), level, caption, source)

    def append_png(
        self,
        pair_id: str,
        before_png: bytes,
        after_png: bytes,
        level: float = 1.0,
        caption: str | None = None,
        source: dict | None = None,
    ) -> PairRecord:
        """`append` for images already encoded by `encode_png`, so writers can encode on worker threads."""
        self._check_new(pair_id, level)
        before_size = png_size(before_png, f"pair {pair_id!r} before")
        after_size = png_size(after_png, f"pair {pair_id!r} after")
        if before_size != after_size:
            raise ValueError(f"pair {pair_id!r}: before is {before_size} but after is {after_size}")
        record = PairRecord(
            id=pair_id,
            before=f"{BEFORE_DIR}/{pair_id}.png",
            after=f"{AFTER_DIR}/{pair_id}.png",
            level=float(level),
            caption=caption,
            source=dict(source or {}),
        )
        line = record.to_json() + "\n"  # serialise first: an unserialisable source fails before any write
        atomic_write_bytes(self.root / record.before, before_png)
        atomic_write_bytes(self.root / record.after, after_png)
        with open(self.root / MANIFEST, "a", encoding="utf-8") as handle:
            handle.write(("\n" if self._needs_newline else "") + line)
            handle.flush()
            os.fsync(handle.fileno())
        self._needs_newline = False
        self._records.append(record)
        self._ids.add(pair_id)
        return record

    def _check_new(self, pair_id: str, level: float) -> None:
        """ValueError unless `pair_id` is a safe, unused id and `level` a positive finite number."""
        if not isinstance(pair_id, str) or not PAIR_ID_PATTERN.match(pair_id):
            raise ValueError(f"pair id {pair_id!r} must match {PAIR_ID_PATTERN.pattern}")
        if pair_id in self._ids:
            raise ValueError(f"pair id {pair_id!r} is already in {self.root / MANIFEST}")
        if not is_level(level):
            raise ValueError(f"pair {pair_id!r}: level must be a positive number, got {level!r}")

    def to_hf_dataset(self):
        """A Hugging Face `datasets.Dataset` (columns id, before, after, level, caption); needs `datasets`."""
        try:
            import datasets
        except ImportError as error:
            raise ImportError(
                "Corpus.to_hf_dataset needs the `datasets` package: pip install datasets"
            ) from error
        columns = {
            "id": [r.id for r in self._records],
            "before": [str(self.path_of(r.before)) for r in self._records],
            "after": [str(self.path_of(r.after)) for r in self._records],
            "level": [r.level for r in self._records],
            "caption": [r.caption for r in self._records],
        }
        features = datasets.Features(
            {
                "id": datasets.Value("string"),
                "before": datasets.Image(),
                "after": datasets.Image(),
                "level": datasets.Value("float32"),
                "caption": datasets.Value("string"),
            }
        )
        return datasets.Dataset.from_dict(columns, features=features)
