"""Slider libraries: many sliders from one generator in one resumable, shardable build.

plan.py       what a build makes of each candidate (settings, one GAN -> slider plan each)
build.py      the build: mine -> train -> calibrate -> preview per slider, resumable
together.py   several sliders trained in one loop (their pairs in one batch, routed per adapter)
sharding.py   whole sliders per process under `accelerate launch` / `torchrun`
index.py      build.json, entry.json per slider, index.json; renames
html.py       the index.html gallery
"""
