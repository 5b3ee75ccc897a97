"""The toy world: procedural, antialiased cartoon faces at 64x64 with continuous, measurable attributes.

Every face is a deterministic function of its attributes (drawn with PIL at 256x256, then box-filtered
to 64x64), so a seeded attribute sampler gives seeded (image, attributes, caption) triples.
Attributes are sampled uniformly in their ranges; `WORLD_STD` is the standard deviation of that
distribution, the unit of every effect size measured in this world.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image, ImageDraw

RESOLUTION = 64
_SUPERSAMPLE = 4
_CANVAS = RESOLUTION * _SUPERSAMPLE
BACKGROUND = (226, 230, 236)
# Geometry shared with the GAN fit's loss weights, in px at 64x64 relative to the face centre.
FACE_CENTER = (32.0, 34.0)
EYE_ROW = -2.0  # the eyes' centre row relative to the face centre
MOUTH_ROW = 12.5  # the corners' row below the centre; a frown's middle still clears the nose
MOUTH_HALF_WIDTH = 0.42  # of the face half-width
MOUTH_LINE_PX = 3
# A saturated red far from every skin tone: the old (150, 40, 50) was close to dark skin in RGB, and the
# VAE then lost the mouth on dark faces (probe smile R^2 after a round trip 0.37 vs 0.90 on pale ones),
# so the toy SDXL learnt "smiling" as "paler". This red is >= 110 away from any skin in RGB.
MOUTH_RGB = (210, 25, 35)


@dataclass(frozen=True)
class AttributeSpec:
    """One continuous attribute: its range (world units) and the caption words of its three bins."""

    name: str
    low: float
    high: float
    unit: str
    bins: tuple[str, str, str] | None  # low / middle / high phrase; None: never captioned

    @property
    def std(self) -> float:
        """Standard deviation of the uniform distribution the world samples from."""
        return (self.high - self.low) / np.sqrt(12.0)

    def bin_of(self, value: float) -> int:
        """Which third of the range `value` falls in (0, 1 or 2); values outside clamp to the ends."""
        third = (value - self.low) / (self.high - self.low) * 3.0
        return int(np.clip(np.floor(third), 0, 2))


SPECS: tuple[AttributeSpec, ...] = (
    AttributeSpec("eye_size", 2.5, 6.0, "eye radius, px", ("small eyes", "medium eyes", "big eyes")),
    AttributeSpec("smile", -5.0, 5.0, "mouth curvature, px (+ smiles)", ("frowning", "calm", "smiling")),
    AttributeSpec("face_width", 15.0, 22.0, "face half-width, px", ("narrow", "medium", "wide")),
    AttributeSpec("hair_hue", 0.0, 0.66, "hue, 0 red .. 0.66 blue", ("red hair", "green hair", "blue hair")),
    AttributeSpec("skin_tone", 0.0, 1.0, "0 pale .. 1 dark", ("pale skin", "tan skin", "dark skin")),
    AttributeSpec("x_shift", -2.0, 2.0, "horizontal jitter, px", None),
    AttributeSpec("y_shift", -2.0, 2.0, "vertical jitter, px", None),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(spec.name for spec in SPECS)
SPEC_BY_NAME: dict[str, AttributeSpec] = {spec.name: spec for spec in SPECS}
WORLD_STD: dict[str, float] = {spec.name: float(spec.std) for spec in SPECS}
CAPTIONED: tuple[str, ...] = tuple(spec.name for spec in SPECS if spec.bins is not None)


@dataclass(frozen=True)
class FaceAttributes:
    """The attributes of one face, in world units (see `SPECS` for ranges)."""

    eye_size: float
    smile: float
    face_width: float
    hair_hue: float
    skin_tone: float
    x_shift: float = 0.0
    y_shift: float = 0.0

    def __post_init__(self) -> None:
        for spec in SPECS:
            value = getattr(self, spec.name)
            if not np.isfinite(value):
                raise ValueError(f"FaceAttributes.{spec.name} must be finite, got {value}")

    def to_array(self) -> np.ndarray:
        """The attributes as a float32 vector in `ATTRIBUTE_NAMES` order."""
        return np.array([getattr(self, n) for n in ATTRIBUTE_NAMES], dtype=np.float32)

    @classmethod
    def from_array(cls, values: np.ndarray) -> FaceAttributes:
        """Build from a vector in `ATTRIBUTE_NAMES` order."""
        if len(values) != len(ATTRIBUTE_NAMES):
            raise ValueError(f"expected {len(ATTRIBUTE_NAMES)} attribute values, got {len(values)}")
        return cls(**{n: float(v) for n, v in zip(ATTRIBUTE_NAMES, values)})

    def replace(self, **changes: float) -> FaceAttributes:
        """A copy with some attributes changed."""
        return FaceAttributes(**{**asdict(self), **changes})


assert tuple(f.name for f in fields(FaceAttributes)) == ATTRIBUTE_NAMES


def middle_attributes() -> FaceAttributes:
    """The face at the middle of every range."""
    return FaceAttributes(**{s.name: (s.low + s.high) / 2 for s in SPECS})


def sample_attributes(rng: np.random.Generator, n: int) -> list[FaceAttributes]:
    """Draw `n` faces uniformly from the world's attribute ranges."""
    lows = np.array([s.low for s in SPECS])
    highs = np.array([s.high for s in SPECS])
    values = rng.uniform(lows, highs, size=(n, len(SPECS)))
    return [FaceAttributes.from_array(row) for row in values]


def normalize(values: np.ndarray) -> np.ndarray:
    """World units [..., K] -> roughly [-1, 1] (range mapped linearly), the probe's target space."""
    lows = np.array([s.low for s in SPECS], dtype=np.float32)
    highs = np.array([s.high for s in SPECS], dtype=np.float32)
    return (2.0 * (values - lows) / (highs - lows) - 1.0).astype(np.float32)


def denormalize(values: np.ndarray) -> np.ndarray:
    """Inverse of `normalize`."""
    lows = np.array([s.low for s in SPECS], dtype=np.float32)
    highs = np.array([s.high for s in SPECS], dtype=np.float32)
    return ((values + 1.0) / 2.0 * (highs - lows) + lows).astype(np.float32)


def _skin_rgb(tone: float) -> tuple[int, int, int]:
    pale, dark = np.array([250, 222, 196]), np.array([112, 72, 48])
    return tuple(int(round(c)) for c in pale + (dark - pale) * float(np.clip(tone, 0, 1)))


def _hair_rgb(hue: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(float(hue) % 1.0, 0.75, 0.8)
    return int(r * 255), int(g * 255), int(b * 255)


def _mouth_points(cx: float, cy: float, half_width: float, curve: float, n: int = 17) -> list:
    # A parabola through both corners; its middle sits `curve` lower (a smile) or higher (a frown).
    xs = np.linspace(-1.0, 1.0, n)
    return [(cx + x * half_width, cy + curve * (1.0 - x * x)) for x in xs]


def eye_offset(face_width):
    """Horizontal distance (px) from the face centre to each eye's centre; takes floats or arrays."""
    return 0.45 * face_width + 1.0


def render(attrs: FaceAttributes) -> Image.Image:
    """Draw one face as a 64x64 RGB image (drawn at 256x256, box-filtered down: antialiased)."""
    s = _SUPERSAMPLE
    image = Image.new("RGB", (_CANVAS, _CANVAS), BACKGROUND)
    draw = ImageDraw.Draw(image)
    cx = (FACE_CENTER[0] + attrs.x_shift) * s
    cy = (FACE_CENTER[1] + attrs.y_shift) * s
    half_w = attrs.face_width * s
    half_h = 21.0 * s
    skin, hair = _skin_rgb(attrs.skin_tone), _hair_rgb(attrs.hair_hue)
    outline = (60, 45, 40)

    # Hair: a cap behind the head that shows above and at the sides of the forehead.
    draw.ellipse([cx - half_w - 3 * s, cy - half_h - 5 * s, cx + half_w + 3 * s, cy + 4 * s], fill=hair)
    draw.ellipse([cx - half_w, cy - half_h, cx + half_w, cy + half_h], fill=skin, outline=outline, width=s)
    # A fringe over the top of the face keeps the hair visible at every width.
    draw.chord(
        [cx - half_w, cy - half_h, cx + half_w, cy + half_h * 0.2],
        start=200,
        end=340,
        fill=hair,
        outline=hair,
    )

    eye_dx = eye_offset(attrs.face_width)
    eye_y = cy + EYE_ROW * s
    r = attrs.eye_size * s
    for side in (-1.0, 1.0):
        ex = cx + side * eye_dx * s
        draw.ellipse([ex - r, eye_y - r, ex + r, eye_y + r], fill=(252, 252, 252), outline=outline, width=s)
        pr = 0.55 * r
        draw.ellipse([ex - pr, eye_y - pr, ex + pr, eye_y + pr], fill=(25, 25, 35))

    nose_y = cy + 5.0 * s
    draw.ellipse([cx - 1.2 * s, nose_y - 1.2 * s, cx + 1.2 * s, nose_y + 1.2 * s], fill=outline)

    mouth = _mouth_points(cx, cy + MOUTH_ROW * s, MOUTH_HALF_WIDTH * attrs.face_width * s, attrs.smile * s)
    draw.line(mouth, fill=MOUTH_RGB, width=MOUTH_LINE_PX * s, joint="curve")
    return image.resize((RESOLUTION, RESOLUTION), Image.BOX)


def render_batch(attrs: list[FaceAttributes]) -> np.ndarray:
    """Render many faces: uint8 array [N, 64, 64, 3]."""
    return np.stack([np.asarray(render(a)) for a in attrs])


def caption_bins(attrs: FaceAttributes) -> dict[str, int]:
    """The bin (0 low, 1 middle, 2 high) of each captioned attribute."""
    return {name: SPEC_BY_NAME[name].bin_of(getattr(attrs, name)) for name in CAPTIONED}


def compose_caption(bins: dict[str, int]) -> str:
    """The caption for the given bins; attributes missing from `bins` are not mentioned."""
    words = {name: SPEC_BY_NAME[name].bins[b] for name, b in bins.items()}
    subject = f"a {words['face_width']} face" if "face_width" in words else "a face"
    details = [words[n] for n in ("eye_size", "hair_hue", "skin_tone") if n in words]
    text = subject
    if details:
        text += " with " + (
            details[0] if len(details) == 1 else ", ".join(details[:-1]) + " and " + details[-1]
        )
    if "smile" in words:
        text += ", " + words["smile"]
    return text


def caption(attrs: FaceAttributes, rng: np.random.Generator | None = None, drop_p: float = 0.0) -> str:
    """A caption from three bins per attribute; each phrase is left out with probability `drop_p`."""
    if not 0.0 <= drop_p <= 1.0:
        raise ValueError(f"drop_p must be in [0, 1], got {drop_p}")
    bins = caption_bins(attrs)
    if drop_p > 0.0:
        if rng is None:
            raise ValueError("caption: drop_p > 0 needs an rng")
        keep = rng.random(len(bins)) >= drop_p
        bins = {name: b for (name, b), k in zip(bins.items(), keep) if k}
    return compose_caption(bins)


def all_captions() -> list[str]:
    """Every caption the world can produce (each attribute: one of three bins, or left out)."""
    out = []
    for code in range(4 ** len(CAPTIONED)):
        bins = {}
        for i, name in enumerate(CAPTIONED):
            b = (code // 4**i) % 4
            if b < 3:
                bins[name] = b
        out.append(compose_caption(bins))
    return out


def vocabulary() -> list[str]:
    """The whole words that occur in the world's captions."""
    words = {"a", "face", "with", "and"}
    for spec in SPECS:
        for phrase in spec.bins or ():
            words.update(phrase.split())
    return sorted(words)
