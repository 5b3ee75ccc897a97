"""Directions of w beyond GANSpace's principal ones: independent components, and the input block's transform.

`ica_directions`: FastICA (Hyvärinen 1999) on the principal subspace of w. `input_directions`: the
rotation and translation that StyleGAN3's `input` block reads from ws[0]. Both return ranked
`Direction`s of kind "w" for direction files and for `stylegan_bridge.discovery`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from stylegan_bridge.direction_file import Direction
from stylegan_bridge.directions import sample_w


def independent_components(w: np.ndarray, components: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(unit directions [k, d], lengths [k]) of FastICA's mixing columns (Hyvärinen 1999), longest first.

    For w = A s + mean with independent unit-variance sources s, column k of A is how w moves when
    source k rises by one std: its direction (sign: largest entry positive) and its length.
    """
    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    ica = FastICA(n_components=components, whiten="unit-variance", random_state=seed, max_iter=1000, tol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # an unconverged rotation is still a rotation
        ica.fit(w)
    mixing = ica.mixing_.T  # [k, d]
    lengths = np.linalg.norm(mixing, axis=1)
    order = np.argsort(-lengths, kind="stable")
    units = mixing[order] / lengths[order, None]
    units = units * np.sign(units[np.arange(len(units)), np.argmax(np.abs(units), axis=1)])[:, None]
    return units, lengths[order]


def ica_directions(
    G: nn.Module, num_samples: int = 10_000, components: int = 10, seed: int = 0, psi: float = 1.0
) -> list[Direction]:
    """Independent directions of w (FastICA on GANSpace's principal subspace), largest std of w first.

    The principal directions of a generator whose factors are independent come out as mixtures of
    them (any rotation of a whitened subspace is as principal as another); ICA picks the rotation whose
    projections are least Gaussian: the independent factors. `sigma` is the mixing column's length.
    """
    if not 1 <= components <= min(num_samples, G.w_dim):
        raise ValueError(f"--components must be in 1..{min(num_samples, G.w_dim)}, got {components}")
    units, lengths = independent_components(sample_w(G, num_samples, seed, psi), components, seed)
    return [
        Direction(
            kind="w",
            name=f"ic{k}",
            score=float(length),
            w=torch.from_numpy(unit).float(),
            sigma=float(length),
            info={"mixing_norm": float(length)},
        )
        for k, (unit, length) in enumerate(zip(units, lengths))
    ]


def input_directions(
    G: nn.Module, num_samples: int = 10_000, seed: int = 0, psi: float = 1.0
) -> list[Direction]:
    """Rotation and translation of StyleGAN3's `input` block as w directions on ws[0] alone.

    The block's affine maps ws[0] to t = (cos, sin, tx, ty) (Karras et al. 2021 sec. 3.1 and app. F), so
    it has exactly these degrees of freedom. Each direction is the least-norm change of ws[0] that moves
    one of sin, tx, ty and nothing else of t (pseudo-inverse of the affine); `sigma` is the std of that
    entry of t over `num_samples` w, in w units along the direction. An entry that no w moves (an
    untrained affine) is left out.
    """
    affine = G.synthesis.input.affine
    device = next(G.parameters()).device
    w = torch.from_numpy(sample_w(G, num_samples, seed, psi)).float().to(device)
    with torch.no_grad():
        t = affine(w).double().cpu()  # [N, 4]
        eye = torch.eye(G.w_dim, device=device)
        jacobian = (affine(eye) - affine(torch.zeros_like(eye))).double().cpu().T  # [4, w_dim]: t = A w + b
    inverse = torch.linalg.pinv(jacobian)  # [w_dim, 4]
    out = []
    for k, name in ((1, "rotate"), (2, "tx"), (3, "ty")):
        step = inverse[:, k]  # w change that moves t[k] by 1
        spread = float(t[:, k].std())
        if float(jacobian[k].norm()) < 1e-8 or spread < 1e-8:
            continue
        out.append(
            Direction(
                kind="w",
                name=f"input.{name}",
                score=spread,
                w=(step / step.norm()).float(),
                sigma=spread * float(step.norm()),
                ws=[0],
                info={"input_transform_entry": k, "std": spread},
            )
        )
    return out
