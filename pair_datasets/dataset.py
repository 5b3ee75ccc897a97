"""A torch Dataset of cached pair latents for the visual slider trainer (DESIGN §3, visual slider)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from pair_datasets.corpus import Corpus
from pair_datasets.latent_cache import LatentCache


class PairLatentDataset(Dataset):
    """Items `(before [C, h, w], after [C, h, w], level (float32 scalar), caption str)` from a latent cache.

    Paired augmentation: with probability `flip_p` both latents of a pair are flipped horizontally
    together. The flip is done in latent space: the VAE is convolutional, so the latent of a mirrored
    image is (up to border effects) the mirrored latent, and no image is re-encoded.
    """

    def __init__(
        self,
        corpus: Corpus,
        cache: LatentCache,
        flip_p: float = 0.0,
        default_caption: str = "",
        generator: torch.Generator | None = None,
    ) -> None:
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        if cache.corpus.root.resolve() != corpus.root.resolve():
            raise ValueError(f"latent cache {cache.path} belongs to another corpus than {corpus.root}")
        self.flip_p = flip_p
        self.generator = generator
        # Resolved up front: a missing or stale latent is an error now, not in the middle of training.
        self.items = [
            (cache.latent(r.before), cache.latent(r.after), float(r.level), r.caption or default_caption)
            for r in corpus.records()
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
        before, after, level, caption = self.items[index]
        if self.flip_p > 0 and torch.rand((), generator=self.generator).item() < self.flip_p:
            before, after = before.flip(-1), after.flip(-1)  # the same flip for both images of the pair
        return before, after, torch.tensor(level, dtype=torch.float32), caption
