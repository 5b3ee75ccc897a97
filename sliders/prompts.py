"""SDXL prompt conditioning for slider training: each distinct prompt is encoded once and cached.

SDXL conditions on the penultimate hidden states of both text encoders, concatenated (`[1, 77, 2048]`
for SDXL), plus the pooled, projected output of encoder 2 (`[1, 1280]`) and six size/crop numbers
(`add_time_ids`). Preservation attributes (DESIGN §3) prefix every prompt of an entry
("male" + "person, very old" -> "male person, very old"); one (entry, attribute) set is drawn per draw.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sliders.config import PromptEntry


@dataclass(frozen=True)
class PromptEmbedding:
    """One prompt's conditioning: `embeds` [1, T, D] and `pooled` [1, P]."""

    embeds: Tensor
    pooled: Tensor


@dataclass(frozen=True)
class PromptSet:
    """The four prompts of one training draw (attribute already prefixed) and its entry's settings."""

    target: str
    positive: str
    negative: str
    neutral: str
    entry: PromptEntry

    @property
    def texts(self) -> tuple[str, str, str, str]:
        """All four prompts, for encoding."""
        return (self.target, self.positive, self.negative, self.neutral)


def _prefix(attribute: str, prompt: str) -> str:
    return f"{attribute} {prompt}".strip()


def expand_prompt_sets(entries: Sequence[PromptEntry], preserve: Sequence[str] = ()) -> list[PromptSet]:
    """Every (entry, attribute) combination as a `PromptSet`; without attributes, the entries as they are."""
    attributes = list(preserve) or [""]
    sets = []
    for entry in entries:
        for attribute in attributes:
            assert entry.positive is not None and entry.neutral is not None
            sets.append(
                PromptSet(
                    target=_prefix(attribute, entry.target),
                    positive=_prefix(attribute, entry.positive),
                    negative=_prefix(attribute, entry.unconditional),
                    neutral=_prefix(attribute, entry.neutral),
                    entry=entry,
                )
            )
    return sets


class PromptCache:
    """Encodes prompts with the pipeline's text encoders, once per distinct prompt."""

    def __init__(self, pipe, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        self.pipe = pipe
        self.device = torch.device(device) if device is not None else pipe.unet.device
        self.dtype = dtype or pipe.unet.dtype
        self._cache: dict[str, PromptEmbedding] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def encode(self, prompt: str) -> PromptEmbedding:
        """The cached embedding of `prompt`, encoding it on first use."""
        if prompt not in self._cache:
            with torch.no_grad():
                embeds, _, pooled, _ = self.pipe.encode_prompt(
                    prompt, device=self.pipe.text_encoder_2.device, do_classifier_free_guidance=False
                )
            self._cache[prompt] = PromptEmbedding(
                embeds.to(self.device, self.dtype), pooled.to(self.device, self.dtype)
            )
        return self._cache[prompt]

    def encode_all(self, prompts: Iterable[str]) -> None:
        """Encode every prompt now (so the text encoders can leave the accelerator afterwards)."""
        for prompt in prompts:
            self.encode(prompt)

    def batch(self, prompts: Sequence[str], repeat: int = 1) -> PromptEmbedding:
        """Embeddings of `prompts`, each repeated `repeat` times, stacked in that order: [len*repeat, ...]."""
        items = [self.encode(p) for p in prompts]
        embeds = torch.cat([item.embeds.expand(repeat, -1, -1) for item in items])
        pooled = torch.cat([item.pooled.expand(repeat, -1) for item in items])
        return PromptEmbedding(embeds, pooled)


def add_time_ids(height: int, width: int, batch: int, device, dtype: torch.dtype) -> Tensor:
    """SDXL micro-conditioning [batch, 6]: original size, crop top-left (0, 0), target size, in pixels."""
    ids = torch.tensor([[height, width, 0, 0, height, width]], device=device, dtype=dtype)
    return ids.expand(batch, -1)


def crop_time_ids(
    original: tuple[int, int], top_left: Tensor, target: tuple[int, int], dtype: torch.dtype
) -> Tensor:
    """SDXL micro-conditioning [B, 6] of crops: original (h, w), each crop's (top, left), target (h, w).

    All in pixels, as SDXL's training conditions crops (arXiv 2307.01952, §2.2): the image was `original`,
    the window starting at `top_left` was cut out and shown at `target`.
    """
    batch, device = top_left.shape[0], top_left.device
    sizes = torch.tensor([[*original, *target]], device=device, dtype=dtype).expand(batch, -1)
    return torch.cat([sizes[:, :2], top_left.to(dtype), sizes[:, 2:]], dim=1)


def predict_noise(
    model, x: Tensor, t: Tensor, cond: PromptEmbedding, vae_scale: int, time_ids: Tensor | None = None
) -> Tensor:
    """The SDXL UNet's noise prediction for latents x [B, 4, h, w] at timestep(s) t under `cond` [B, ...].

    `time_ids` [B, 6]: SDXL's size/crop conditioning (default: x is the whole, uncropped image).
    """
    batch, (h, w) = x.shape[0], x.shape[-2:]
    if time_ids is None:
        time_ids = add_time_ids(h * vae_scale, w * vae_scale, batch, x.device, x.dtype)
    assert time_ids.shape == (batch, 6), f"time_ids: expected [{batch}, 6], got {list(time_ids.shape)}"
    added = {"text_embeds": cond.pooled, "time_ids": time_ids}
    return model(x, t, encoder_hidden_states=cond.embeds, added_cond_kwargs=added).sample
