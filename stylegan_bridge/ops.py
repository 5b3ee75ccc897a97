"""Resampling ops of the alias-free generator: upfirdn2d and the filtered leaky ReLU (pure functions).

Each op has a plain reference (`*_ref`: zero-insert, pad, full-grid FIR, subsample, as the definition
reads) and a fast path that computes the same numbers with less work on CPU: upsampling as a polyphase
transposed convolution (no multiplications by inserted zeros), downsampling as a strided convolution
(no filtered samples that are thrown away), and separable filters one axis at a time.
Tests compare the two. The fast path works on channels-last memory (its depthwise convolutions are
several times faster there) and returns channels-last tensors. Filters are true convolutions (the kernel is flipped for `conv2d`) unless
`flip_filter`; the low-pass filters of the generator are symmetric, so both agree there.

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


def _fir_axis(
    x: torch.Tensor, f: torch.Tensor, dim: int, up: int, down: int, pad: tuple[int, int]
) -> torch.Tensor:
    """upfirdn along one axis (dim 2 = H, 3 = W) with a 1-D filter f [k] that is already flipped/scaled."""
    c, k = x.shape[1], f.shape[0]
    n_valid = x.shape[dim] * up + pad[0] + pad[1] - (k - 1)
    weight = f.to(x.dtype).view([1, 1, k, 1] if dim == 2 else [1, 1, 1, k]).repeat(c, 1, 1, 1)
    stride = [1, 1]
    if up == 1:
        # Plain correlation of the padded signal, computed only at the kept positions.
        x = F.pad(x, [*pad, 0, 0] if dim == 3 else [0, 0, *pad])
        stride[dim - 2] = down
        return F.conv2d(x, weight, stride=stride, groups=c)
    # Polyphase: the full convolution of the zero-inserted signal, y[m*up + p] = sum_j x[m-j] f[j*up + p],
    # is `up` ordinary convolutions on the input grid, interleaved. No multiplications by inserted zeros.
    f_true = f.flip(0)
    n_phase = -(-k // up)
    f_true = F.pad(f_true, [0, n_phase * up - k])
    phases = f_true.view(n_phase, up).t().flip(1)  # [up, n_phase] correlation kernels
    n, _, h, w = x.shape
    length = x.shape[dim]
    if dim == 3:
        x = F.pad(x, [n_phase - 1, n_phase - 1, 0, 0])
        y = F.conv2d(
            x,
            phases.reshape(1, up, 1, n_phase).expand(c, -1, -1, -1).reshape(c * up, 1, 1, n_phase),
            groups=c,
        )
        # Channels-last memory is (n, h, m, c, p); the output wants (n, h, m, p, c): one copy.
        y = (
            y.permute(0, 2, 3, 1)
            .reshape(n, h, -1, c, up)
            .transpose(3, 4)
            .reshape(n, h, -1, c)
            .permute(0, 3, 1, 2)
        )
    else:
        x = F.pad(x, [0, 0, n_phase - 1, n_phase - 1])
        y = F.conv2d(
            x,
            phases.reshape(1, up, n_phase, 1).expand(c, -1, -1, -1).reshape(c * up, 1, n_phase, 1),
            groups=c,
        )
        # Channels-last memory is (n, m, w, c, p); the output wants (n, m, p, w, c): one copy.
        y = (
            y.permute(0, 2, 3, 1)
            .reshape(n, -1, w, c, up)
            .permute(0, 1, 4, 2, 3)
            .reshape(n, -1, w, c)
            .permute(0, 3, 1, 2)
        )
    assert y.shape[dim] == (length + n_phase - 1) * up
    # The reference keeps the window of the full convolution that starts at k-1-pad0.
    start = k - 1 - pad[0]
    if start >= 0 and start + n_valid <= y.shape[dim]:
        y = y.narrow(dim, start, n_valid)
    else:
        extra = n_valid + start - y.shape[dim]
        y = F.pad(y, [-start, extra, 0, 0] if dim == 3 else [0, 0, -start, extra])
    if down == 1:
        return y
    return y[:, :, :, ::down] if dim == 3 else y[:, :, ::down]


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
        x = F.pad(x if up == 1 else _zero_insert(x, up), [x0, x1, y0, y1])
        x = x[:, :, ::down, ::down]
        return x * gain if gain != 1 else x
    f = f.to(x.dtype) * gain ** (f.ndim / 2)
    # Correlation kernels: the true convolution flips the filter.
    fc = f if flip_filter else f.flip(list(range(f.ndim)))
    if f.ndim == 1:
        x = _fir_axis(x, fc, 3, up, down, (x0, x1))
        return _fir_axis(x, fc, 2, up, down, (y0, y1))
    c = x.shape[1]
    weight = fc[None, None].repeat(c, 1, 1, 1)
    if up == 1:
        return F.conv2d(F.pad(x, [x0, x1, y0, y1]), weight, stride=down, groups=c)
    # Non-separable upsampling is rare (unused by the generator); take the reference route.
    return upfirdn2d_ref(x, f, up=up, down=down, padding=padding, gain=1.0, flip_filter=flip_filter)


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
    x_in = x
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up**2, flip_filter=flip_filter)
    if x.untyped_storage().data_ptr() == x_in.untyped_storage().data_ptr():
        x = x.clone()  # the in-place steps below must never write into the caller's tensor
    # leaky_relu commutes with the positive gain, so the order of the two does not matter.
    if torch.is_grad_enabled() and x.requires_grad:
        # Autograd needs the intermediate values: out-of-place (training, e.g. the toy world's fit).
        x = F.leaky_relu(x, slope) if slope != 1 else x
        x = x * gain if gain != 1 else x
        x = x.clamp(-clamp, clamp) if clamp is not None else x
    else:
        x = F.leaky_relu_(x, slope) if slope != 1 else x
        if gain != 1:
            x.mul_(gain)
        if clamp is not None:
            x.clamp_(-clamp, clamp)
    x = upfirdn2d(x, fd, down=down, flip_filter=flip_filter)
    assert x.shape == (n, c, out_h, out_w), (tuple(x.shape), (n, c, out_h, out_w))
    return x
