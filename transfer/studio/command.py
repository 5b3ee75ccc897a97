"""The `concept-transfer apply` command line that renders the same result as a job in the studio.

Every option is written out (no reliance on defaults that could change): model, sliders with their
scales in the job's order, prompt, seed, steps, guidance, size, the gate when the user set one, the
swept scales of a comparison, the picture and strength (or inversion method) of an edit, and the CPU
threads (another thread count sums in another order, which changes the last bits of the pixels).
Numbers use Python's shortest round-trip form, so the command carries exactly the values the studio used.
"""

from __future__ import annotations

import shlex

from transfer.studio.job import Job


def _number(value: float) -> str:
    """The shortest text that reads back as exactly `value` (integers without '.0')."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def apply_argv(job: Job, model: str, out: str, threads: int | None = None) -> list[str]:
    """The argument list (after `concept-transfer`) of the apply run that reproduces `job`."""
    argv = ["apply", "--model", model]
    for slider in job.sliders:
        argv.append(f"--slider={slider.path}:{_number(slider.scale)}")
    # `--option=value`: a prompt that starts with '-' must not read as an option.
    argv.append(f"--prompt={job.prompt}")
    if job.negative_prompt:
        argv.append(f"--negative-prompt={job.negative_prompt}")
    if job.sweep_scales is not None:
        argv.append("--scales=" + ",".join(_number(s) for s in job.sweep_scales))
    argv += ["--seeds", str(job.seed), "--steps", str(job.steps), "--guidance", _number(job.guidance)]
    argv += ["--size", f"{job.width}x{job.height}"]
    if job.gate.start_noise is not None:
        argv += ["--start-noise", _number(job.gate.start_noise)]
    if job.gate.start_fraction is not None:
        argv += ["--start-fraction", _number(job.gate.start_fraction)]
    if job.image is not None:
        argv.append(f"--image={job.image}")
        argv += ["--invert", job.invert] if job.invert else ["--strength", _number(job.strength or 0.0)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return [*argv, f"--out={out}"]


def apply_command(job: Job, model: str, out: str, threads: int | None = None) -> str:
    """The shell line (quoted for POSIX shells) of `apply_argv`."""
    return shlex.join(["concept-transfer", *apply_argv(job, model, out, threads)])
