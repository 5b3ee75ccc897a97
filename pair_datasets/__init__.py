"""Paired before/after corpora: format, ingestion of user artwork, validation, latent cache, Dataset.

Importing this package needs only Pillow, numpy and tqdm; the torch parts (`LatentCache`, `PairLatentDataset`)
are imported on first use so the StyleGAN3 bridge and the CLI stay light.
"""

from __future__ import annotations

from pair_datasets.corpus import Corpus, CorpusInfo, PairRecord
from pair_datasets.ingest import IngestOptions, IngestReport, ingest
from pair_datasets.overview import contact_sheet, summarize
from pair_datasets.validate import validate_corpus

__all__ = [
    "Corpus",
    "CorpusInfo",
    "IngestOptions",
    "IngestReport",
    "LatentCache",
    "PairLatentDataset",
    "PairRecord",
    "contact_sheet",
    "ingest",
    "summarize",
    "validate_corpus",
    "vae_fingerprint",
]

_LAZY = {
    "LatentCache": "pair_datasets.latent_cache",
    "vae_fingerprint": "pair_datasets.latent_cache",
    "PairLatentDataset": "pair_datasets.dataset",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pair_datasets' has no attribute {name!r}")
