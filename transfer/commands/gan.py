"""`concept-transfer gan export`: convert a StyleGAN3 generator between .pkl, .safetensors and .pt.

.pkl output has the structure of an NVlabs network pickle around our weights (no NVlabs code), so a
generator of ours, the toy one included (`gan export toy --out toy.pkl`), takes the same path as FFHQ.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transfer.commands.outputs import check_output_file, refuse_to_replace


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `gan` subcommand group (`gan export`)."""
    parser = subparsers.add_parser(
        "gan", help="StyleGAN3 generator files (convert .pkl / .safetensors / .pt)"
    )
    actions = parser.add_subparsers(dest="gan_command", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="convert a generator (an NVlabs .pkl is loaded without running its code) to .safetensors/.pt/.pkl",
        description="Load a StyleGAN3 generator (NVlabs .pkl: G_ema, else G; or .pt/.safetensors; or `toy`) "
        "without executing anything stored in it, and write its weights and config as .safetensors (or .pt), "
        "or as a .pkl with the structure of an NVlabs network pickle (readable by concept-transfer, not by "
        "NVlabs' code: it holds no NVlabs classes).",
    )
    export.add_argument("source", help="generator file (.pkl, .pt, .safetensors) or `toy`")
    export.add_argument(
        "--out", type=Path, required=True, help="output file: .safetensors (default choice), .pt or .pkl"
    )
    export.add_argument("--force", action="store_true", help="replace --out if it exists")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Load `args.source` safely and write it to `args.out`."""
    from stylegan_bridge.loading import export_generator, load_generator  # torch: only when run
    from stylegan_bridge.mining import resolve_gan
    from stylegan_bridge.pickle_export import write_nvlabs_pickle
    from transfer.commands.aliases import gan_aliases

    suffix = args.out.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth", ".pkl"):
        raise ValueError(f"--out {args.out}: expected a .safetensors, .pt or .pkl file name")
    check_output_file(args.out, "--out")
    refuse_to_replace(args.out, "--out", args.force)
    source = resolve_gan(args.source, gan_aliases())
    if args.out.resolve() == source.resolve():
        raise ValueError(f"--out {args.out} is the source file; choose another name")
    G = load_generator(source)
    if suffix == ".pkl":
        write_nvlabs_pickle(args.out, G)
    else:
        export_generator(G, args.out)
    c = G.config
    n_params = sum(p.numel() for p in G.parameters())
    print(
        f"wrote {args.out}: {c.img_resolution}px, {len(G.synthesis.layer_names)} synthesis layers "
        f"(input + {', '.join(G.synthesis.layer_names[:2])}, ... {G.synthesis.layer_names[-1]}), "
        f"{n_params:,} parameters"
    )
    return 0
