"""How many CPU threads torch uses: one for a small model on the CPU, unless the user says otherwise.

Why (`benchmarks/cpu_threads.py`, toy SDXL on the 2-core development machine): torch's default is one
thread per core, so every operation of a small model is split in two and each half waits at an
OpenMP barrier for the other, spinning. When the second core is busy with anything else, that wait
lasts until the scheduler gives the other thread the core back, which is long against an operation
of the toy UNet. Measured with other jobs running (load 6-12 on 2 cores): a text-slider step took
6.4x to 47x as long with 2 threads as with 1, a sampled image 8.7x to 29x; with OMP_WAIT_POLICY=passive
(threads sleep instead of spinning) 2 threads came closer (3.2x a step, 1.9x an image) but one thread
stayed the fastest. A large model (SDXL) has enough work per operation for the threads to pay off,
so it keeps torch's default.
"""

from __future__ import annotations

import os

import torch
from torch import nn

# Below this many parameters a UNet counts as small (the toy UNet has about 2.7M, SDXL's 2.6B).
SMALL_MODEL_PARAMETERS = 100_000_000
# A generator renders at most this many pixels a side to count as small (the toy GAN: 64).
SMALL_GENERATOR_RESOLUTION = 256


def is_small_unet(unet: nn.Module) -> bool:
    """Whether a UNet has too little work per operation to share it between CPU threads."""
    return sum(p.numel() for p in unet.parameters()) < SMALL_MODEL_PARAMETERS


def is_small_generator(G: nn.Module) -> bool:
    """Whether a StyleGAN3 generator's images are small enough that one CPU thread is fastest."""
    return int(getattr(G, "img_resolution", SMALL_GENERATOR_RESOLUTION + 1)) <= SMALL_GENERATOR_RESOLUTION


def configure_threads(requested: int | None, device: torch.device | str, small: bool) -> int:
    """Set torch's CPU threads: `requested` if given; else 1 for a small model on the CPU; returns the count.

    An OMP_NUM_THREADS set by the user is their choice too and is kept when nothing is requested.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads: must be 1 or more, got {requested}")
        torch.set_num_threads(requested)
    elif torch.device(device).type == "cpu" and small and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    return torch.get_num_threads()
