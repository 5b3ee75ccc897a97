"""Latent cache: each corpus image is VAE-encoded once per (VAE, resolution) and reused across runs.

File: `<corpus>/cache/<vae fingerprint>-<resolution>.safetensors`, one tensor `[C, h, w]` per image keyed
by its corpus-relative path, with the SHA-256 of the image file per entry in the header. An entry is
re-encoded when its image changed; another VAE or resolution is another file. The file is written only by
`write()` / `ensure()`, atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from pair_datasets.atomic import atomic_save
from pair_datasets.corpus import Corpus
from pair_datasets.images import center_square, to_rgb

CACHE_DIR = "cache"
CACHE_FORMAT = "concept-transfer-latent-cache/1"


def vae_fingerprint(vae: torch.nn.Module, dtype: torch.dtype = torch.float32) -> str:
    """16 hex digits identifying the encoder function: class, config (minus `_` keys), every weight, dtype."""
    digest = hashlib.sha256()
    config = {k: v for k, v in dict(getattr(vae, "config", {})).items() if not k.startswith("_")}
    digest.update(type(vae).__name__.encode())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(str(dtype).encode())
    # All bytes, not a sample: a fine-tune may change any weight; SDXL's VAE (84M params) hashes in <1 s.
    for name, tensor in sorted(vae.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def scale_latents(z: torch.Tensor, config) -> torch.Tensor:
    """Map raw VAE latents to the diffusion model's space, the inverse of the SDXL pipeline's decode step.

    With `latents_mean`/`latents_std` in the config: `(z - mean) * scaling_factor / std`; otherwise
    `(z - shift_factor) * scaling_factor` (shift 0 when absent, as for the SDXL VAE).
    """
    scaling = float(getattr(config, "scaling_factor", None) or 1.0)
    mean = getattr(config, "latents_mean", None)
    std = getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean, dtype=z.dtype, device=z.device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=z.dtype, device=z.device).view(1, -1, 1, 1)
        return (z - mean_t) * scaling / std_t
    shift = getattr(config, "shift_factor", None) or 0.0
    return (z - shift) * scaling


def image_to_tensor(path: Path, resolution: int) -> torch.Tensor:
    """Read an image as `[3, R, R]` float32 in [-1, 1] (center square crop + Lanczos, as ingest does)."""
    with Image.open(path) as image:
        image = center_square(to_rgb(image), resolution)
        array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class LatentCache:
    """Cached VAE latents of a corpus's images at one resolution; `ensure()` encodes what is stale and writes.

    Latents are the MEAN of the VAE's latent distribution (deterministic: the same image always gives
    the same latent), scaled by `scale_latents`. Encoding runs in `dtype` (fp32 by default, because the
    SDXL VAE overflows in fp16; pass float16 only with a fp16-fix VAE).
    """

    def __init__(
        self,
        corpus: Corpus,
        vae: torch.nn.Module,
        resolution: int | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        device: torch.device | str | None = None,
    ) -> None:
        self.corpus = corpus
        self.vae = vae
        self.resolution = int(resolution or corpus.info.resolution)
        self.dtype = dtype
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else next(vae.parameters()).device
        self.fingerprint = vae_fingerprint(vae, dtype)
        self.path = corpus.root / CACHE_DIR / f"{self.fingerprint}-{self.resolution}.safetensors"
        self.num_encoded = 0  # images encoded by this object, over all refresh() calls
        self._latents: dict[str, torch.Tensor] = {}
        self._hashes: dict[str, str] = {}
        self._fresh: set[str] = set()  # entries checked against the image files in this process
        self._file_hashes: dict[str, str] = {}  # image hashes seen by the last stale()
        self._dirty = False
        self._read()

    def _read(self) -> None:
        """Load the cache file if it exists and belongs to this VAE/resolution; a broken file is ignored."""
        if not self.path.is_file():
            return
        try:
            with safe_open(str(self.path), framework="pt") as handle:
                meta = handle.metadata() or {}
                if (
                    meta.get("format") != CACHE_FORMAT
                    or meta.get("vae_fingerprint") != self.fingerprint
                    or meta.get("resolution") != str(self.resolution)
                ):
                    self._dirty = True
                    return
                hashes = json.loads(meta.get("hashes", "{}"))
                latents = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError, ValueError):
            self._dirty = True  # rebuilt by the next ensure(); never trusted
            return
        self._hashes = {key: hashes[key] for key in latents if key in hashes}
        self._latents = {key: latents[key] for key in self._hashes}

    def image_paths(self) -> list[str]:
        """Corpus-relative paths of every image the corpus's pairs use, in manifest order."""
        seen: dict[str, None] = {}
        for record in self.corpus.records():
            seen.setdefault(record.before)
            seen.setdefault(record.after)
        return list(seen)

    def stale(self) -> list[str]:
        """Images whose cached latent is missing or was made from different file contents."""
        stale = []
        for relpath in self.image_paths():
            sha = file_sha256(self.corpus.path_of(relpath))
            if self._hashes.get(relpath) == sha and relpath in self._latents:
                self._fresh.add(relpath)
            else:
                self._fresh.discard(relpath)
                stale.append(relpath)
            self._file_hashes[relpath] = sha
        return stale

    def refresh(self, progress: bool = False) -> int:
        """Encode every stale image into memory (no write); returns how many were encoded."""
        todo = self.stale()
        if not todo:
            return 0
        original_dtype = next(self.vae.parameters()).dtype
        bar = tqdm(total=len(todo), desc="encode latents", unit="img", disable=not progress)
        try:
            if original_dtype != self.dtype:
                self.vae.to(self.dtype)  # restored below; fp16 -> fp32 -> fp16 is lossless
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                latents = self.encode([self.corpus.path_of(p) for p in batch])
                for relpath, latent in zip(batch, latents):
                    self._latents[relpath] = latent.clone()  # own storage, not a view of the batch
                    self._hashes[relpath] = self._file_hashes[relpath]
                    self._fresh.add(relpath)
                bar.update(len(batch))
        finally:
            if original_dtype != self.dtype:
                self.vae.to(original_dtype)
            bar.close()
        self.num_encoded += len(todo)
        self._dirty = True
        return len(todo)

    @torch.no_grad()
    def encode(self, paths: list[Path]) -> torch.Tensor:
        """Encode image files to scaled latents `[B, C, R/f, R/f]` (float32, on the CPU)."""
        pixels = torch.stack([self._pixels(p) for p in paths])  # [B, 3, R, R]
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        z = self.vae.encode(pixels).latent_dist.mean
        return scale_latents(z.float(), self.vae.config).cpu()

    def _pixels(self, path: Path) -> torch.Tensor:
        """One corpus image as pixels; a broken file is a ValueError naming its pair(s)."""
        try:
            return image_to_tensor(path, self.resolution)
        except (OSError, SyntaxError) as error:  # Pillow: truncated or corrupt data
            relpath = Path(path).resolve().relative_to(self.corpus.root.resolve()).as_posix()
            pairs = [r.id for r in self.corpus.records() if relpath in (r.before, r.after)]
            raise ValueError(
                f"corpus {self.corpus.root}: image {relpath} (pair {', '.join(map(repr, pairs))}) cannot be "
                f"read ({error}); `concept-transfer pairs validate {self.corpus.root}` lists every broken pair"
            ) from None

    def write(self) -> Path:
        """Write the entries of the corpus's current images atomically; returns the cache path."""
        keep = [p for p in self.image_paths() if p in self._latents]
        tensors = {p: self._latents[p].contiguous() for p in keep}
        meta = {
            "format": CACHE_FORMAT,
            "vae_fingerprint": self.fingerprint,
            "resolution": str(self.resolution),
            "dtype": str(self.dtype),
            "latent_distribution": "mean",
            "hashes": json.dumps({p: self._hashes[p] for p in keep}, sort_keys=True),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(self.path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        self._dirty = False
        return self.path

    def ensure(self, progress: bool = False) -> int:
        """Encode what is stale and write the file if anything changed; returns how many were encoded."""
        encoded = self.refresh(progress=progress)
        stored = set(self.image_paths())
        if encoded or self._dirty or not self.path.is_file() or set(self._latents) - stored:
            self.write()
        return encoded

    def __contains__(self, relpath: str) -> bool:
        return relpath in self._fresh

    def image_sha256(self, relpath: str) -> str:
        """SHA-256 of the image file the fresh latent of `relpath` was encoded from."""
        self.latent(relpath)  # the same freshness check
        return self._hashes[relpath]

    def latent(self, relpath: str) -> torch.Tensor:
        """The cached latent `[C, h, w]` of a corpus image; ValueError unless checked fresh by ensure()."""
        if relpath not in self._fresh:
            raise ValueError(f"latent cache {self.path}: no fresh latent for {relpath}; call ensure() first")
        return self._latents[relpath]
