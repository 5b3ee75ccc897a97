"""Slider objectives on hand-made tensors: targets, signs, actions, per-sample losses."""

from __future__ import annotations

import pytest
import torch

from sliders.objectives import text_slider_loss, text_slider_target, visual_slider_loss


def _full(value: float, batch: int = 1) -> torch.Tensor:
    return torch.full((batch, 4, 2, 2), value)


@pytest.mark.parametrize(
    ("action", "sign", "expected"),
    [
        ("enhance", 1, 1.0 + 2.0 * (3.0 - 0.5)),
        ("enhance", -1, 1.0 - 5.0),
        ("erase", 1, -4.0),
        ("erase", -1, 6.0),
    ],
)
def test_text_target_is_neutral_plus_signed_eta_times_guide(action, sign, expected):
    target = text_slider_target(_full(1.0), _full(3.0), _full(0.5), 2.0, action=action, sign=sign)
    assert torch.equal(target, _full(expected))


def test_text_target_has_no_gradient():
    positive = _full(3.0).requires_grad_()
    target = text_slider_target(_full(1.0), positive, _full(0.5), 4.0)
    assert not target.requires_grad


def test_text_target_rejects_bad_action_sign_and_shapes():
    with pytest.raises(ValueError, match="action.*'boost'"):
        text_slider_target(_full(0), _full(0), _full(0), 1.0, action="boost")
    with pytest.raises(ValueError, match="sign"):
        text_slider_target(_full(0), _full(0), _full(0), 1.0, sign=2)
    with pytest.raises(ValueError, match="differ in shape"):
        text_slider_target(_full(0), _full(0, batch=2), _full(0), 1.0)


def test_text_loss_is_per_sample_mse_and_differentiable():
    prediction = torch.cat([_full(0.0), _full(2.0)]).requires_grad_()
    target = torch.cat([_full(1.0), _full(2.0)])
    loss = text_slider_loss(prediction, target)
    assert loss.shape == (2,)
    assert torch.allclose(loss, torch.tensor([1.0, 0.0]))
    loss.sum().backward()
    # d/dp mean((p - t)^2) = 2 (p - t) / n, n = 16 elements per sample
    assert torch.allclose(prediction.grad[0], torch.full((4, 2, 2), -2.0 / 16))


def test_visual_loss_sums_both_signed_errors_per_sample():
    noise = torch.cat([_full(0.5), _full(-1.0)])
    before = noise.clone()  # exact: contributes 0
    after = noise + torch.cat([_full(2.0), _full(1.0)])
    assert torch.allclose(visual_slider_loss(before, after, noise), torch.tensor([4.0, 1.0]))
    assert torch.allclose(visual_slider_loss(noise + 1, noise + 1, noise), torch.tensor([2.0, 2.0]))
