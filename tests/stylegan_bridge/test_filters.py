"""FIR design: identity for one tap, unit DC gain, symmetry, stopband attenuation, radial symmetry."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from stylegan_bridge.filters import design_lowpass, jinc_lowpass, kaiser_lowpass


def test_one_tap_is_identity_none():
    assert kaiser_lowpass(1, 2.0, 1.0, 8.0) is None
    assert jinc_lowpass(1, 2.0, 1.0, 8.0) is None
    assert design_lowpass(1, 2.0, 1.0, 8.0, radial=True) is None


def test_zero_taps_is_an_error():
    with pytest.raises(ValueError, match="numtaps"):
        kaiser_lowpass(0, 2.0, 1.0, 8.0)


def test_kaiser_is_symmetric_unit_dc_low_pass():
    # A layer of the 1024 T config: 12 taps at rate 64, cutoff 8, transition width 2 * 8.
    f = kaiser_lowpass(12, cutoff=8.0, width=16.0, fs=64.0)
    assert f.dtype == torch.float32 and f.shape == (12,)
    assert torch.equal(f, f.flip(0))
    assert f.sum().item() == pytest.approx(1.0, abs=1e-6)
    freqs, response = scipy.signal.freqz(f.double().numpy(), worN=512, fs=64.0)
    gain = np.abs(response)
    assert gain[freqs <= 2.0].min() > 0.9  # pass band
    assert gain[freqs >= 8.0 + 8.0].max() < 0.05  # beyond the stop band edge cutoff + half width
    assert torch.allclose(
        f, torch.as_tensor(scipy.signal.firwin(12, 8.0, width=16.0, fs=64.0), dtype=torch.float32)
    )


def test_jinc_is_radially_symmetric_and_sums_to_one():
    f = jinc_lowpass(12, cutoff=4.0, width=8.0, fs=32.0)
    assert f.shape == (12, 12) and f.dtype == torch.float32
    assert f.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(f, f.t()) and torch.allclose(f, f.flip(0)) and torch.allclose(f, f.flip(1))
    # Radial: taps at the same distance from the centre agree (the (0, 3) and (3, 0) offsets, and diagonals).
    c = 5.5
    r = np.hypot(*np.meshgrid(np.arange(12) - c, np.arange(12) - c))
    same = np.isclose(r, r[0, 5])
    assert torch.allclose(f[torch.from_numpy(same)], f[0, 5].expand(int(same.sum())))
    assert f[5, 5] == f.max()  # peak at the centre


def test_jinc_odd_taps_has_finite_centre():
    f = jinc_lowpass(7, cutoff=2.0, width=4.0, fs=16.0)
    assert torch.isfinite(f).all() and f[3, 3] == f.max()
