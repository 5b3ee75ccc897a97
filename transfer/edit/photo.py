"""The photo to edit: read safely and brought to the model's square size the way `pairs ingest` does.

One size policy in the toolkit (`pair_datasets.images`): the file is checked before decoding (size,
pixel count from the header, so a decompression bomb is refused unread), EXIF-transposed, converted to
RGB, centre-cropped to its largest square and resized with Lanczos. The output states what was kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pair_datasets.images import ImageRejected, center_square, load_image


@dataclass(frozen=True)
class Photo:
    """A photo ready to invert: the square RGB image, the hash of the file's bytes and how it was fitted."""

    image: Image.Image
    sha256: str
    original_size: tuple[int, int]  # (W, H) of the upright file; the centred min(W, H) square was kept

    @property
    def size(self) -> int:
        """The side of the square that is edited."""
        return self.image.size[0]

    def describe(self) -> dict[str, Any]:
        """JSON-ready account of how the file became the edited square."""
        return {
            "sha256": self.sha256,
            "original_size": list(self.original_size),
            "crop": "centre square" if len(set(self.original_size)) > 1 else "none",
            "size": [self.size, self.size],
            "statement": self.statement(),
        }

    def statement(self) -> str:
        """One line for the user: what was cropped and resized."""
        width, height = self.original_size
        side = min(width, height)
        crop = "" if width == height else f", centre square {side}x{side} kept"
        resize = "" if side == self.size else f", resized to {self.size}x{self.size}"
        return f"photo {width}x{height}{crop}{resize}"


def load_photo(path: Path, resolution: int) -> Photo:
    """Read `path` (never modified) and fit it to `resolution` x `resolution`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--image {path}: no such file")
    if resolution < 8:
        raise ValueError(f"--image {path}: cannot edit at {resolution}x{resolution} pixels")
    try:
        source = load_image(path)
    except ImageRejected as error:
        raise ValueError(f"--image {path}: {error.reason}") from None
    return Photo(center_square(source.image, resolution), source.sha256, source.image.size)
