"""`concept-transfer gan export`: convert a StyleGAN3 generator (.pkl, .pt) to a safe, fast .safetensors file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `gan` subcommand group (`gan export`)."""
    parser = subparsers.add_parser("gan", help="StyleGAN3 generator files (export to safetensors)")
    actions = parser.add_subparsers(dest="gan_command", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="convert an NVlabs .pkl (loaded without running its code) to .safetensors",
        description="Load a StyleGAN3 generator (NVlabs .pkl: G_ema, else G; or .pt/.safetensors) without "
        "executing anything stored in it, and write its weights and config as .safetensors (or .pt).",
    )
    export.add_argument("source", type=Path, help="generator file: .pkl, .pt or .safetensors")
    export.add_argument(
        "--out", type=Path, required=True, help="output file: .safetensors (default choice) or .pt"
    )
    export.add_argument("--force", action="store_true", help="replace --out if it exists")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Load `args.source` safely and write it to `args.out`."""
    from stylegan_bridge.loading import export_generator, load_generator  # torch: only when run

    if args.out.suffix.lower() not in (".safetensors", ".pt", ".pth"):
        raise ValueError(f"--out {args.out}: expected a .safetensors or .pt file name")
    if args.out.exists() and not args.force:
        raise FileExistsError(f"--out {args.out} exists; pass --force to replace it")
    if args.out.resolve() == args.source.resolve():
        raise ValueError(f"--out {args.out} is the source file; choose another name")
    G = load_generator(args.source)
    export_generator(G, args.out)
    c = G.config
    n_params = sum(p.numel() for p in G.parameters())
    print(
        f"wrote {args.out}: {c.img_resolution}px, {len(G.synthesis.layer_names)} synthesis layers "
        f"(input + {', '.join(G.synthesis.layer_names[:2])}, ... {G.synthesis.layer_names[-1]}), "
        f"{n_params:,} parameters"
    )
    return 0
