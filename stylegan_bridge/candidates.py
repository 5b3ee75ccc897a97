"""The folder `concept-transfer discover` writes, and its loader (what `library build` reads).

    cand/
      candidates.json          the ranked candidates (below); deterministic from the settings
      directions.safetensors   the kept w directions, best first, as a direction file
                               (`stylegan_bridge.direction_file`, method "discover"), so that
                               `mine --direction cand/directions.safetensors --index I --delta D` mines one
      sheets/<name>.png        one contact sheet per candidate: rows = seeds, columns = delta x (-1 .. 1)
      overview.png             every candidate by rank: -delta, 0, +delta on two seeds

candidates.json:

    {"format": "concept-transfer.candidates/1",
     "generator": {"file", "sha256", "resolution", "w_dim", "layers"},   sha256 of the generator file
     "settings": {"seed", "samples", "seeds", "layers", "delta", "w_delta", "components", "w_methods",
                  "w_samples", "psi", "threshold", "map_size", "w_weight", "top", "stats": {...}},
     "candidates": [
        {"rank": 1, "name": "L3_72_64.c0", "kind": "channel", "layer": "L3_72_64", "layer_index": 3,
         "channel": 0, "delta": 2.0, "scores": {"effect", "concentration", "distinctness", "total"},
         "sheet": "sheets/L3_72_64.c0.png"},
        {"rank": 2, "name": "ica1", "kind": "w_direction", "direction_file": "directions.safetensors",
         "direction_index": 0, "sigma": 0.42, "ws": [1, 2, ...], "delta": 2.0, "scores": {...},
         "sheet": "sheets/ica1.png"},
        ...]}

`delta` is in the units `mine` takes: channel stds for a channel (`mine --layer L --channel C --delta D`,
sigma_c from the style statistics of `settings.stats`), units of the direction's `sigma` (the std of w
along it) for a w direction (`mine --direction FILE --index I --delta D`). `ws` (w directions, when not
every w): the ws the offset is added to, 0 = the input block (also in the direction file). Paths are
relative to the folder. Scores are rounded to 6 significant digits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from pair_datasets.atomic import atomic_write_text
from stylegan_bridge.direction_file import DirectionFile, generator_summary, load_directions, save_directions
from stylegan_bridge.discovery import KINDS, Candidate
from stylegan_bridge.edits import Edit, channel_edit
from stylegan_bridge.style_space import StyleStats

FORMAT = "concept-transfer.candidates/1"
CANDIDATES_FILE = "candidates.json"
DIRECTIONS_FILE = "directions.safetensors"
SHEETS_DIR = "sheets"
OVERVIEW_FILE = "overview.png"
SCORE_KEYS = ("effect", "concentration", "distinctness", "total")


@dataclass(frozen=True)
class CandidateEntry:
    """One entry of candidates.json, validated; paths resolved against the folder."""

    rank: int
    name: str
    kind: str
    delta: float
    scores: dict[str, float]
    layer: str | None = None
    layer_index: int | None = None
    channel: int | None = None
    direction_file: Path | None = None
    direction_index: int | None = None
    sigma: float | None = None
    sheet: Path | None = None

    def to_edit(self, G: nn.Module, stats: StyleStats | None = None) -> Edit:
        """The edit at delta = 1 (a channel needs the style statistics for sigma_c); render it at `delta`."""
        if self.kind == "channel":
            if stats is None:
                raise ValueError(f"candidate {self.name!r}: a channel edit needs style statistics")
            return channel_edit(G, self.layer, int(self.channel), stats)
        data = load_directions(self.direction_file)
        return data.pick(int(self.direction_index), str(self.direction_file)).to_edit(G)


@dataclass(frozen=True)
class CandidateSet:
    """A loaded candidates.json: its path, generator, settings and entries by rank."""

    path: Path
    generator: dict[str, Any]
    settings: dict[str, Any]
    entries: list[CandidateEntry]


def generator_record(G: nn.Module, path: Path, sha256: str) -> dict[str, Any]:
    """What candidates.json records about the generator (the sha256 is what loaders check)."""
    summary = generator_summary(G)
    return {
        "file": Path(path).name,
        "sha256": sha256,
        "resolution": int(G.img_resolution),
        "w_dim": summary["w_dim"],
        "layers": summary["layers"],
    }


def candidate_record(candidate: Candidate, rank: int, direction_index: int | None) -> dict[str, Any]:
    """One entry of candidates.json (format in the module docstring)."""
    entry: dict[str, Any] = {"rank": rank, "name": candidate.name, "kind": candidate.kind}
    if candidate.kind == "channel":
        entry.update(layer=candidate.layer, layer_index=candidate.layer_index, channel=candidate.channel)
    else:
        entry.update(
            direction_file=DIRECTIONS_FILE,
            direction_index=direction_index,
            sigma=_round(candidate.direction.sigma),
        )
        if candidate.direction.ws is not None:
            entry["ws"] = list(candidate.direction.ws)
    entry["delta"] = _round(candidate.delta)
    entry["scores"] = {key: _round(value) for key, value in candidate.scores().items()}
    entry["sheet"] = f"{SHEETS_DIR}/{candidate.name}.png"
    return entry


def write_candidates(
    out: Path,
    candidates: Sequence[Candidate],
    generator: Mapping[str, Any],
    settings: Mapping[str, Any],
    G: nn.Module,
) -> Path:
    """Write candidates.json and (when any w direction was kept) directions.safetensors; returns the json path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    directions = [c.direction for c in candidates if c.kind == "w_direction"]
    records, next_index = [], 0
    for rank, candidate in enumerate(candidates, start=1):
        records.append(candidate_record(candidate, rank, next_index if candidate.kind != "channel" else None))
        next_index += candidate.kind != "channel"
    if directions:
        details = {"settings": dict(settings), "names": [d.name for d in directions]}
        save_directions(
            out / DIRECTIONS_FILE, DirectionFile("discover", directions, details, generator_summary(G))
        )
    document = {
        "format": FORMAT,
        "generator": dict(generator),
        "settings": dict(settings),
        "candidates": records,
    }
    path = out / CANDIDATES_FILE
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    return path


def load_candidates(path: Path, G_sha256: str | None = None) -> CandidateSet:
    """Read and validate candidates.json (a file or its folder); ValueError naming the file when it is wrong.

    With `G_sha256`, a file discovered on another generator (another sha256) is refused.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CANDIDATES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: candidates file not found (run `concept-transfer discover`)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a candidates file (not JSON: {error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path}: not a candidates file ('format' is not {FORMAT!r})")
    generator, settings = document.get("generator"), document.get("settings")
    if not isinstance(generator, dict) or not isinstance(generator.get("sha256"), str):
        raise ValueError(f"{path}: 'generator' must be an object with the generator file's 'sha256'")
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: 'settings' must be an object")
    if G_sha256 is not None and generator["sha256"] != G_sha256:
        raise ValueError(
            f"{path}: discovered on another generator ({generator.get('file', '?')}, sha256 "
            f"{generator['sha256'][:12]}), not this one (sha256 {G_sha256[:12]}); run discover on it"
        )
    records = document.get("candidates")
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path}: 'candidates' must be a non-empty list")
    entries = [_entry(path, i, record) for i, record in enumerate(records)]
    return CandidateSet(path, generator, settings, entries)


def _entry(path: Path, i: int, record: Any) -> CandidateEntry:
    """One validated entry; ValueError naming the file and `candidates[i]`."""
    where = f"{path}: candidates[{i}]"
    if not isinstance(record, dict):
        raise ValueError(f"{where} is not an object")
    if record.get("rank") != i + 1:
        raise ValueError(f"{where}: 'rank' must be {i + 1} (entries are listed by rank)")
    if record.get("kind") not in KINDS:
        raise ValueError(f"{where}: 'kind' must be one of {list(KINDS)}, got {record.get('kind')!r}")
    needed = ("layer", "channel") if record["kind"] == "channel" else ("direction_file", "direction_index")
    for key in ("name", "delta", "scores", *needed):
        if record.get(key) is None:
            raise ValueError(f"{where}: missing {key!r}")
    delta = record["delta"]
    if (
        isinstance(delta, bool)
        or not isinstance(delta, (int, float))
        or not (delta > 0 and math.isfinite(delta))
    ):
        raise ValueError(f"{where}: 'delta' must be a finite number > 0, got {delta!r}")
    scores = record["scores"]
    if not isinstance(scores, dict) or set(SCORE_KEYS) - set(scores):
        raise ValueError(f"{where}: 'scores' must hold {', '.join(SCORE_KEYS)}")
    for key in ("channel", "direction_index", "layer_index"):
        if record.get(key) is not None and (
            isinstance(record[key], bool) or not isinstance(record[key], int)
        ):
            raise ValueError(f"{where}: {key!r} must be an integer, got {record[key]!r}")
    folder = path.parent
    direction_file = folder / record["direction_file"] if record.get("direction_file") else None
    if direction_file is not None and not direction_file.is_file():
        raise FileNotFoundError(f"{where}: direction file {direction_file} not found")
    return CandidateEntry(
        rank=record["rank"],
        name=str(record["name"]),
        kind=record["kind"],
        delta=float(delta),
        scores={key: float(scores[key]) for key in SCORE_KEYS},
        layer=record.get("layer"),
        layer_index=record.get("layer_index"),
        channel=record.get("channel"),
        direction_file=direction_file,
        direction_index=record.get("direction_index"),
        sigma=record.get("sigma"),
        sheet=folder / record["sheet"] if record.get("sheet") else None,
    )


def _round(value: float | None) -> float | None:
    """6 significant digits: readable, and the same file from the same run on the same machine."""
    return None if value is None else float(f"{float(value):.6g}")
