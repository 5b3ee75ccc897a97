"""Safe image loading for user artwork, RGB conversion, and the one pair size policy.

Size policy (the only one): both images of a pair are EXIF-transposed, converted to RGB, center-cropped
to their largest centered square and resized (Lanczos) to `resolution x resolution`. Before that, a pair
whose aspect ratios (width / height) differ by more than `max_aspect_diff` (relative, default 5%) is
rejected, because cropping the two differently shaped images identically would misalign their content.
Images whose shorter side is below `min_side` are rejected rather than blown up.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
# 64 megapixels (8192 x 8192): far above any training resolution, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
# A file larger than this is refused before it is read into memory.
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_ASPECT_DIFF = 0.05
# A training resolution (pixels, square): the VAE's 8x reduction must leave whole latents, and a latent
# under 2x2 cannot be denoised. Each model adds its own finer rule (SDXL: multiples of 32).
RESOLUTION_STEP = 8
MIN_RESOLUTION = 16


class ImageRejected(ValueError):
    """A source image (or pair) that ingest refuses; `reason` is the human-readable cause."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_resolution(value: object, where: str) -> int:
    """`value` if it is a training resolution (a multiple of 8, at least 16), else ValueError naming `where`.

    The one rule of ingest, mining and training: a corpus is never made at a size training refuses.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: must be an integer number of pixels, got {value!r}")
    if value < MIN_RESOLUTION or value % RESOLUTION_STEP:
        raise ValueError(
            f"{where}: must be a multiple of {RESOLUTION_STEP} and at least {MIN_RESOLUTION}, got {value}"
        )
    return value


@dataclass
class SourceImage:
    """A decoded, validated source image: RGB, upright, plus the hash of the file bytes."""

    image: Image.Image
    sha256: str
    original_size: tuple[int, int]


def is_image_name(path: Path) -> bool:
    """Whether the file name has an image extension we ingest."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha composited on white, 16-bit scaled, CMYK/palette converted."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit data (PNG/TIFF) is rescaled to 8 bits; Pillow's own convert("L") would clip it to white.
        if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # CMYK, YCbCr, LAB, HSV, L, 1, RGBX: Pillow's conversions are right for these.
    return image.convert("RGB")


def load_image(
    path: Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
    draft_side: int | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> SourceImage:
    """Read, verify and decode an image file read-only; ImageRejected with the reason if unusable.

    The pixel count is checked from the header before any pixel is decoded, so decompression bombs are
    refused without being loaded. `draft_side` lets JPEG decode at a reduced scale that still covers it.
    An animated image contributes its first frame.
    """
    path = Path(path)
    try:
        size_bytes = path.stat().st_size
    except OSError as error:
        raise ImageRejected(f"cannot read file ({error.strerror or error})") from None
    if size_bytes > max_file_bytes:
        raise ImageRejected(f"file is {size_bytes} bytes, more than the limit {max_file_bytes}")
    if size_bytes == 0:
        raise ImageRejected("empty file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageRejected(f"cannot read file ({error.strerror or error})") from None
    digest = hashlib.sha256(data).hexdigest()
    # Our own limit is checked from the header; Pillow's bomb error (past 2x its MAX_IMAGE_PIXELS) is a
    # backstop. No warnings.catch_warnings here: it is not thread-safe and ingest decodes on threads.
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            _check_pixels(width, height, max_pixels)
            if min(width, height) < min_side:
                raise ImageRejected(
                    f"too small: {width}x{height}, the shorter side must be at least {min_side} pixels"
                )
            probe.verify()
        image = Image.open(io.BytesIO(data))
        original = image.size
        if draft_side and image.format == "JPEG":
            image.draft("RGB", (draft_side, draft_side))
        image.load()
        image = ImageOps.exif_transpose(image)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected(f"refused as a decompression bomb: {error}") from None
    except UnidentifiedImageError:
        raise ImageRejected("not an image Pillow can decode") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow reports truncated or corrupt data as OSError/SyntaxError (bad PNG chunks, CRCs).
        raise ImageRejected(f"corrupt or truncated image ({error})") from None
    except (IndexError, KeyError, TypeError, struct.error, ZeroDivisionError) as error:
        # Malformed headers (TIFF/BMP/ICO...) can surface from Pillow's parsers as these.
        raise ImageRejected(f"corrupt image ({type(error).__name__}: {error})") from None
    return SourceImage(to_rgb(image), digest, original)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageRejected(
            f"too many pixels: {width}x{height} = {width * height} exceeds the limit {max_pixels} "
            "(decompression bomb?); not loaded"
        )
    if width <= 0 or height <= 0:
        raise ImageRejected(f"invalid size {width}x{height}")


def aspect_mismatch(size_a: tuple[int, int], size_b: tuple[int, int], max_aspect_diff: float) -> str | None:
    """The reason two sizes are too differently shaped to crop identically, or None if they fit."""
    aspect_a = size_a[0] / size_a[1]
    aspect_b = size_b[0] / size_b[1]
    diff = abs(aspect_a - aspect_b) / min(aspect_a, aspect_b)
    if diff <= max_aspect_diff:
        return None
    return (
        f"aspect ratios differ: before {size_a[0]}x{size_a[1]} ({aspect_a:.3f}) vs after "
        f"{size_b[0]}x{size_b[1]} ({aspect_b:.3f}), {diff:.1%} > {max_aspect_diff:.0%}"
    )


def center_square(image: Image.Image, resolution: int) -> Image.Image:
    """Center-crop to the largest centered square and resize to `resolution` (Lanczos)."""
    width, height = image.size
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    box = (left, top, left + side, top + side)
    square = image.crop(box)  # crop first: pixels outside the square must not bleed in through the filter
    if side == resolution:
        return square
    return square.resize((resolution, resolution), Image.Resampling.LANCZOS)


def fit_pair(
    before: Image.Image,
    after: Image.Image,
    resolution: int,
    max_aspect_diff: float = DEFAULT_MAX_ASPECT_DIFF,
) -> tuple[Image.Image, Image.Image]:
    """Apply the pair size policy (module docstring); ImageRejected if the aspect ratios differ too much."""
    reason = aspect_mismatch(before.size, after.size, max_aspect_diff)
    if reason:
        raise ImageRejected(reason)
    return center_square(before, resolution), center_square(after, resolution)


def split_side_by_side(image: Image.Image) -> tuple[Image.Image, Image.Image]:
    """Left half (before) and right half (after); an odd middle column belongs to neither."""
    width, height = image.size
    half = width // 2
    return image.crop((0, 0, half, height)), image.crop((width - half, 0, width, height))
