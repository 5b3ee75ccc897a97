"""Paths typed in the page stay inside the folders the studio was started with.

The page must not become a way to read any file on the machine. A typed path is resolved (relative
paths against the folder the server started in; `~`, symlinks and `..` followed to the real path) and
accepted only when the real path lies inside one of the allowed roots: the folders of the sliders the
studio was started with, the library folder and the output folder. The check happens before any
existence test, so a refused path tells nothing about what lies outside.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class OutsideAllowedFolders(PermissionError):
    """A typed path that resolves outside every allowed folder."""


@dataclass(frozen=True)
class PathGuard:
    """The allowed roots (real paths) and the folder relative paths start from."""

    roots: tuple[Path, ...]
    base: Path

    @classmethod
    def of(cls, folders: Iterable[Path], base: Path | None = None) -> PathGuard:
        """A guard over `folders` (resolved, duplicates and folders inside others dropped)."""
        real = sorted({Path(folder).expanduser().resolve() for folder in folders}, key=lambda p: len(p.parts))
        roots: list[Path] = []
        for folder in real:
            if not any(folder.is_relative_to(root) for root in roots):
                roots.append(folder)
        return cls(tuple(roots), (base or Path.cwd()).resolve())

    def allows(self, real: Path) -> bool:
        """Whether an already resolved path lies inside an allowed root."""
        return any(real == root or real.is_relative_to(root) for root in self.roots)

    def resolve(self, text: str, what: str = "path") -> Path:
        """The real path that `text` names; refused (PermissionError) unless inside an allowed root."""
        text = (text or "").strip()
        if not text:
            raise ValueError(f"{what}: empty; type a file or folder path")
        if "\x00" in text:
            raise ValueError(f"{what} {text!r}: contains a NUL character")
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = self.base / candidate
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError) as error:  # symlink loops, unreadable components
            raise ValueError(f"{what} {text}: cannot be resolved ({error})") from None
        if not self.allows(real):
            allowed = ", ".join(str(root) for root in self.roots) or "none"
            raise OutsideAllowedFolders(
                f"{what} {text}: outside the folders this studio was started with ({allowed})"
            )
        if not real.exists():
            raise FileNotFoundError(f"{what} {text}: no such file or folder")
        return real
