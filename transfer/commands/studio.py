"""`concept-transfer studio`: the browser app to apply, compose and compare sliders (see transfer/studio)."""

from __future__ import annotations

import argparse
from pathlib import Path

from transfer.commands.threads import add_threads_option


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `studio` subcommand."""
    parser = subparsers.add_parser(
        "studio",
        help="open the slider studio in the browser (default: the toy world and its two demo sliders)",
        description="A local web page to drag sliders, compare scales and edit pictures, on one loaded model. "
        "Serves on 127.0.0.1 only unless --host says otherwise; paths typed in the page must lie inside the "
        "folders of --slider, --library and --out.",
    )
    parser.add_argument("--model", default="toy", help="hub id, diffusers folder, single file, or 'toy'")
    parser.add_argument(
        "--slider", action="append", default=[], metavar="FILE[:SCALE]",
        help="a slider in the panel at start (scale default 0); repeat for several. "
        "Default with --model toy: the two demo sliders",
    )  # fmt: skip
    parser.add_argument(
        "--library", type=Path, default=None, metavar="DIR", help="library folder or any folder of sliders"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("studio-out"), metavar="DIR", help="where results are written"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--prompt", default=None, help="the prompt a new tab starts with")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None)
    add_threads_option(parser)
    parser.set_defaults(func=run_studio)


def _startup_sliders(args: argparse.Namespace, defaults: dict) -> tuple[tuple[Path, float], ...]:
    from transfer.apply import parse_slider_spec

    if not args.slider:
        return tuple((Path(path), 0.0) for path in defaults.get("sliders", []))
    specs = []
    for text in args.slider:
        spec = parse_slider_spec(text)
        if not spec.path.is_file():
            raise FileNotFoundError(f"--slider {spec.path}: no such file")
        scale = spec.scale if spec.path != Path(text) else 0.0  # no `:SCALE`: start at 0
        specs.append((spec.path.resolve(), scale))
    return tuple(specs)


def config_from_args(args: argparse.Namespace):
    """The validated `StudioConfig` of the command line."""
    from transfer.commands.aliases import studio_defaults
    from transfer.studio.server import StudioConfig

    if args.library is not None and not args.library.is_dir():
        raise NotADirectoryError(f"--library {args.library}: not a folder")
    if args.out.exists() and not args.out.is_dir():
        raise NotADirectoryError(f"--out {args.out}: exists and is not a folder")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: must be 0..65535")
    defaults = studio_defaults(args.model)
    return StudioConfig(
        model=args.model,
        sliders=_startup_sliders(args, defaults),
        library=args.library,
        out_dir=args.out,
        host=args.host,
        port=args.port,
        prompt=args.prompt or defaults.get("prompt") or StudioConfig.prompt,
        steps=int(defaults.get("steps") or StudioConfig.steps),
        device=args.device,
        dtype=args.dtype,
    )


def run_studio(args: argparse.Namespace) -> int:
    """Load the model once, then serve the page until interrupted."""
    from transfer.commands.aliases import model_aliases
    from transfer.cpu_threads import configure_threads, is_small_unet
    from transfer.sdxl import load_sdxl
    from transfer.studio.server import build_studio, launch

    config = config_from_args(args)
    print(f"loading {config.model} ...", flush=True)
    pipe = load_sdxl(config.model, device=config.device, dtype=config.dtype, aliases=model_aliases())
    # The same thread rule as `apply`, so the command a result shows renders the same pixels.
    threads = configure_threads(args.threads, pipe.unet.device, is_small_unet(pipe.unet))
    print(f"torch CPU threads: {threads}", flush=True)
    blocks, _ = build_studio(config, pipe)
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {config.host}: other machines can reach the studio", flush=True)
    url = launch(blocks, config)
    print(f"studio: open {url} in a browser (Ctrl-C stops it)", flush=True)
    try:
        blocks.block_thread()
    finally:
        blocks.close()
    return 0
