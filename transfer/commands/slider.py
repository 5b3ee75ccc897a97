"""`concept-transfer slider info FILE`: describe a slider file without loading any model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and peft load only when a command runs, not to build the parser
    from sliders.slider_file import SliderFile


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `slider` with its `info` subcommand."""
    parser = subparsers.add_parser("slider", help="inspect slider files")
    actions = parser.add_subparsers(dest="slider_command", metavar="ACTION", required=True)
    info = actions.add_parser(
        "info",
        help="print kind, concept, rank, alpha, targets, base model and all metadata of a slider file",
    )
    info.add_argument(
        "file", type=Path, help="slider file (.safetensors, or an original Concept Sliders .pt)"
    )
    info.set_defaults(func=run_info)


def describe(slider: SliderFile) -> list[str]:
    """The lines `slider info` prints."""
    alphas = sorted({f.alpha for f in slider.factors.values()})
    ranks = sorted({f.rank for f in slider.factors.values()})

    def shown(value: object) -> str:
        return "-" if value is None else str(value)

    lines = [
        f"file:        {slider.source_path}",
        f"format:      {slider.source_format}",
        f"kind:        {shown(slider.kind)}",
        f"concept:     {shown(slider.concept)}",
        f"rank:        {ranks[0] if len(ranks) == 1 else f'{ranks[0]}..{ranks[-1]} (per module)'}",
        f"alpha:       {f'{alphas[0]:g}' if len(alphas) == 1 else f'{alphas[0]:g}..{alphas[-1]:g} (per module)'}",
        f"targets:     {shown(slider.targets)}",
        f"base model:  {shown(slider.base_model)}",
        f"modules:     {len(slider.factors)}",
    ]
    if slider.start_noise is not None:
        lines.append(f"start_noise: {slider.start_noise:g}")
    if slider.scale_range is not None:
        lines.append(f"scales:      {slider.scale_range[0]:g} .. {slider.scale_range[1]:g}")
    lines.append("metadata:" if slider.metadata else "metadata:    (none)")
    lines += [f"  {key} = {value}" for key, value in sorted(slider.metadata.items())]
    return lines


def run_info(args: argparse.Namespace) -> int:
    """Print the description of one slider file."""
    from sliders.slider_file import load_slider

    print("\n".join(describe(load_slider(args.file))))
    return 0
