"""Slider edits of real photos: invert the photo, then re-generate it with the sliders behind the gate.

`photo` reads and fits the photo (the `pairs ingest` size policy), `inversion` inverts it through
diffusers' schedulers, `regenerate` builds the SDXL pipeline that samples it back, `cache` keeps
inversions on disk, `editor` ties them together for `apply --invert` and the studio. This file stays
free of torch so the command line can name the methods without loading it.
"""

METHODS = ("edit-friendly", "ddim")
