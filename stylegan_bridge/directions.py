"""Direction discovery: localised style channels (StyleSpace), PCA of w (GANSpace), linear boundaries (InterFaceGAN).

Each function returns `Direction`s ranked best first; `stylegan_bridge.direction_file.save_directions`
writes them for `mine --direction`.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from stylegan_bridge.direction_file import Direction
from stylegan_bridge.edit_batches import RenderedBatch, render_edits
from stylegan_bridge.edits import channel_edit, render
from stylegan_bridge.style_space import (
    StyleLayer,
    StyleStats,
    resolve_layer,
    style_layers,
    ws_from_seeds,
)

ScoreFn = Callable[[torch.Tensor], Any]


def parse_box(text: str) -> tuple[float, float, float, float]:
    """`x0,y0,x1,y1` in relative coordinates (0..1, origin top left) -> a tuple; ValueError if malformed."""
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--box {text!r}: expected four numbers x0,y0,x1,y1 in 0..1") from None
    if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
        raise ValueError(f"--box {text!r}: expected x0,y0,x1,y1 with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    return box  # type: ignore[return-value]


def box_mask(box: Sequence[float], size: int) -> torch.Tensor:
    """Boolean [size, size] mask of a relative box (pixel centres inside the box)."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    xs = (centres >= box[0]) & (centres <= box[2])
    ys = (centres >= box[1]) & (centres <= box[3])
    return ys[:, None] & xs[None, :]


def load_mask(path: Path, size: int) -> torch.Tensor:
    """Boolean [size, size] mask from a PNG (bright = inside), resized to the image size."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask image not found")
    try:
        with Image.open(path) as image:
            gray = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
    except OSError as error:
        raise ValueError(f"{path}: not a readable mask image ({error})") from None
    return torch.from_numpy(np.asarray(gray) >= 128)


def load_callable(spec: str) -> ScoreFn:
    """`package.module:function` or `path/to/file.py:function` -> the function (scores images [B,C,H,W] -> [B])."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"scoring function {spec!r}: expected module:function or file.py:function")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: scoring module not found")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"scoring function {spec!r}: cannot import {module_name!r} ({error})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"scoring function {spec!r}: {module_name} has no callable {attr!r}")
    return fn


def call_scores(score_fn: ScoreFn, images: torch.Tensor) -> torch.Tensor:
    """score_fn(images) as a float64 [B] tensor; ValueError when it returns anything else."""
    scores = torch.as_tensor(np.asarray(_to_numpy(score_fn(images)), dtype=np.float64))
    if scores.shape != (images.shape[0],) or not torch.isfinite(scores).all():
        raise ValueError(
            f"scoring function must return {images.shape[0]} finite numbers, got shape {tuple(scores.shape)}"
        )
    return scores


def _to_numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def channel_candidates(
    G: nn.Module, layers: Sequence[int | str] | None = None
) -> list[tuple[StyleLayer, int]]:
    """(layer, channel) of every style channel of `layers` (all style layers when None or empty), in order."""
    chosen = style_layers(G) if not layers else [resolve_layer(G, key) for key in layers]
    return [(layer, c) for layer in chosen for c in range(layer.dim)]


def rank_channels(
    G: nn.Module,
    stats: StyleStats,
    seeds: Sequence[int] = (0, 1, 2, 3),
    delta: float = 5.0,
    psi: float = 0.7,
    cutoff: int | None = None,
    layers: Sequence[int | str] | None = None,
    region: torch.Tensor | None = None,
    score_fn: ScoreFn | None = None,
    batch: int = 16,
    progress: bool = True,
) -> list[Direction]:
    """Every channel of `layers` ranked by the effect of `+delta * sigma_c` on `seeds`, best first.

    With `region` (bool [R, R]): localisation = mean |change| inside / mean |change| outside, pooled over
    seeds (StyleSpace's idea, Wu et al. 2021 sec. 4, with a user region instead of a segmentation).
    With `score_fn`: |mean change of the score|, and `sign` records which way the channel raises it.
    """
    if (region is None) == (score_fn is None):
        raise ValueError("give exactly one of a region (--box / --mask) or a scoring function (--score)")
    candidates = channel_candidates(G, layers)
    ws0 = ws_from_seeds(G, seeds, psi, cutoff)
    base = render(G, ws0)
    edits = [channel_edit(G, layer.name, c, stats) for layer, c in candidates]
    batches = render_edits(G, ws0, edits, delta, batch, progress, desc="channels")
    if region is not None:
        scores, signs, info = _region_scores(batches, base, region, len(candidates))
    else:
        scores, signs, info = _score_changes(batches, base, score_fn, len(candidates))
    order = sorted(range(len(candidates)), key=lambda k: (-float(scores[k]), k))
    return [
        Direction(
            kind="channel",
            name=f"{candidates[k][0].name}[{candidates[k][1]}]",
            score=float(scores[k]),
            sign=float(signs[k]),
            layer=candidates[k][0].name,
            layer_index=candidates[k][0].index,
            channel=candidates[k][1],
            info=info[k],
        )
        for k in order
    ]


def _region_scores(
    batches: Iterable[RenderedBatch], base: torch.Tensor, region: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, float]]]:
    """(localisation, signs = +1, info) per candidate: mean |change| inside / outside the region."""
    inside_w, outside_w = _region_weights(region, base.shape[-1], base.device)
    inside = torch.zeros(count, dtype=torch.float64)
    outside = torch.zeros(count, dtype=torch.float64)
    for rendered in batches:
        diff = (rendered.images - base[rendered.seeds]).abs().mean(dim=1).double()  # [B, R, R]
        inside.index_add_(0, rendered.edits, (diff * inside_w).sum(dim=(1, 2)).cpu())
        outside.index_add_(0, rendered.edits, (diff * outside_w).sum(dim=(1, 2)).cpu())
    num_seeds = base.shape[0]
    info = [
        {"inside": float(i / num_seeds), "outside": float(o / num_seeds)} for i, o in zip(inside, outside)
    ]
    return inside / (outside + 1e-12), torch.ones(count), info


def _score_changes(
    batches: Iterable[RenderedBatch], base: torch.Tensor, score_fn: ScoreFn, count: int
) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, float]]]:
    """(|mean change of the score|, its sign, info) per candidate over the seeds."""
    base_scores = call_scores(score_fn, base)
    changes = torch.zeros(count, base.shape[0], dtype=torch.float64)
    for rendered in batches:
        changes[rendered.edits, rendered.seeds] = (
            call_scores(score_fn, rendered.images) - base_scores[rendered.seeds]
        )
    mean_change = changes.mean(dim=1)
    info = [
        {"mean_change": float(m), "std_change": float(s)}
        for m, s in zip(mean_change, changes.std(dim=1, correction=0))
    ]
    return mean_change.abs(), torch.where(mean_change < 0, -1.0, 1.0), info


def _region_weights(
    region: torch.Tensor, size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel weights that average over the inside and over the outside of a region mask."""
    if region.shape != (size, size):
        raise ValueError(f"region mask must be {size}x{size} (the image size), got {tuple(region.shape)}")
    inside = region.to(device=device, dtype=torch.float64)
    area_in, area_out = float(inside.sum()), float((1 - inside).sum())
    if area_in == 0:
        raise ValueError("region is empty: no pixel of the image lies inside it")
    if area_out == 0:
        raise ValueError("region covers the whole image: nothing outside to compare with")
    return inside / area_in, (1 - inside) / area_out


def sample_w(
    G: nn.Module, num_samples: int, seed: int = 0, psi: float = 1.0, batch: int = 4096
) -> np.ndarray:
    """w [N, w_dim] (float64) of `num_samples` z ~ N(0, I) drawn from one torch generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, num_samples, batch):
            z = torch.randn([min(batch, num_samples - start), G.z_dim], generator=generator).to(device)
            out.append(G.mapping(z, None, truncation_psi=psi)[:, 0].double().cpu().numpy())
    return np.concatenate(out)


def pca_directions(
    G: nn.Module, num_samples: int = 10_000, components: int = 10, seed: int = 0, psi: float = 1.0
) -> list[Direction]:
    """Principal directions of w (GANSpace, Härkönen et al. 2020 sec. 2), by explained variance."""
    from sklearn.decomposition import PCA

    if not 1 <= components <= min(num_samples, G.w_dim):
        raise ValueError(f"--components must be in 1..{min(num_samples, G.w_dim)}, got {components}")
    w = sample_w(G, num_samples, seed, psi)
    pca = PCA(n_components=components, svd_solver="full").fit(w)
    out = []
    for k, (vector, variance, ratio) in enumerate(
        zip(pca.components_, pca.explained_variance_, pca.explained_variance_ratio_)
    ):
        vector = vector * np.sign(vector[np.argmax(np.abs(vector))])  # fixed sign: largest entry positive
        out.append(
            Direction(
                kind="w",
                name=f"pc{k}",
                score=float(ratio),
                w=torch.from_numpy(vector).float(),
                sigma=float(np.sqrt(variance)),
                info={"explained_variance": float(variance), "explained_variance_ratio": float(ratio)},
            )
        )
    return out


def read_label_csv(path: Path) -> tuple[list[int], np.ndarray]:
    """Seeds and 0/1 labels from a CSV with columns `seed,label` (header optional; labels 0/1/true/false)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label CSV not found")
    seeds, labels = [], []
    with open(path, newline="", encoding="utf-8") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip() or (line_no == 1 and row[0].strip().lower() == "seed"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path} line {line_no}: expected seed,label")
            value = row[1].strip().lower()
            if value not in ("0", "1", "true", "false"):
                raise ValueError(f"{path} line {line_no}: label must be 0, 1, true or false, got {row[1]!r}")
            try:
                seeds.append(int(row[0]))
            except ValueError:
                raise ValueError(f"{path} line {line_no}: seed must be an integer, got {row[0]!r}") from None
            labels.append(value in ("1", "true"))
    return seeds, np.asarray(labels, dtype=np.int64)


def labels_from_scores(scores: np.ndarray, extreme: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices kept, 0/1 labels): above/below the median, or only the top and bottom `extreme` fraction."""
    order = np.argsort(scores, kind="stable")
    n = len(scores)
    keep = n // 2 if extreme is None else int(round(n * extreme))
    if not 1 <= keep <= n // 2:
        raise ValueError(f"--extreme {extreme}: keeps {keep} samples per class out of {n}")
    kept = np.concatenate([order[:keep], order[n - keep :]])
    return kept, np.concatenate([np.zeros(keep, np.int64), np.ones(keep, np.int64)])


def fit_boundary(
    w: np.ndarray, labels: np.ndarray, classifier: str = "svm", test_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Unit normal of a linear boundary in w (InterFaceGAN, Shen et al. 2020 sec. 2.2) and held-out accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.svm import LinearSVC

    counts = np.bincount(labels, minlength=2)
    if len(counts) != 2 or counts.min() < 3:
        raise ValueError(f"labels: need at least 3 samples of each class (0 and 1), got {counts.tolist()}")
    if classifier not in ("svm", "logistic"):
        raise ValueError(f"--classifier must be svm or logistic, got {classifier!r}")
    w_train, w_test, y_train, y_test = train_test_split(
        w, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    model = LinearSVC(C=1.0, max_iter=20_000) if classifier == "svm" else LogisticRegression(max_iter=5_000)
    model.fit(w_train, y_train)
    normal = model.coef_.reshape(-1)
    normal = normal / np.linalg.norm(normal)
    info = {
        "accuracy": float(model.score(w_test, y_test)),
        "train_accuracy": float(model.score(w_train, y_train)),
        "n_train": len(y_train),
        "n_test": len(y_test),
        "classifier": classifier,
    }
    return normal, info


def svm_direction(
    G: nn.Module,
    seeds: Sequence[int],
    labels: np.ndarray,
    psi: float = 0.7,
    classifier: str = "svm",
    test_fraction: float = 0.3,
    seed: int = 0,
) -> Direction:
    """A w direction pointing from label 0 to label 1 for the ws of `seeds` (ws[:, 0] at truncation psi)."""
    if len(seeds) != len(labels):
        raise ValueError(f"labels: {len(labels)} labels for {len(seeds)} seeds")
    w = np.concatenate(
        [
            ws_from_seeds(G, seeds[i : i + 256], psi)[:, 0].double().cpu().numpy()
            for i in range(0, len(seeds), 256)
        ]
    )
    normal, info = fit_boundary(w, labels, classifier, test_fraction, seed)
    sigma = float(np.std(w @ normal))
    return Direction(
        kind="w",
        name=classifier,
        score=info["accuracy"],
        w=torch.from_numpy(normal).float(),
        sigma=sigma,
        info=info,
    )
