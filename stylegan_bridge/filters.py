"""FIR low-pass filter design for alias-free synthesis (Karras et al. 2021, "Alias-Free GAN", sec. 3.2 and app. C).

Pure functions: numbers in, float32 tensors out. A filter of one tap is the identity and is returned as
None, which the ops read as "no filtering".
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import scipy.special
import torch


def kaiser_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> torch.Tensor | None:
    """Separable 1-D Kaiser-window low-pass [numtaps] (scipy firwin), or None when numtaps == 1."""
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
    return torch.as_tensor(taps, dtype=torch.float32)


def jinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> torch.Tensor | None:
    """Radially symmetric 2-D jinc low-pass [numtaps, numtaps] with a separable Kaiser window, sum 1."""
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    # Tap positions in the units of the sampling grid (1 / fs per tap), centred on the filter.
    pos = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(pos, pos))
    # Ideal 2-D low-pass of radius `cutoff`: J1(2 pi fc r) / (pi r), whose limit at r = 0 is fc.
    with np.errstate(divide="ignore", invalid="ignore"):
        ideal = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    ideal = np.where(r == 0, cutoff, ideal)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    taps = ideal * np.outer(window, window)
    taps = taps / np.sum(taps)
    return torch.as_tensor(taps, dtype=torch.float32)


def design_lowpass(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> torch.Tensor | None:
    """Low-pass for a synthesis layer: jinc when `radial`, separable Kaiser otherwise; None for one tap."""
    if radial:
        return jinc_lowpass(numtaps, cutoff, width, fs)
    return kaiser_lowpass(numtaps, cutoff, width, fs)
