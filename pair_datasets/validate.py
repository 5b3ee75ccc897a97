"""Check a pair corpus and list every problem instead of stopping at the first; every image is decoded."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pair_datasets.corpus import MANIFEST, PairRecord, iter_manifest, parse_manifest_line, read_info


def validate_corpus(root: Path) -> list[str]:
    """Human-readable problems of the corpus at `root` (empty if fine): files, manifest lines, sizes, ids."""
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: no such corpus folder"]
    problems: list[str] = []
    try:
        read_info(root)
    except (ValueError, FileNotFoundError) as error:
        problems.append(str(error))
    manifest = root / MANIFEST
    if not manifest.is_file():
        return [*problems, f"{manifest}: not found"]
    seen: dict[str, int] = {}
    real_root = root.resolve()
    try:
        lines = list(iter_manifest(manifest))
    except UnicodeDecodeError as error:
        return [*problems, f"{MANIFEST}: not UTF-8 text ({error})"]
    for line_no, text in lines:
        try:
            record = parse_manifest_line(text, line_no)
        except ValueError as error:
            problems.append(str(error))
            continue
        if record.id in seen:
            problems.append(
                f"{MANIFEST} line {line_no}: duplicate id {record.id!r} (first on line {seen[record.id]})"
            )
        else:
            seen[record.id] = line_no
        problems.extend(_check_pair_files(real_root, record, line_no))
    return problems


def _check_pair_files(root: Path, record: PairRecord, line_no: int) -> list[str]:
    """Problems with the two image files of one record: leaving the corpus, missing, unreadable, sizes."""
    where = f"{MANIFEST} line {line_no} (pair {record.id!r})"
    problems: list[str] = []
    sizes: dict[str, tuple[int, int]] = {}
    for field_name, relpath in (("before", record.before), ("after", record.after)):
        path = (root / relpath).resolve()
        if root not in path.parents:
            problems.append(f"{where}: field '{field_name}' path {relpath!r} leaves the corpus folder")
            continue
        if not path.is_file():
            problems.append(f"{where}: {field_name} file {relpath} is missing")
            continue
        try:
            with Image.open(path) as image:
                image.load()  # the whole image: a truncated file has a good header and breaks training
                sizes[field_name] = image.size
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            problems.append(f"{where}: {field_name} file {relpath} is not a readable image ({error})")
    if len(sizes) == 2 and sizes["before"] != sizes["after"]:
        (bw, bh), (aw, ah) = sizes["before"], sizes["after"]
        problems.append(f"{where}: size mismatch, before is {bw}x{bh} but after is {aw}x{ah}")
    return problems
