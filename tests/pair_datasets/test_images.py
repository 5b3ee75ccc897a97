"""Image loading and conversion: bombs, truncation, EXIF, modes, the pair size policy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pair_datasets.images import (
    ImageRejected,
    center_square,
    fit_pair,
    load_image,
    split_side_by_side,
    to_rgb,
)


def test_pixel_limit_refuses_before_decoding(tmp_path, png_header):
    path = tmp_path / "big.png"
    path.write_bytes(png_header(3000, 3000))  # 9 MP claimed, 80 bytes of data
    with pytest.raises(
        ImageRejected, match=r"too many pixels: 3000x3000 = 9000000 exceeds the limit 1000000"
    ):
        load_image(path, max_pixels=1_000_000)


def test_pillow_decompression_bomb_is_refused(tmp_path, png_header):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(100_000, 100_000))  # 10^10 pixels would need 10 GB
    with pytest.raises(ImageRejected, match="decompression bomb"):
        load_image(path, max_pixels=10**12)


def test_truncated_and_undecodable_files(tmp_path, image_factory):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for suffix in ("png", "jpg"):
        noise.save(tmp_path / f"full.{suffix}")
        data = (tmp_path / f"full.{suffix}").read_bytes()
        (tmp_path / f"cut.{suffix}").write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageRejected, match="corrupt or truncated"):
            load_image(tmp_path / f"cut.{suffix}")
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(ImageRejected, match="not an image Pillow can decode"):
        load_image(tmp_path / "text.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageRejected, match="empty file"):
        load_image(tmp_path / "empty.png")


def test_minimum_size(tmp_path, image_factory):
    path = image_factory(tmp_path / "small.png", size=(30, 10))
    with pytest.raises(ImageRejected, match="too small: 30x10, the shorter side must be at least 16 pixels"):
        load_image(path, min_side=16)
    assert load_image(path, min_side=10).image.size == (30, 10)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the left half ends on top
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "rotated.jpg").image
    assert loaded.size == (20, 40)
    top, bottom = loaded.getpixel((10, 3)), loaded.getpixel((10, 36))
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200 and bottom[0] < 50


def test_mode_conversions_to_rgb(tmp_path):
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((1, 1), 1)
    palette.info["transparency"] = 0  # index 0 transparent -> white
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(palette).getpixel((1, 1)) == (10, 200, 30)
    half = Image.new("RGBA", (2, 2), (0, 0, 0, 128))
    assert to_rgb(half).getpixel((0, 0)) == (127, 127, 127)
    deep = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # 16-bit mid grey
    deep.save(tmp_path / "deep.png")
    assert load_image(tmp_path / "deep.png").image.getpixel((0, 0)) == (128, 128, 128)
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red = load_image(tmp_path / "cmyk.jpg").image
    assert red.mode == "RGB" and red.getpixel((4, 4))[0] > 240 and red.getpixel((4, 4))[1] < 15
    assert to_rgb(Image.new("L", (2, 2), 7)).getpixel((0, 0)) == (7, 7, 7)


def test_fit_pair_policy():
    wide = Image.new("RGB", (80, 40))
    wide.paste((255, 255, 255), (20, 0, 60, 40))  # white centre square
    before, after = fit_pair(wide, Image.new("RGB", (160, 82)), resolution=32)
    assert before.size == after.size == (32, 32)
    assert np.asarray(before).min() > 250  # the crop is the centred square
    with pytest.raises(
        ImageRejected, match=r"aspect ratios differ: before 80x40 \(2.000\) vs after 40x40 \(1.000\)"
    ):
        fit_pair(wide, Image.new("RGB", (40, 40)), resolution=32)
    assert center_square(Image.new("RGB", (32, 50)), 32).size == (32, 32)


def test_split_side_by_side_drops_odd_middle_column():
    image = Image.new("RGB", (21, 10), (255, 0, 0))
    image.paste((0, 0, 255), (11, 0, 21, 10))
    before, after = split_side_by_side(image)
    assert before.size == after.size == (10, 10)
    assert before.getpixel((9, 0)) == (255, 0, 0) and after.getpixel((0, 0)) == (0, 0, 255)
