"""Synthesis network of StyleGAN3 (Karras et al. 2021, "Alias-Free Generative Adversarial Networks").

Layer-index convention (used by style space, directions and mining):
    - `input` is the Fourier-feature block; it is NOT counted as a layer. It reads ws[:, 0] through
      `input.affine` (4 values: cos, sin, tx, ty) and has no style channels of its own.
    - Layer i (0 <= i <= num_layers) is the module `L{i}_{size}_{channels}` (NVlabs' name, e.g.
      `L4_84_1024` in the R config at 1024 px). Layer i reads ws[:, i + 1]. Layer num_layers (14 by
      default) is ToRGB.
    - The style channels of layer i are the outputs of `L{i}_*.affine`: one per *input* channel of that
      layer. So "layer 4, channel 847" (Concept Sliders) is `synthesis.layer(4).affine` output 847.
Access: `synthesis.layer(4)`, `synthesis.layer("L4_84_1024")`, `synthesis.layers`, `synthesis.layer_names`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stylegan_bridge.config import GeneratorConfig
from stylegan_bridge.filters import design_lowpass
from stylegan_bridge.mapping import FullyConnectedLayer
from stylegan_bridge.ops import filtered_lrelu


@dataclass(frozen=True)
class LayerSpec:
    """Sampling and channel schedule of one synthesis layer (paper sec. 3.2 / app. F)."""

    index: int
    name: str
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: float
    out_sampling_rate: float
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    use_fp16: bool = False  # one of the `num_fp16_res` highest resolutions: fp16 on CUDA unless force_fp32


def layer_schedule(config: GeneratorConfig) -> tuple[dict[str, float], list[LayerSpec]]:
    """Cutoffs, stopbands, sampling rates, sizes and channels: (input block spec, [L0 .. ToRGB])."""
    n, res = config.num_layers, config.img_resolution
    last_cutoff = res / 2
    last_stopband = last_cutoff * config.last_stopband_rel
    # Cutoff and stopband rise geometrically until the critically sampled layers, then stay.
    e = np.minimum(np.arange(n + 1) / (n - config.num_critical), 1)
    cutoffs = config.first_cutoff * (last_cutoff / config.first_cutoff) ** e
    stopbands = config.first_stopband * (last_stopband / config.first_stopband) ** e
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + config.margin_size * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((config.channel_base / 2) / cutoffs, config.channel_max))
    channels[-1] = config.img_channels
    specs = []
    for i in range(n + 1):
        p = max(i - 1, 0)
        specs.append(
            LayerSpec(
                index=i,
                name=f"L{i}_{int(sizes[i])}_{int(channels[i])}",
                is_torgb=i == n,
                is_critically_sampled=i >= n - config.num_critical,
                in_channels=int(channels[p]),
                out_channels=int(channels[i]),
                in_size=int(sizes[p]),
                out_size=int(sizes[i]),
                in_sampling_rate=float(rates[p]),
                out_sampling_rate=float(rates[i]),
                in_cutoff=float(cutoffs[p]),
                out_cutoff=float(cutoffs[i]),
                in_half_width=float(half_widths[p]),
                out_half_width=float(half_widths[i]),
                use_fp16=bool(rates[i] * 2**config.num_fp16_res > res),
            )
        )
    first = {
        "channels": int(channels[0]),
        "size": int(sizes[0]),
        "sampling_rate": float(rates[0]),
        "bandwidth": float(cutoffs[0]),
    }
    return first, specs


class SynthesisInput(nn.Module):
    """Fourier features, rotated and translated by `affine(w)`, mixed by a learned [C, C] matrix (sec. 3.1)."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, size
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth
        # Random frequencies inside a disc of radius `bandwidth`, denser towards the centre.
        freqs = torch.randn([channels, 2])
        radii = freqs.norm(dim=1, keepdim=True)
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        # Identity rotation, zero translation until trained.
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3))  # user-set inverse transform of the output
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w [B, w_dim] -> x [B, C, size, size]."""
        assert w.ndim == 2 and w.shape[1] == self.w_dim, tuple(w.shape)
        b = w.shape[0]
        t = self.affine(w)  # [B, 4] = (cos, sin, tx, ty) up to scale
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rot = torch.eye(3, device=w.device).repeat(b, 1, 1)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        shift = torch.eye(3, device=w.device).repeat(b, 1, 1)
        shift[:, 0, 2], shift[:, 1, 2] = -t[:, 2], -t[:, 3]
        # Fourier features are computed in fp32 even in a half-precision module (phases need the bits).
        m = rot @ shift @ self.transform.float().unsqueeze(0)  # [B, 3, 3]
        freqs = self.freqs.float().unsqueeze(0)  # [1, C, 2]
        phases = self.phases.float().unsqueeze(0) + (freqs @ m[:, :2, 2:]).squeeze(2)  # [B, C]
        freqs = freqs @ m[:, :2, :2]  # [B, C, 2]
        # Fade out frequencies that the transform pushed beyond the band limit.
        amps = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(
            0, 1
        )
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(
            theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False
        )  # [1, H, W, 2]
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [B, H, W, C]
        x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (2 * np.pi)) * amps.unsqueeze(1).unsqueeze(2)
        x = x.to(self.weight.dtype) @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)  # [B, C, H, W]


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    padding: int = 0,
    demodulate: bool = True,
    input_gain: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """x [B, I, H, W], weight [O, I, k, k], styles [B, I] -> [B, O, H', W'] (StyleGAN2 sec. 2.2, SG3 app. D).

    `bias` [O] is added to the output by the convolution itself (no pass of its own).
    """
    b, i = x.shape[:2]
    o, _, kh, kw = weight.shape
    assert weight.shape[1] == i and styles.shape == (b, i), (
        tuple(x.shape),
        tuple(weight.shape),
        tuple(styles.shape),
    )
    if demodulate:
        # Pre-normalize both factors so fp16 would not overflow; demodulation cancels the scale.
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles.reshape(b, 1, i, 1, 1)  # [B, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(b, o, 1, 1, 1)
    if input_gain is not None:
        w = w * input_gain.expand(b, i).reshape(b, 1, i, 1, 1)
    w, bias = w.to(x.dtype), None if bias is None else bias.to(x.dtype)  # factors above in the weight's dtype
    if b == 1 or x.device.type == "cpu":
        # On CPU one plain convolution per sample beats a grouped one: it keeps channels-last memory,
        # where the grouped form must first copy the batch into the channel axis.
        if b == 1:
            return F.conv2d(x, w[0], bias, padding=padding)
        return torch.cat([F.conv2d(x[j : j + 1], w[j], bias, padding=padding) for j in range(b)])
    bias = None if bias is None else bias.repeat(b)
    x = F.conv2d(
        x.reshape(1, b * i, *x.shape[2:]), w.reshape(b * o, i, kh, kw), bias, padding=padding, groups=b
    )
    return x.reshape(b, o, *x.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated conv -> filtered leaky ReLU (upsample, nonlinearity, downsample); ToRGB when `spec.is_torgb`."""

    def __init__(
        self,
        spec: LayerSpec,
        w_dim: int,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
        magnitude_ema_beta: float = 0.999,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.w_dim = w_dim
        self.is_torgb = spec.is_torgb
        self.in_channels, self.out_channels = spec.in_channels, spec.out_channels
        self.in_size, self.out_size = spec.in_size, spec.out_size
        self.conv_kernel = 1 if spec.is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta
        # The nonlinearity runs at a higher rate so that its harmonics can be filtered out (sec. 3.2).
        tmp_rate = max(spec.in_sampling_rate, spec.out_sampling_rate) * (
            1 if spec.is_torgb else lrelu_upsampling
        )
        self.up = int(np.rint(tmp_rate / spec.in_sampling_rate))
        self.down = int(np.rint(tmp_rate / spec.out_sampling_rate))
        assert spec.in_sampling_rate * self.up == tmp_rate and spec.out_sampling_rate * self.down == tmp_rate
        up_taps = filter_size * self.up if self.up > 1 and not spec.is_torgb else 1
        down_taps = filter_size * self.down if self.down > 1 and not spec.is_torgb else 1
        self.down_radial = use_radial_filters and not spec.is_critically_sampled

        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1)
        self.weight = nn.Parameter(
            torch.randn([spec.out_channels, spec.in_channels, self.conv_kernel, self.conv_kernel])
        )
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        up_filter = design_lowpass(up_taps, spec.in_cutoff, spec.in_half_width * 2, tmp_rate)
        down_filter = design_lowpass(
            down_taps, spec.out_cutoff, spec.out_half_width * 2, tmp_rate, radial=self.down_radial
        )
        self.register_buffer("up_filter", up_filter)
        self.register_buffer("down_filter", down_filter)

        # Pad so that the output has exactly out_size samples after the "full" conv and both filters.
        total = (spec.out_size - 1) * self.down + 1
        total -= (spec.in_size + self.conv_kernel - 1) * self.up
        total += up_taps + down_taps - 2
        lo = (total + self.up) // 2
        self.padding = (lo, total - lo, lo, total - lo)  # (x0, x1, y0, y1)

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, update_emas: bool = False, force_fp32: bool = True
    ) -> torch.Tensor:
        """x [B, in_channels, in_size, in_size], w [B, w_dim] -> [B, out_channels, out_size, out_size].

        Computes in the module's dtype; with `force_fp32=False` on CUDA, a `use_fp16` layer computes in
        fp16 as NVlabs' (its clamp keeps the values in range).
        """
        b = x.shape[0]
        assert x.shape[1:] == (self.in_channels, self.in_size, self.in_size), (self.spec.name, tuple(x.shape))
        assert w.shape == (b, self.w_dim), (self.spec.name, tuple(w.shape))
        if update_emas:
            with torch.no_grad():
                magnitude = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        dtype = self.weight.dtype  # compute in the module's dtype (fp32 by default; fp16/bf16 if cast)
        if self.spec.use_fp16 and not force_fp32 and x.device.type == "cuda":
            dtype = torch.float16
        styles = self.affine(w)  # [B, in_channels]: the style space of this layer
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel**2))
        x = modulated_conv2d(
            x.to(dtype),
            self.weight,
            styles.to(self.weight.dtype),
            padding=self.conv_kernel - 1,
            demodulate=not self.is_torgb,
            input_gain=self.magnitude_ema.to(self.weight.dtype).rsqrt(),
            bias=self.bias,
        )
        x = filtered_lrelu(
            x,
            fu=self.up_filter,
            fd=self.down_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            gain=1.0 if self.is_torgb else math.sqrt(2),
            slope=1.0 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )
        assert x.shape[1:] == (self.out_channels, self.out_size, self.out_size), (
            self.spec.name,
            tuple(x.shape),
        )
        return x

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"{s.in_channels}->{s.out_channels}, {s.in_size}->{s.out_size}px, up={self.up}, down={self.down}"
        )


def check_noise_mode(noise_mode: str) -> None:
    """ValueError unless noise_mode is one of NVlabs' 'const', 'random', 'none' (all equal in StyleGAN3)."""
    if noise_mode not in ("const", "random", "none"):
        raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> images [B, img_channels, R, R] (about [-1, 1])."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.w_dim, self.img_resolution, self.img_channels = (
            config.w_dim,
            config.img_resolution,
            config.img_channels,
        )
        self.num_ws = config.num_ws
        self.output_scale = config.output_scale
        first, specs = layer_schedule(config)
        self.input = SynthesisInput(config.w_dim, **first)
        self.layer_names: list[str] = []
        for spec in specs:
            layer = SynthesisLayer(
                spec,
                config.w_dim,
                conv_kernel=config.conv_kernel,
                filter_size=config.filter_size,
                lrelu_upsampling=config.lrelu_upsampling,
                use_radial_filters=config.use_radial_filters,
                conv_clamp=config.conv_clamp,
                magnitude_ema_beta=config.magnitude_ema_beta,
            )
            setattr(self, spec.name, layer)
            self.layer_names.append(spec.name)

    @property
    def layers(self) -> list[SynthesisLayer]:
        """The synthesis layers in order, L0 .. ToRGB (list index = layer index)."""
        return [getattr(self, name) for name in self.layer_names]

    def layer(self, key: int | str) -> SynthesisLayer:
        """A synthesis layer by index (0 = first after `input`; -1 = ToRGB) or by NVlabs name (`L4_84_512`)."""
        if isinstance(key, str):
            if key not in self.layer_names:
                raise ValueError(f"unknown synthesis layer {key!r}; layers are {', '.join(self.layer_names)}")
            return getattr(self, key)
        n = len(self.layer_names)
        if not -n <= key < n:
            raise ValueError(f"synthesis layer index {key} out of range 0..{n - 1}")
        return getattr(self, self.layer_names[key])

    def forward(
        self, ws: torch.Tensor, update_emas: bool = False, noise_mode: str = "const", force_fp32: bool = True
    ) -> torch.Tensor:
        """ws [B, num_ws, w_dim]: ws[:, 0] drives `input`, ws[:, i + 1] drives layer i.

        `noise_mode` is accepted for NVlabs compatibility (StyleGAN3 has no noise inputs). With
        `force_fp32=False` on CUDA the `num_fp16_res` highest resolutions compute in fp16, as NVlabs'
        default; otherwise every layer computes in fp32 (or the dtype the module was cast to).
        """
        check_noise_mode(noise_mode)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [B, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, update_emas=update_emas, force_fp32=force_fp32)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)
