"""Helpers for pair_datasets tests: small synthetic images written with PIL into tmp_path."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_image(path: Path, size=(48, 48), color=(200, 40, 40), fmt: str | None = None, **save_kw) -> Path:
    """Write an RGB image of `size` tinted by `color` with a gradient (so crops and flips are visible)."""
    w, h = size
    ramp = np.linspace(0.5, 1.0, w, dtype=np.float32)[None, :, None]
    array = (np.ones((h, w, 3), np.float32) * np.array(color, np.float32) * ramp).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt, **save_kw)
    return path


def tree_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root` by relative path (to prove sources are untouched)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def image_factory():
    """The `make_image` helper as a fixture."""
    return make_image


@pytest.fixture
def hash_tree():
    """The `tree_hashes` helper as a fixture."""
    return tree_hashes


def png_header_bytes(width: int, height: int) -> bytes:
    """A valid PNG claiming `width x height` with ~100 bytes of data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def png_header():
    """The `png_header_bytes` helper as a fixture."""
    return png_header_bytes
