"""Slider objectives (DESIGN §3) as pure functions of noise predictions; the training loop makes the UNet calls.

Every loss returns one value per sample (shape [B]) so callers can weight, mask or average as they need.
"""

from __future__ import annotations

from torch import Tensor

from sliders.config import ACTIONS


def text_slider_target(
    eps_neutral: Tensor,
    eps_positive: Tensor,
    eps_negative: Tensor,
    guidance_scale: float,
    action: str = "enhance",
    sign: int = 1,
) -> Tensor:
    """DESIGN §3 target: eps(c_n) + sign * d * eta * (eps(c+) - eps(c-)), d = +1 enhance / -1 erase; no grad.

    `sign=-1` is the mirrored target the slider learns at scale -1 (bipolar training).
    """
    if action not in ACTIONS:
        raise ValueError(f"action: must be one of {', '.join(ACTIONS)}, got {action!r}")
    if sign not in (1, -1):
        raise ValueError(f"sign: must be +1 or -1, got {sign!r}")
    if not eps_neutral.shape == eps_positive.shape == eps_negative.shape:
        raise ValueError(
            f"noise predictions differ in shape: neutral {tuple(eps_neutral.shape)}, "
            f"positive {tuple(eps_positive.shape)}, negative {tuple(eps_negative.shape)}"
        )
    direction = 1.0 if action == "enhance" else -1.0
    guide = eps_positive.float() - eps_negative.float()
    return (eps_neutral.float() + sign * direction * guidance_scale * guide).detach()


def _per_sample_mse(prediction: Tensor, target: Tensor) -> Tensor:
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def text_slider_loss(eps_slider: Tensor, target: Tensor) -> Tensor:
    """Per-sample MSE between the slider's prediction [B, C, H, W] and its fixed target -> [B]."""
    return _per_sample_mse(eps_slider, target.detach())


def denoising_loss(eps_pred: Tensor, noise: Tensor) -> Tensor:
    """Per-sample ||eps_pred - eps||^2 (mean over elements) -> [B]: one signed term of the visual loss."""
    return _per_sample_mse(eps_pred, noise)


def visual_slider_loss(eps_before_pred: Tensor, eps_after_pred: Tensor, noise: Tensor) -> Tensor:
    """DESIGN §3 visual loss: ||eps_{-s}(noisy A) - eps||^2 + ||eps_{+s}(noisy B) - eps||^2 per sample -> [B].

    `eps_before_pred` is the slider at -level on the noisy before-latent, `eps_after_pred` at +level on the
    noisy after-latent; both were noised with the same `noise` at the same timestep.
    """
    return denoising_loss(eps_before_pred, noise) + denoising_loss(eps_after_pred, noise)
