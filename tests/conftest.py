"""Shared fixtures: a tiny SDXL pipeline saved once per session and loaded the way users load models."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def tiny_sdxl_path(tmp_path_factory):
    """A saved tiny SDXL diffusers folder (built offline with a local tokenizer)."""
    from toyworld.tiny_sdxl import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny_sdxl") / "model", seed=0)


@pytest.fixture
def tiny_pipe(tiny_sdxl_path):
    """A fresh tiny pipeline loaded through `transfer.sdxl.load_sdxl` (CPU, fp32)."""
    from transfer.sdxl import load_sdxl

    return load_sdxl(str(tiny_sdxl_path), device="cpu")
