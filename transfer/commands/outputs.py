"""A command's outputs: checked before any model loads, and never replaced unless the user asks.

A run of hours must not fail at its first save because `--out` names a folder that cannot be made or
written, and a second run must not silently replace the work of the first. The one rule of every
command that writes a user-named file: refuse, naming `--force` (or `--resume` where a run can be
continued), rather than destroy work.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path


def check_writable_folder(folder: Path, option: str, target: Path) -> None:
    """OSError naming `option target` unless `folder` exists or can be made, and accepts new files.

    Nothing is left behind: the probe is a temporary folder made (and removed) in the nearest folder
    that exists, which is where the command will create its first file or folder.
    """
    existing = Path(folder).absolute()
    while not existing.exists() and not existing.is_symlink():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{option} {target}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryDirectory(dir=existing, prefix=".concept-transfer-probe-"):
            pass
    except OSError as error:
        raise PermissionError(
            f"{option} {target}: cannot create files in {existing} ({error.strerror or error})"
        ) from None


def check_output_file(path: Path, option: str, companions: Iterable[Path] = ()) -> None:
    """`path` (and the `companions` written beside it) can be written: not folders, in a writable folder."""
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path}: is a folder; name the file to write inside it")
    for companion in companions:
        if companion.is_dir():
            raise IsADirectoryError(f"{companion}: is a folder, but {option} {path} writes this file")
    check_writable_folder(path.parent, option, path)


def check_output_folder(folder: Path, option: str) -> None:
    """`folder` is a folder or can be made, and accepts new files."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{option} {folder}: is a file, not a folder")
    check_writable_folder(folder, option, folder)


def refuse_to_replace(path: Path, option: str, force: bool) -> None:
    """FileExistsError naming --force when `path` exists (for a folder: holds anything) and `force` is off."""
    if force or not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    what = "is a folder that is not empty" if path.is_dir() else "exists"
    raise FileExistsError(f"{option} {path}: {what}; pass --force to replace it, or choose another {option}")
