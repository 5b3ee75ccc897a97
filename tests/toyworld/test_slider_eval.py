"""The quality figures of `slider_eval` on hand-made probe readings (no models needed)."""

from __future__ import annotations

import numpy as np
import pytest

from toyworld.slider_eval import SCALES, quality, structure_change
from toyworld.world import ATTRIBUTE_NAMES, WORLD_STD


def readings(target: str, slope: float, noise: float = 0.0) -> dict[str, np.ndarray]:
    """[P=2, S=5, K=3] readings: `target` rises by slope * scale; others jitter by +-noise."""
    rng = np.random.default_rng(0)
    scales = np.asarray(SCALES)[None, :, None]
    values = {
        name: np.full((2, 5, 3), 1.0) + noise * rng.choice([-1, 1], (2, 5, 3)) for name in ATTRIBUTE_NAMES
    }
    values[target] = 1.0 + slope * WORLD_STD[target] * scales + np.zeros((2, 5, 3))
    return values


def test_quality_of_a_clean_monotone_slider():
    q = quality(readings("eye_size", 0.5), SCALES, "eye_size")
    assert q["spearman"] == pytest.approx(1.0)
    assert q["spearman_pooled"] == pytest.approx(1.0)
    assert q["effect_std"] == pytest.approx(2.0)  # 0.5 std per unit over -2..+2
    assert q["off_target"] == 0.0


def test_off_target_is_mean_abs_change_of_other_attributes_over_effect():
    values = readings("smile", -0.25)
    values["skin_tone"][:, -1] += 0.5 * WORLD_STD["skin_tone"]  # only at +2: |change| 0.5 std
    q = quality(values, SCALES, "smile")
    assert q["spearman"] == pytest.approx(-1.0)
    assert q["effect_std"] == pytest.approx(-1.0)
    assert q["off_target_by_attribute_std"]["skin_tone"] == pytest.approx(0.5)
    assert q["off_target"] == pytest.approx(0.5 / (len(ATTRIBUTE_NAMES) - 1), abs=1e-4)  # rounded to 4 places


def test_structure_change_compares_plus_minus_one_with_zero():
    images = np.zeros((1, 5, 2, 4, 4, 3))
    images[:, SCALES.index(1.0)] = 0.2
    images[:, SCALES.index(-1.0)] = 0.1
    assert structure_change(images, SCALES) == pytest.approx(0.15)
