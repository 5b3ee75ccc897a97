"""upfirdn2d and filtered leaky ReLU: reference and fast paths against an obvious loop, and each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stylegan_bridge.ops import filtered_lrelu, filtered_lrelu_ref, output_size, upfirdn2d, upfirdn2d_ref


def upfirdn_loop(
    x: np.ndarray, f: np.ndarray | None, up: int, down: int, pad: tuple, gain: float, flip: bool
) -> np.ndarray:
    """Definition by loops: y[o] = sum_t z[o*down + t] * g[t], z = padded zero-insertion, g = flipped filter."""
    n, c, h, w = x.shape
    x0, x1, y0, y1 = pad
    if f is None:
        f = np.ones([1, 1])
    f2 = np.outer(f, f) if f.ndim == 1 else f
    f2 = f2 * gain
    g = f2 if flip else f2[::-1, ::-1]
    k = g.shape[0]
    z = np.zeros([n, c, h * up, w * up])
    z[:, :, ::up, ::up] = x
    padded = np.zeros([n, c, h * up + max(y0, 0) + max(y1, 0), w * up + max(x0, 0) + max(x1, 0)])
    padded[:, :, max(y0, 0) : max(y0, 0) + h * up, max(x0, 0) : max(x0, 0) + w * up] = z
    padded = padded[
        :, :, max(-y0, 0) : padded.shape[2] - max(-y1, 0), max(-x0, 0) : padded.shape[3] - max(-x1, 0)
    ]
    out_h, out_w = (padded.shape[2] - k) // down + 1, (padded.shape[3] - k) // down + 1
    y = np.zeros([n, c, out_h, out_w])
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, :, i * down : i * down + k, j * down : j * down + k]
            y[:, :, i, j] = (patch * g).sum(axis=(2, 3))
    return y


CASES = [
    # up, down, padding, filter kind
    (1, 1, (0, 0, 0, 0), None),
    (2, 1, (3, 2, 3, 2), "sep"),
    (2, 2, (5, 6, 4, 7), "sep"),
    (4, 2, (13, 10, 12, 11), "sep"),
    (1, 2, (-1, 2, 1, -2), "sep"),
    (3, 1, (2, 1, 0, 4), "sep"),
    (1, 2, (2, 2, 2, 2), "2d"),
    (2, 2, (3, 3, 3, 3), "2d"),
    # Padding beyond the filter's reach (the window leaves the transposed convolution) and unequal axes.
    (2, 1, (9, 9, 8, 10), "sep"),
    (2, 1, (4, 1, 2, 9), "2d"),
]


def make_filter(kind: str | None, taps: int, gen: torch.Generator) -> torch.Tensor | None:
    if kind is None:
        return None
    shape = [taps] if kind == "sep" else [taps, taps]
    f = torch.rand(shape, generator=gen) + 0.1  # deliberately not symmetric: flipping must matter
    return f / f.sum()


@pytest.mark.parametrize("up, down, pad, kind", CASES)
@pytest.mark.parametrize("flip", [False, True])
def test_upfirdn2d_ref_and_fast_equal_loop(up, down, pad, kind, flip):
    gen = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn([2, 3, 7, 9], generator=gen, dtype=torch.float64)
    f = make_filter(kind, 4 * up if up > 1 else 5, gen)
    f = None if f is None else f.double()
    expected = upfirdn_loop(x.numpy(), None if f is None else f.numpy(), up, down, pad, 1.5, flip)
    for fn in (upfirdn2d_ref, upfirdn2d):
        got = fn(x, f, up=up, down=down, padding=pad, gain=1.5, flip_filter=flip)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_output_size_formula_matches():
    x = torch.randn(1, 2, 11, 11)
    f = torch.ones(8) / 8
    y = upfirdn2d(x, f, up=2, down=2, padding=(3, 4, 3, 4))
    assert y.shape[-1] == output_size(11, 8, up=2, down=2, pad=(3, 4)) == 11


@pytest.mark.parametrize(
    "up, down, pad, radial",
    [
        (2, 2, (11, 10, 11, 10), False),
        (4, 2, (21, 22, 21, 22), False),
        (2, 2, (9, 9, 9, 9), True),
        (1, 1, (0, 0, 0, 0), None),
    ],
)
def test_filtered_lrelu_fast_equals_reference(up, down, pad, radial):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn([2, 4, 12, 12], generator=gen) * 3
    b = torch.randn([4], generator=gen)
    fu = None if radial is None else torch.rand([6 * up], generator=gen)
    fd = (
        None
        if radial is None
        else (torch.rand([12, 12], generator=gen) if radial else torch.rand([12], generator=gen))
    )
    kwargs = dict(fu=fu, fd=fd, b=b, up=up, down=down, padding=pad, gain=math.sqrt(2), slope=0.2, clamp=2.0)
    ref = filtered_lrelu_ref(x, **kwargs)
    fast = filtered_lrelu(x, **kwargs)
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    if fd is None:  # no filter after the nonlinearity: the clamp bounds the output
        assert fast.abs().max().item() <= 2.0


def test_filtered_lrelu_is_bias_lrelu_gain_clamp_without_filters():
    x = torch.tensor([[[[-2.0, -0.5], [0.5, 300.0]]]])
    y = filtered_lrelu(x, b=torch.tensor([1.0]), gain=2.0, slope=0.1, clamp=256)
    expected = torch.tensor([[[[-0.2, 1.0], [3.0, 256.0]]]])
    torch.testing.assert_close(y, expected)


def test_filtered_lrelu_never_writes_into_its_input():
    x = torch.randn(1, 2, 5, 5)
    before = x.clone()
    filtered_lrelu(x, gain=2.0, slope=0.2, clamp=0.1)  # no bias, no filters: the in-place path
    assert torch.equal(x, before)


def test_filtered_lrelu_backpropagates_like_the_reference():
    """Training a generator needs gradients through the fast path (no in-place ops under autograd)."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    fu = torch.tensor([0.25, 0.5, 0.25])
    fd = torch.tensor([0.25, 0.5, 0.25])
    filtered_lrelu(x, fu=fu, fd=fd, up=2, down=2, padding=(2, 2, 2, 2), gain=2.0, clamp=0.5).sum().backward()
    fast = x.grad.clone()
    x.grad = None
    filtered_lrelu_ref(
        x, fu=fu, fd=fd, up=2, down=2, padding=(2, 2, 2, 2), gain=2.0, clamp=0.5
    ).sum().backward()
    torch.testing.assert_close(fast, x.grad)
