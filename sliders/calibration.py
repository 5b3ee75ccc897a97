"""Calibrated slider scales: a monotone map from the user's scale to the adapter's raw weight.

A LoRA slider's raw weight is an arbitrary number: one slider shows nothing below 7, another breaks at 3,
and equal steps of weight give unequal changes. A calibration is fitted from the slider's measured
*effect curve* e(r): for raw weights r, the mean distance between the image at r and the image at 0
(same prompts, seeds and gate; `transfer/calibrate.py` measures it and says which distance and why).
The user scale u is defined by

    e(to_raw(u)) = |u| * unit_effect,   sign(to_raw(u)) = sign(u),

so user scale 1 is the same amount of change (`unit_effect`) for every slider measured with the same
distance, and equal user steps add equal amounts of change.

Fitting (`fit_calibration`), for each side of 0 apart (a slider may be stronger one way):

1. Breaking and drift: the curve is cut before the first weight the measurement flagged as broken, or
   whose step (the change from the previous probed weight on that side) points away from the side's
   first step: cosine below `drift` (default 0.3). Beyond it the slider does something other than what
   it started doing (on the toy world: the eyes stop growing and blur; the smile gives way to new hair).
2. Monotone fit: isotonic regression of the effect on |r| (the measured curve is noisy, so it need not
   be monotone); the points each block of the fit pools become one knot at their mean weight.
3. Saturation: the curve is cut at the first knot whose effect is within `plateau` (default 5%) of the
   side's largest: beyond it the image stops changing.
4. Knots (u, r) = (sign * e / unit_effect, sign * |r|), plus (0, 0).

`to_raw` interpolates linearly between knots. Beyond a side's last knot it continues on the straight
line through 0 and that knot (the side's average rate), so it is defined, monotone and sign-preserving for
every finite user scale. A side without knots (no effect, or broken at its first weight) mirrors the
other side; its end of `user_range` is 0, meaning "nothing usable that way".

The header key `concept_transfer.calibration` holds all of it as JSON (knots, ranges, the measured curve
and the conditions it was measured under); `modelspec.usage_hint` (what SwarmUI and other modelspec
readers show) gets the raw weight of user scale 1 and the usable raw range in words, for tools that load
the file at raw weight.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sliders.slider_metadata import KEY_CALIBRATION, KEY_SCALE_RANGE, KEY_USAGE_HINT

__all__ = ["Calibration", "EffectCurve", "fit_calibration", "CALIBRATION_VERSION", "USAGE_HINT_PREFIX"]

CALIBRATION_VERSION = 1
USAGE_HINT_PREFIX = "concept-transfer calibration:"
DEFAULT_PLATEAU = 0.05
DEFAULT_DRIFT = 0.3


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class EffectCurve:
    """A slider's measured effect at raw weights: the data a calibration is fitted from.

    `effects[i]` is the mean distance of the images at `raw_scales[i]` from those at 0 (NaN allowed only
    where `broken[i]`: a broken render may not even have a finite distance). `directions[i]`, when
    measured, is the cosine between the step into `raw_scales[i]` (from the previous probed weight on its
    side, 0 for the first) and that side's first step: 1 while the slider keeps changing the image the
    way it started (NaN where a step cannot be compared, e.g. a broken render).
    """

    raw_scales: tuple[float, ...]
    effects: tuple[float, ...]
    broken: tuple[bool, ...]
    directions: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw_scales", tuple(_finite(r, "raw scale") for r in self.raw_scales))
        object.__setattr__(self, "effects", tuple(float(e) for e in self.effects))
        object.__setattr__(self, "broken", tuple(bool(b) for b in self.broken))
        if self.directions is not None:
            object.__setattr__(self, "directions", tuple(float(d) for d in self.directions))
        counts = {
            len(self.raw_scales),
            len(self.effects),
            len(self.broken),
            len(self.directions or self.broken),
        }
        if len(counts) != 1:
            raise ValueError(
                f"effect curve: {len(self.raw_scales)} raw scales, {len(self.effects)} effects, "
                f"{len(self.broken)} broken flags and {len(self.directions or ())} directions; they must be "
                "equally many"
            )
        if len(set(self.raw_scales)) != len(self.raw_scales):
            raise ValueError(f"effect curve: raw scales repeat: {list(self.raw_scales)}")
        for raw, effect, broken in zip(self.raw_scales, self.effects, self.broken):
            if not broken and not (math.isfinite(effect) and effect >= 0):
                raise ValueError(
                    f"effect curve: effect at raw scale {raw:g} is {effect!r}, not a distance >= 0"
                )

    def to_json(self) -> dict[str, list]:
        """JSON-ready lists (a NaN effect becomes null)."""
        data: dict[str, list] = {
            "raw_scales": list(self.raw_scales),
            "effects": _nulls(self.effects),
            "broken": list(self.broken),
        }
        if self.directions is not None:
            data["directions"] = _nulls(self.directions)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EffectCurve:
        """Inverse of `to_json` (ValueError on a malformed object)."""
        effects = [math.nan if e is None else _finite(e, "effect") for e in data["effects"]]
        directions = data.get("directions")
        if directions is not None:
            directions = tuple(math.nan if d is None else _finite(d, "direction") for d in directions)
        return cls(tuple(data["raw_scales"]), tuple(effects), tuple(data["broken"]), directions)


def _nulls(values: Sequence[float]) -> list[float | None]:
    """JSON-ready: NaN becomes null."""
    return [v if math.isfinite(v) else None for v in values]


def _interp_side(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Piecewise-linear y(x) for x >= 0 through (0, 0) and knots (xs, ys); beyond, the line through 0."""
    if x <= xs[-1]:
        return float(np.interp(x, np.concatenate([[0.0], xs]), np.concatenate([[0.0], ys])))
    return float(x * ys[-1] / xs[-1])


@dataclass(frozen=True)
class Calibration:
    """A fitted map user scale -> raw weight (see the module docstring), with the data it came from."""

    user_knots: tuple[float, ...]  # ascending, 0 excluded (implicit), negative and positive side
    raw_knots: tuple[float, ...]  # the raw weight of each user knot, same signs
    user_range: tuple[float, float]  # the usable range in user units: (<= 0, >= 0)
    raw_range: tuple[float, float]  # the same range in raw weights
    unit_effect: float  # the effect (in `distance` units) of user scale 1
    curve: EffectCurve
    distance: str = "latent_mean_abs"
    conditions: dict[str, Any] = field(default_factory=dict)  # prompts, seeds, steps, gate, model...

    def __post_init__(self) -> None:
        users, raws = np.asarray(self.user_knots, float), np.asarray(self.raw_knots, float)
        if users.shape != raws.shape or users.size == 0:
            raise ValueError("calibration: user and raw knots must be equally many, at least one")
        if not (np.all(np.isfinite(users)) and np.all(np.isfinite(raws))):
            raise ValueError("calibration: knots must be finite numbers")
        if np.any(users == 0) or np.any(np.sign(users) != np.sign(raws)):
            raise ValueError("calibration: every knot must be non-zero with the same sign in user and raw")
        if np.any(np.diff(users) <= 0) or np.any(np.diff(raws) <= 0):
            raise ValueError("calibration: knots must increase strictly (the map must be monotone)")
        low, high = self.user_range
        if not (low <= 0 <= high) or not (self.raw_range[0] <= 0 <= self.raw_range[1]):
            raise ValueError(f"calibration: ranges must contain 0, got {self.user_range} / {self.raw_range}")
        if not (math.isfinite(self.unit_effect) and self.unit_effect > 0):
            raise ValueError(f"calibration: unit_effect must be positive, got {self.unit_effect}")

    def _side(self, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """|user|, |raw| knots of one side, ascending; the other side's when this one has none."""
        users, raws = np.asarray(self.user_knots), np.asarray(self.raw_knots)
        keep = users * sign > 0
        if not keep.any():
            keep = ~keep
        order = np.argsort(np.abs(users[keep]))
        return np.abs(users[keep])[order], np.abs(raws[keep])[order]

    def to_raw(self, user_scale: float) -> float:
        """The raw adapter weight of a user scale (monotone, 0 -> 0, sign-preserving)."""
        u = _finite(user_scale, "user scale")
        if u == 0:
            return 0.0
        users, raws = self._side(math.copysign(1.0, u))
        return math.copysign(_interp_side(abs(u), users, raws), u)

    def to_user(self, raw_scale: float) -> float:
        """The user scale of a raw weight: the inverse of `to_raw`."""
        r = _finite(raw_scale, "raw scale")
        if r == 0:
            return 0.0
        users, raws = self._side(math.copysign(1.0, r))
        return math.copysign(_interp_side(abs(r), raws, users), r)

    def in_range(self, user_scale: float) -> bool:
        """Whether a user scale lies in the measured usable range."""
        return self.user_range[0] <= user_scale <= self.user_range[1]

    def usage_hint(self) -> str:
        """A one-line hint in raw weights, for tools that load the file at raw weight."""
        return (
            f"{USAGE_HINT_PREFIX} weight {self.to_raw(1.0):.3g} = one standard step (user scale 1), "
            f"{self.to_raw(-1.0):.3g} the other way; usable weights {self.raw_range[0]:.3g} .. "
            f"{self.raw_range[1]:.3g}"
        )

    def to_json(self) -> dict[str, Any]:
        """Everything as JSON-ready data (the value of the `concept_transfer.calibration` header key)."""
        return {
            "version": CALIBRATION_VERSION,
            "distance": self.distance,
            "unit_effect": self.unit_effect,
            "knots": {"user": list(self.user_knots), "raw": list(self.raw_knots)},
            "user_range": list(self.user_range),
            "raw_range": list(self.raw_range),
            "measured": self.curve.to_json(),
            "conditions": self.conditions,
        }

    def to_metadata(self) -> dict[str, str]:
        """Header entries: the calibration JSON, the raw usable range and a modelspec usage hint."""
        return {
            KEY_CALIBRATION: json.dumps(self.to_json(), sort_keys=True),
            KEY_SCALE_RANGE: json.dumps(list(self.raw_range)),
            KEY_USAGE_HINT: self.usage_hint(),
        }

    @classmethod
    def from_json(cls, data: Any) -> Calibration:
        """Inverse of `to_json`; ValueError saying what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("expected a JSON object")
        if data.get("version") != CALIBRATION_VERSION:
            raise ValueError(
                f"unknown version {data.get('version')!r} (this tool reads {CALIBRATION_VERSION})"
            )
        try:
            knots = data["knots"]
            return cls(
                user_knots=tuple(_finite(u, "user knot") for u in knots["user"]),
                raw_knots=tuple(_finite(r, "raw knot") for r in knots["raw"]),
                user_range=_pair(data["user_range"], "user_range"),
                raw_range=_pair(data["raw_range"], "raw_range"),
                unit_effect=_finite(data["unit_effect"], "unit_effect"),
                curve=EffectCurve.from_json(data["measured"]),
                distance=str(data["distance"]),
                conditions=dict(data.get("conditions") or {}),
            )
        except KeyError as error:
            raise ValueError(f"missing field {error}") from None
        except TypeError as error:
            raise ValueError(f"malformed field ({error})") from None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: object = None) -> Calibration | None:
        """The calibration in a slider header, or None if it has none; ValueError naming key and file."""
        value = metadata.get(KEY_CALIBRATION)
        if value is None:
            return None
        where = f"{source}: " if source else ""
        try:
            return cls.from_json(json.loads(value))
        except ValueError as error:  # JSONDecodeError is a ValueError
            raise ValueError(f"{where}header {KEY_CALIBRATION} is not a valid calibration: {error}") from None


def _pair(value: Any, what: str) -> tuple[float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ValueError(f"{what}: expected [low, high], got {value!r}")
    return _finite(value[0], what), _finite(value[1], what)


def _side_knots(
    magnitudes: np.ndarray, effects: np.ndarray, stop: np.ndarray, plateau: float
) -> tuple[np.ndarray, np.ndarray]:
    """Knots (|raw|, effect) of one side: cut before the first `stop`, isotonic fit, cut at saturation."""
    from sklearn.isotonic import IsotonicRegression  # only fitting needs scikit-learn, not reading

    order = np.argsort(magnitudes)
    magnitudes, effects, stop = magnitudes[order], effects[order], stop[order]
    first_stop = int(np.argmax(stop)) if stop.any() else len(stop)
    magnitudes, effects = magnitudes[:first_stop], effects[:first_stop]
    if magnitudes.size == 0:
        return magnitudes, effects
    fitted = IsotonicRegression(increasing=True, y_min=0.0).fit_transform(magnitudes, effects)
    # Pooled points (equal fitted values) become one knot at their mean weight.
    blocks = np.concatenate([[0], np.flatnonzero(np.diff(fitted) > 0) + 1, [fitted.size]])
    xs = np.array([magnitudes[a:b].mean() for a, b in zip(blocks[:-1], blocks[1:])])
    ys = fitted[blocks[:-1]]
    xs, ys = xs[ys > 0], ys[ys > 0]
    if ys.size == 0:
        return xs, ys
    end = int(np.argmax(ys >= (1.0 - plateau) * ys.max()))
    return xs[: end + 1], ys[: end + 1]


def fit_calibration(
    curve: EffectCurve,
    unit_effect: float,
    *,
    plateau: float = DEFAULT_PLATEAU,
    drift: float = DEFAULT_DRIFT,
    distance: str = "latent_mean_abs",
    conditions: Mapping[str, Any] | None = None,
) -> Calibration:
    """Fit the user -> raw map of a measured effect curve (see the module docstring for the rules)."""
    if not (math.isfinite(unit_effect) and unit_effect > 0):
        raise ValueError(f"unit_effect: must be a positive number, got {unit_effect}")
    if not 0.0 <= plateau < 1.0:
        raise ValueError(f"plateau: must be in [0, 1), got {plateau}")
    if not -1.0 <= drift <= 1.0:
        raise ValueError(f"drift: must be a cosine in [-1, 1], got {drift}")
    raws = np.asarray(curve.raw_scales, float)
    effects = np.nan_to_num(np.asarray(curve.effects, float), nan=0.0)
    stop = np.asarray(curve.broken, bool)
    if curve.directions is not None:  # NaN compares False: an unmeasurable step does not stop the curve
        stop |= np.asarray(curve.directions, float) < drift
    user_knots, raw_knots, user_range, raw_range = [], [], [0.0, 0.0], [0.0, 0.0]
    for sign, end in ((-1.0, 0), (1.0, 1)):
        side = raws * sign > 0
        xs, ys = _side_knots(np.abs(raws[side]), effects[side], stop[side], plateau)
        if xs.size:
            user_knots += list(sign * ys / unit_effect)
            raw_knots += list(sign * xs)
            user_range[end], raw_range[end] = sign * ys[-1] / unit_effect, sign * xs[-1]
    if not user_knots:
        raise ValueError(
            "calibration: no usable raw scale: the slider changed no image measurably, or the images broke "
            "or drifted already at the smallest probed scales (probe other scales)"
        )
    order = np.argsort(user_knots)
    return Calibration(
        user_knots=tuple(float(user_knots[i]) for i in order),
        raw_knots=tuple(float(raw_knots[i]) for i in order),
        user_range=(float(user_range[0]), float(user_range[1])),
        raw_range=(float(raw_range[0]), float(raw_range[1])),
        unit_effect=float(unit_effect),
        curve=curve,
        distance=distance,
        # Through JSON, so the object equals what its header reads back (tuples become lists).
        conditions=json.loads(json.dumps(dict(conditions or {}))),
    )
