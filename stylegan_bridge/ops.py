"""Resampling ops of the alias-free generator: upfirdn2d and the filtered leaky ReLU (pure functions).

Each op has a plain reference (`*_ref`: zero-insert, pad, full-grid FIR, subsample, as the definition
reads) and a fast path that computes the same numbers with less work: upsampling as a depthwise
transposed convolution with stride `up` (polyphase: no multiplications by inserted zeros), downsampling
as a strided convolution (no filtered samples that are thrown away), separable filters one axis at a
time, paddings folded into the convolutions, and the filtered leaky ReLU's gain folded into its
down filter. Tests compare the two. The fast path works on channels-last memory (depthwise
convolutions are several times faster there on CPU) and returns channels-last tensors. Filters are
true convolutions (the kernel is flipped for `conv2d`) unless `flip_filter`; the low-pass filters of
the generator are symmetric, so both agree there.

Shapes: x [N, C, H, W]; a filter is None (identity), [k] (separable) or [k, k] (non-separable);
padding is (x0, x1, y0, y1) on the upsampled grid, negative values crop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Padding = tuple[int, int, int, int]


def _check(x: torch.Tensor, f: torch.Tensor | None, up: int, down: int) -> None:
    assert x.ndim == 4, f"x must be [N, C, H, W], got {tuple(x.shape)}"
    assert f is None or f.ndim in (1, 2), f"filter must be [k] or [k, k], got {tuple(f.shape)}"
    assert int(up) == up and up >= 1 and int(down) == down and down >= 1, (up, down)


def _taps(f: torch.Tensor | None) -> int:
    return 1 if f is None else f.shape[-1]


def output_size(size: int, f_taps: int, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> int:
    """Length of one axis after upfirdn2d: (size*up + pad0 + pad1 - (taps-1) + down-1) // down."""
    return (size * up + pad[0] + pad[1] - (f_taps - 1) + down - 1) // down


# ---------------------------------------------------------------------------------------------------------
# Reference paths: the definition, step by step.


def upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Padding = (0, 0, 0, 0),
    gain: float = 1.0,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Upsample (zero insertion), pad/crop, FIR filter, downsample: the plain reference."""
    _check(x, f, up, down)
    n, c, h, w = x.shape
    x0, x1, y0, y1 = padding
    if f is None:
        f = torch.ones([1, 1], dtype=x.dtype, device=x.device)
    # Zero insertion: sample i lands at i*up, up-1 zeros follow it.
    z = x.new_zeros([n, c, h * up, w * up])
    z[:, :, ::up, ::up] = x
    z = F.pad(z, [x0, x1, y0, y1])  # negative values crop
    f = f.to(x.dtype) * gain ** (f.ndim / 2)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        z = F.conv2d(z, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:
        z = F.conv2d(z, f[None, None, None, :].repeat(c, 1, 1, 1), groups=c)
        z = F.conv2d(z, f[None, None, :, None].repeat(c, 1, 1, 1), groups=c)
    return z[:, :, ::down, ::down]


def filtered_lrelu_ref(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = (0, 0, 0, 0),
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Bias, upsample by `up` with fu (gain up^2), leaky ReLU * gain, clamp, filter with fd, keep every `down`."""
    _check(x, fu, up, down)
    if b is not None:
        assert b.shape == (x.shape[1],), f"bias must be [{x.shape[1]}], got {tuple(b.shape)}"
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = upfirdn2d_ref(x, fu, up=up, padding=padding, gain=up**2, flip_filter=flip_filter)
    x = F.leaky_relu(x, slope) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d_ref(x, fd, down=down, flip_filter=flip_filter)


# ---------------------------------------------------------------------------------------------------------
# Fast paths.


def _depthwise(f: torch.Tensor, channels: int, dim: int | None) -> torch.Tensor:
    """A filter as a depthwise conv weight [C, 1, kh, kw]: f [k] along `dim` (2 = H, 3 = W), or f [k, k]."""
    if dim is None:
        return f[None, None].expand(channels, 1, *f.shape).contiguous()
    shape = [1, 1, f.shape[0], 1] if dim == 2 else [1, 1, 1, f.shape[0]]
    return f.view(shape).expand(channels, -1, -1, -1).contiguous()


def _window(y: torch.Tensor, dim: int, start: int, length: int) -> torch.Tensor:
    """y[start : start + length] along `dim`, zero-filled where the window leaves y."""
    if start >= 0 and start + length <= y.shape[dim]:
        return y.narrow(dim, start, length)
    lo, hi = -start, start + length - y.shape[dim]
    return F.pad(y, [lo, hi, 0, 0] if dim == 3 else [0, 0, lo, hi])


def _upsample(
    x: torch.Tensor, fc: torch.Tensor, dims: tuple[int, ...], up: int, pads: Padding
) -> torch.Tensor:
    """Zero insertion, padding and the correlation kernel fc ([k] along one of `dims`, or [k, k] on (2, 3)).

    A transposed convolution with stride `up` is the full convolution of the zero-inserted signal,
    computed without multiplying the inserted zeros (polyphase); the reference keeps the window of it
    that starts at k-1-pad0. The part of the crop that is the same at both ends is the transposed
    convolution's own padding, so the usual case needs no copy.
    """
    k, c = fc.shape[0], x.shape[1]
    stride, padding, windows = [1, 1], [0, 0], []
    for dim in dims:
        pad = pads[:2] if dim == 3 else pads[2:]
        n_valid = x.shape[dim] * up + pad[0] + pad[1] - (k - 1)
        start = k - 1 - pad[0]
        crop = max(min(start, (x.shape[dim] - 1) * up + k - start - n_valid), 0)
        stride[dim - 2], padding[dim - 2] = up, crop
        windows.append((dim, start - crop, n_valid))
    dim = None if fc.ndim == 2 else dims[0]
    weight = _depthwise(fc.flip(list(range(fc.ndim))), c, dim)  # a convolution kernel: the flipped fc
    y = F.conv_transpose2d(x, weight, stride=stride, padding=padding, groups=c)
    for dim, start, length in windows:
        y = _window(y, dim, start, length)
    return y


def _correlate(
    x: torch.Tensor, fc: torch.Tensor, dims: tuple[int, ...], down: int, pads: Padding
) -> torch.Tensor:
    """Correlation of the padded x with fc ([k] along dims[0], or [k, k] on (3, 2)), only at kept positions.

    The padding both ends share is the convolution's own (no copy); only the rest is cut or padded.
    """
    stride, padding = [1, 1], [0, 0]
    for dim in dims:
        p0, p1 = pads[:2] if dim == 3 else pads[2:]
        shared = max(min(p0, p1), 0)
        x = _window(x, dim, shared - p0, x.shape[dim] + p0 + p1 - 2 * shared)
        stride[dim - 2], padding[dim - 2] = down, shared
    weight = _depthwise(fc, x.shape[1], None if fc.ndim == 2 else dims[0])
    return F.conv2d(x, weight, stride=stride, padding=padding, groups=x.shape[1])


def _fir_axis(
    x: torch.Tensor, fc: torch.Tensor, dim: int, up: int, down: int, pad: tuple[int, int]
) -> torch.Tensor:
    """upfirdn along one axis (dim 2 = H, 3 = W) with a 1-D correlation kernel fc [k], already scaled."""
    if up == 1:
        return _correlate(x, fc, (dim,), down, (*pad, *pad))
    y = _upsample(x, fc, (dim,), up, (*pad, *pad))
    return y if down == 1 else (y[:, :, :, ::down] if dim == 3 else y[:, :, ::down])


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Padding = (0, 0, 0, 0),
    gain: float = 1.0,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Same result as `upfirdn2d_ref`, computed without multiplying inserted zeros or discarded samples."""
    _check(x, f, up, down)
    # Depthwise convolutions are several times faster on channels-last memory (oneDNN on CPU).
    x = x.contiguous(memory_format=torch.channels_last)
    x0, x1, y0, y1 = padding
    if f is None:
        x = F.pad(x if up == 1 else _zero_insert(x, up), [x0, x1, y0, y1])  # a copy, even unpadded
        x = x[:, :, ::down, ::down]
        return x * gain if gain != 1 else x
    f = f.to(x.dtype) * gain ** (f.ndim / 2)
    # Correlation kernels: the true convolution flips the filter.
    fc = f if flip_filter else f.flip(list(range(f.ndim)))
    if f.ndim == 1:
        x = _fir_axis(x, fc, 3, up, down, (x0, x1))
        return _fir_axis(x, fc, 2, up, down, (y0, y1))
    if up == 1:
        return _correlate(x, fc, (3, 2), down, padding)
    return _upsample(x, fc, (3, 2), up, padding)[:, :, ::down, ::down]


def _zero_insert(x: torch.Tensor, up: int) -> torch.Tensor:
    n, c, h, w = x.shape
    z = x.new_zeros([n, c, h * up, w * up])
    z[:, :, ::up, ::up] = x
    return z


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = (0, 0, 0, 0),
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Same result as `filtered_lrelu_ref` (alias-free nonlinearity, paper sec. 3.2), computed faster."""
    _check(x, fu, up, down)
    n, c, h, w = x.shape
    out_w = output_size(w, _taps(fu) + _taps(fd) - 1, up, down, (padding[0], padding[1]))
    out_h = output_size(h, _taps(fu) + _taps(fd) - 1, up, down, (padding[2], padding[3]))
    if b is not None:
        assert b.shape == (c,), f"bias must be [{c}], got {tuple(b.shape)}"
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    # upfirdn2d returns a new tensor (convolutions, F.pad), so the in-place steps below never write
    # into the caller's tensor.
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up**2, flip_filter=flip_filter)
    # clamp(gain * y, c) = gain * clamp(y, c / gain) for gain > 0: the gain rides on the down filter,
    # which is linear, instead of costing a pass over the largest tensor of the layer.
    folded = gain if gain > 0 else 1.0
    x = _lrelu_clamp(x, slope, gain / folded, None if clamp is None else clamp / folded)
    x = upfirdn2d(x, fd, down=down, gain=folded, flip_filter=flip_filter)
    assert x.shape == (n, c, out_h, out_w), (tuple(x.shape), (n, c, out_h, out_w))
    return x


def _lrelu_clamp(x: torch.Tensor, slope: float, gain: float, bound: float | None) -> torch.Tensor:
    """clamp(leaky_relu(x) * gain, -bound, bound): in place, unless autograd needs the intermediates."""
    if torch.is_grad_enabled() and x.requires_grad:
        x = F.leaky_relu(x, slope) if slope != 1 else x
        x = x * gain if gain != 1 else x
        return x.clamp(-bound, bound) if bound is not None else x
    x = F.leaky_relu_(x, slope) if slope != 1 else x
    x = x.mul_(gain) if gain != 1 else x
    return x.clamp_(-bound, bound) if bound is not None else x
