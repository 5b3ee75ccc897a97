"""Atomic file writes: readers see the old file or the complete new one, never a half-written file.

Every output of the toolkit (corpora, caches, slider files, previews, checkpoints) goes through here:

    with atomic_write(path) as out:             # a binary file object ("w" for text, UTF-8)
        out.write(data)
    atomic_write_bytes(path, data)
    atomic_write_text(path, text)
    atomic_save(path, lambda tmp: save_file(tensors, tmp))   # libraries that write by file name

The data goes to a temporary file in the same folder (same file system, so the final rename is atomic),
is flushed and fsynced, and then `os.replace`s the target. On any error the temporary file is removed and
an existing target is left untouched. The parent folder must exist (callers create it where they mean to).

Unlike `tempfile.mkstemp`, which creates files with mode 0600, the temporary file is created with
0666 and the operating system applies the umask (and any default ACL) exactly as for `open(path, "w")`,
so outputs are readable by the group and others whenever the user's umask allows it (022 -> 0644).

This module uses only the standard library, so every package may import it cheaply.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

# O_EXCL: never open a file someone else created; O_NOFOLLOW: never write through a planted symlink.
_CREATE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_ATTEMPTS = 100


def temp_path_for(path: str | Path) -> Path:
    """A fresh hidden name beside `path` that keeps its suffix (libraries pick formats from it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create and open a new empty temporary file beside `path` with mode 0666 & ~umask."""
    for _ in range(_ATTEMPTS):
        tmp = temp_path_for(path)
        try:
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: could not create a temporary file in {path.parent}")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(
    path: str | Path, mode: str = "wb", *, encoding: str | None = None, fsync: bool = True
) -> Iterator[IO[Any]]:
    """Yield a file object whose content replaces `path` atomically when the block ends without error.

    `mode` is "wb" (bytes) or "w" (text, `encoding` defaults to UTF-8). With `fsync=False` the data
    is not forced to disk before the rename (faster for throw-away files; still atomic for readers).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    with _about(path):
        fd, tmp = _create_temp(path)
    try:
        if mode == "w":
            stream: IO[Any] = os.fdopen(fd, "w", encoding=encoding or "utf-8")
        else:
            stream = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with _about(path), stream:
            yield stream
            stream.flush()
            if fsync:
                os.fsync(stream.fileno())
        with _about(path):
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def _about(path: Path) -> Iterator[None]:
    """Re-raise the system's refusal to write (a full disk, a read-only folder) as an error about `path`.

    The temporary file's name means nothing to the user; errors that name another file pass unchanged.
    """
    try:
        yield
    except OSError as error:
        if error.errno is None or not _names_target(error.filename, path):
            raise
        raise OSError(error.errno, f"could not write it ({error.strerror})", str(path)) from error


def _names_target(filename: object, path: Path) -> bool:
    """Whether an error's file name is `path`, one of its temporary files, or none (a write to an open file)."""
    if filename is None:
        return True
    named = Path(os.fsdecode(filename))
    return named == path or (named.parent == path.parent and named.name.startswith(f".{path.stem}."))


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace `path` with `data` atomically."""
    with atomic_write(path, "wb", fsync=fsync) as out:
        out.write(data)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8", fsync: bool = True) -> None:
    """Replace `path` with `text` (UTF-8 by default) atomically."""
    with atomic_write(path, "w", encoding=encoding, fsync=fsync) as out:
        out.write(text)


def atomic_save(path: str | Path, writer: Callable[[Path], object], *, fsync: bool = True) -> Path:
    """Let `writer(tmp)` write a temporary file by name, then move it over `path`; returns `path`.

    For libraries that only write to a file name (`safetensors.torch.save_file`, `torch.save`,
    `Image.save`, `Figure.savefig`). `tmp` lies beside `path`, has the same suffix and exists empty
    (with the umask's mode) when `writer` is called; the writer may overwrite or replace it, and the
    file keeps that mode either way.
    """
    path = Path(path)
    with _about(path):
        fd, tmp = _create_temp(path)
    try:
        with _about(path):
            try:
                mode = stat.S_IMODE(os.fstat(fd).st_mode)  # 0666 & ~umask, as the OS applied it
            finally:
                os.close(fd)
            writer(tmp)
            # Some writers replace the file instead of writing into it (safetensors' save_file leaves 0600).
            if stat.S_IMODE(os.stat(tmp).st_mode) != mode:
                os.chmod(tmp, mode)
            if fsync:
                _fsync_path(tmp)
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
