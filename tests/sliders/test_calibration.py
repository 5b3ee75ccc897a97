"""The calibration fit and map (sliders/calibration.py) on hand-made effect curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sliders.calibration import USAGE_HINT_PREFIX, Calibration, EffectCurve, fit_calibration
from sliders.slider_metadata import KEY_CALIBRATION, KEY_SCALE_RANGE, KEY_USAGE_HINT


def curve(points: dict[float, float], broken: tuple[float, ...] = ()) -> EffectCurve:
    raws = tuple(sorted({0.0, *points}))
    return EffectCurve(raws, tuple(points.get(r, 0.0) for r in raws), tuple(r in broken for r in raws))


def test_linear_curve_maps_user_scale_to_raw_in_proportion():
    # effect 0.02 per raw unit on both sides: unit effect 0.05 is raw 2.5.
    c = fit_calibration(curve({r: 0.02 * abs(r) for r in (-4, -2, -1, 1, 2, 4)}), unit_effect=0.05)
    assert c.to_raw(1.0) == pytest.approx(2.5)
    assert c.to_raw(-1.0) == pytest.approx(-2.5)
    assert c.to_raw(0.0) == 0.0
    assert c.user_range == pytest.approx((-1.6, 1.6)) and c.raw_range == (-4.0, 4.0)
    # Beyond the measured range: the line through 0 and the last knot.
    assert c.to_raw(3.2) == pytest.approx(8.0)
    assert c.to_user(c.to_raw(0.7)) == pytest.approx(0.7)


def test_saturating_curve_stops_the_range_where_the_image_stops_changing():
    # Effect grows like 1 - exp(-r/2) and is flat from raw 6 on (within 5% of its largest value).
    effects = {r: 0.3 * (1 - math.exp(-abs(r) / 2)) for r in (-8, -6, -4, -2, -1, 1, 2, 4, 6, 8)}
    c = fit_calibration(curve(effects), unit_effect=0.05)
    assert c.raw_range == (-6.0, 6.0)
    # Equal user steps give equal effects: the inverse of the curve at every knot.
    for u, r in zip(c.user_knots, c.raw_knots):
        assert effects[r] == pytest.approx(abs(u) * 0.05)
    assert c.to_raw(1.0) == pytest.approx(0.05 / effects[1])  # between 0 and the first knot
    steps = [c.to_raw(u) for u in (1, 2, 3, 4)]
    assert np.all(np.diff(steps) > 0) and steps[1] - steps[0] < steps[3] - steps[2]  # raw grows faster


def test_noisy_non_monotone_curve_is_made_monotone():
    # A dip at raw 3 (noise) pools with raw 2; the map stays monotone and the range goes on to 4.
    effects = {1: 0.05, 2: 0.12, 3: 0.10, 4: 0.2}
    c = fit_calibration(curve(effects), unit_effect=0.05)
    assert c.raw_knots == (1.0, 2.5, 4.0)
    assert c.user_knots == pytest.approx((1.0, 2.2, 4.0))
    users = np.linspace(-1, 5, 61)
    raws = [c.to_raw(u) for u in users]
    assert np.all(np.diff(raws) > 0)


def test_broken_weights_end_the_range_and_a_dead_side_mirrors_the_other():
    # Positive side breaks at 4; negative side has no effect at all.
    effects = {-4: 0.0, -2: 0.0, 1: 0.04, 2: 0.08, 4: 0.5}
    c = fit_calibration(curve(effects, broken=(4,)), unit_effect=0.04)
    assert c.raw_range == (0.0, 2.0) and c.user_range == (0.0, 2.0)
    assert c.to_raw(-1.0) == pytest.approx(-1.0)  # mirrored
    assert not c.in_range(-0.5) and c.in_range(1.5)


def test_a_step_that_turns_away_ends_the_range():
    # The effect keeps growing, but the step into raw 3 points elsewhere (cosine 0.1 < 0.3): range ends at 2.
    raws = (-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0)
    c = fit_calibration(
        EffectCurve(raws, (0.1, 0.05, 0, 0.05, 0.1, 0.15, 0.2), (False,) * 7, (0.9, 1, 1, 1, 0.8, 0.1, 0.9)),
        unit_effect=0.05,
    )
    assert c.raw_range == (-2.0, 2.0)
    loose = fit_calibration(c.curve, unit_effect=0.05, drift=0.0)
    assert loose.raw_range == (-2.0, 4.0)


def test_no_usable_scale_is_an_error():
    with pytest.raises(ValueError, match="no usable raw scale"):
        fit_calibration(curve({-1: 0.0, 1: 0.0}), unit_effect=0.05)
    with pytest.raises(ValueError, match="no usable raw scale"):
        fit_calibration(curve({-1: 0.4, 1: 0.4}, broken=(-1, 1)), unit_effect=0.05)


def test_metadata_round_trip_and_usage_hint():
    c = fit_calibration(curve({-2: 0.1, -1: 0.04, 1: 0.05, 2: 0.1}), 0.05, conditions={"seeds": [0, 1]})
    metadata = c.to_metadata()
    assert set(metadata) == {KEY_CALIBRATION, KEY_SCALE_RANGE, KEY_USAGE_HINT}
    assert Calibration.from_metadata(metadata) == c
    assert json.loads(metadata[KEY_SCALE_RANGE]) == [-2.0, 2.0]
    assert metadata[KEY_USAGE_HINT].startswith(USAGE_HINT_PREFIX) and "weight 1 " in metadata[KEY_USAGE_HINT]
    assert Calibration.from_metadata({}) is None


@pytest.mark.parametrize(
    "value, message",
    [
        ("{not json", "is not a valid calibration"),
        (json.dumps({"version": 99}), "unknown version 99"),
        (json.dumps({"version": 1}), "missing field"),
    ],
)
def test_malformed_header_names_the_key_and_file(value, message):
    with pytest.raises(ValueError, match=message) as error:
        Calibration.from_metadata({KEY_CALIBRATION: value}, "slider.safetensors")
    assert str(error.value).startswith(f"slider.safetensors: header {KEY_CALIBRATION} ")


def test_decreasing_knots_in_a_header_are_refused():
    c = fit_calibration(curve({1: 0.05, 2: 0.1}), 0.05)
    data = c.to_json()
    data["knots"]["raw"] = [2.0, 1.0]
    with pytest.raises(ValueError, match="monotone"):
        Calibration.from_metadata({KEY_CALIBRATION: json.dumps(data)}, "x.safetensors")


def test_curve_validation():
    with pytest.raises(ValueError, match="equally many"):
        EffectCurve((0.0, 1.0), (0.0,), (False, False))
    with pytest.raises(ValueError, match="not a distance"):
        EffectCurve((0.0, 1.0), (0.0, math.nan), (False, False))
    nan_broken = EffectCurve((0.0, 1.0), (0.0, math.nan), (False, True))
    assert EffectCurve.from_json(json.loads(json.dumps(nan_broken.to_json()))).broken == (False, True)


# --- the calibration in a slider file ---------------------------------------------------------------


def data_section(path) -> bytes:
    """The tensor bytes of a .safetensors file (everything after its header)."""
    raw = path.read_bytes()
    return raw[8 + int.from_bytes(raw[:8], "little") :]


@pytest.fixture
def slider_copy(tmp_path):
    from toyworld import demo_slider_paths

    path = tmp_path / "eye.safetensors"
    path.write_bytes(demo_slider_paths()["eye-size"].read_bytes())
    return path


def test_update_slider_metadata_keeps_the_tensors_byte_identical(slider_copy):
    from sliders.slider_file import load_slider, update_slider_metadata

    before = load_slider(slider_copy)
    tensors = data_section(slider_copy)
    c = fit_calibration(curve({-2: 0.1, 2: 0.1}), 0.05)
    update_slider_metadata(slider_copy, c.to_metadata())
    after = load_slider(slider_copy)
    assert data_section(slider_copy) == tensors
    assert before.calibration != c and after.calibration == c
    assert after.metadata == {**before.metadata, **c.to_metadata()}
    assert all(torch_equal(after.factors[k], before.factors[k]) for k in before.factors)


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a.down, b.down) and torch.equal(a.up, b.up) and a.alpha == b.alpha


def test_update_slider_metadata_to_another_file_leaves_the_source(slider_copy, tmp_path):
    from sliders.slider_file import load_slider, update_slider_metadata

    original = slider_copy.read_bytes()
    out = update_slider_metadata(slider_copy, {"concept_transfer.note": "x"}, out=tmp_path / "o.safetensors")
    assert slider_copy.read_bytes() == original
    assert load_slider(out).metadata["concept_transfer.note"] == "x"
    with pytest.raises(ValueError, match=r"only \.safetensors files hold metadata"):
        update_slider_metadata(tmp_path / "s.pt", {})


def test_a_malformed_calibration_header_names_key_and_file(slider_copy):
    from sliders.slider_file import load_slider, update_slider_metadata

    update_slider_metadata(slider_copy, {KEY_CALIBRATION: "[1, 2]"})
    with pytest.raises(ValueError) as error:
        _ = load_slider(slider_copy).calibration
    assert str(error.value) == (
        f"{slider_copy}: header {KEY_CALIBRATION} is not a valid calibration: expected a JSON object"
    )
