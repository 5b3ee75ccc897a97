"""Fixtures of the bridge tests: a private statistics cache, the tiny generator and its exported file."""

from __future__ import annotations

import pytest
import torch
from tiny_gan import TINY

from stylegan_bridge.loading import export_generator
from stylegan_bridge.networks import Generator


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Style statistics never go to the user's ~/.cache from a test."""
    monkeypatch.setenv("CONCEPT_TRANSFER_CACHE", str(tmp_path / "cache-home"))


@pytest.fixture(scope="module")
def G():
    """The tiny generator (seed 0), frozen."""
    torch.manual_seed(0)
    return Generator(TINY).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def gan_file(G, tmp_path_factory):
    """The tiny generator exported as .safetensors, for the command-line tests."""
    return export_generator(G, tmp_path_factory.mktemp("gan") / "tiny.safetensors")
