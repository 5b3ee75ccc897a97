"""`concept-transfer library build|rename|show`: a browsable, calibrated library of sliders from a GAN.

library build --gan G --model M [--top K | --candidates cand/candidates.json] --out lib/
accelerate launch -m transfer library build ...     (or torchrun): whole sliders per process
library rename lib/ L3_72_64.c0 "eye size"
library show lib/
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

DEFAULT_TOP = 12


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `library` with its `build`, `rename` and `show` actions."""
    parser = subparsers.add_parser(
        "library", help="discover, mine, train and calibrate many sliders from a GAN"
    )
    actions = parser.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    _register_build(actions)
    rename = actions.add_parser("rename", help="give a library slider a name (kept by later builds)")
    rename.add_argument("library", type=Path, help="the library folder (holds index.json)")
    rename.add_argument("slider", help="the slider's id (e.g. L3_72_64.c0) or current name")
    rename.add_argument("name", help="the new name")
    rename.set_defaults(func=run_rename)
    show = actions.add_parser("show", help="list a library's sliders: name, status, calibration, file")
    show.add_argument("library", type=Path, help="the library folder (holds index.json)")
    show.set_defaults(func=run_show)


def _register_build(actions: argparse._SubParsersAction) -> None:
    from dataclasses import fields

    from transfer.commands.arguments import allow_negative_values
    from transfer.commands.threads import add_threads_option
    from transfer.library.plan import LibrarySettings

    default = argparse.Namespace(**{f.name: f.default for f in fields(LibrarySettings)})
    p = actions.add_parser(
        "build",
        help="candidates -> pairs -> visual slider -> calibration -> preview, for every candidate",
        description="Build a slider library in --out: for every candidate direction of the generator "
        "(from --candidates, or discovered here: --top K), mine before/after pairs, train a visual slider, "
        "calibrate it, and sweep it over prompts that are not faces. Resumable (finished sliders are kept); "
        "under `accelerate launch` / `torchrun` the sliders are shared out among the processes.",
    )
    p.add_argument("--gan", required=True, help="StyleGAN3 .pkl, our .safetensors/.pt export, or 'toy'")
    p.add_argument("--model", required=True, help="SDXL hub id, diffusers folder, single file, or 'toy'")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="the library folder")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--top", type=int, help=f"discover this many candidates (default {DEFAULT_TOP})")
    source.add_argument("--candidates", type=Path, help="candidates.json from `concept-transfer discover`")
    p.add_argument("--components", type=int, help="discovery: w directions per method (default: discover's)")
    p.add_argument(
        "--pairs", type=int, default=default.pairs, help=f"seeds to mine per slider ({default.pairs})"
    )
    p.add_argument("--delta-scale", type=float, default=default.delta_scale,
                   help=f"mining delta = this x the candidate's delta ({default.delta_scale})")  # fmt: skip
    p.add_argument("--levels", default="1,2", help="edit levels of the pairs (1,2)")
    p.add_argument("--no-symmetric", action="store_true", help="before = the unedited image, not -delta")
    p.add_argument("--steps", type=int, default=default.steps, help=f"training steps ({default.steps})")
    p.add_argument("--lr", type=float, default=default.lr, help=f"learning rate ({default.lr:g})")
    p.add_argument("--batch", type=int, default=default.batch, help=f"pairs per step ({default.batch})")
    p.add_argument("--rank", type=int, default=default.rank)
    p.add_argument("--together", type=int, default=default.together,
                   help="sliders trained in one loop, their pairs in one batch (1: one at a time)")  # fmt: skip
    p.add_argument("--resolution", type=int, help="pair and training resolution (default: the GAN's)")
    p.add_argument(
        "--prompts", type=Path, help="text file, one preview prompt per line (default: 4 non-face prompts)"
    )
    p.add_argument("--seeds", default="0,1", help="preview seeds (0,1)")
    p.add_argument("--calibration-seeds", default=",".join(map(str, default.calibration_seeds)),
                   help="seeds the calibration measures on every --prompts prompt (%(default)s)")  # fmt: skip
    p.add_argument("--calibration-scales", help="raw weights the calibration measures (default: calibrate's)")
    p.add_argument("--sample-steps", type=int, default=default.sample_steps, help="sampling steps (30)")
    p.add_argument("--guidance", type=float, default=default.guidance)
    p.add_argument("--size", type=int, help="preview image size (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of discovery, mining and training (0)")
    p.add_argument("--stats-samples", type=int, default=default.stats_samples, help="samples for channel std")
    p.add_argument(
        "--checkpoint-every", type=int, default=0, help="training checkpoint interval (0: on stop)"
    )
    p.add_argument(
        "--device", help="cuda, mps or cpu (default: the best available; cuda:<local rank> sharded)"
    )
    add_threads_option(p)
    allow_negative_values(p)  # `--calibration-scales -2,2`
    p.set_defaults(func=run_build)


def settings_from_args(args: argparse.Namespace):
    """The validated `LibrarySettings` of a command line."""
    from stylegan_bridge.mining import parse_levels
    from transfer.commands.aliases import gan_aliases, model_aliases
    from transfer.commands.arguments import parse_floats, parse_ints
    from transfer.commands.transfer_cmd import read_prompts
    from transfer.library.plan import LibrarySettings

    seeds = parse_ints(args.seeds, "--seeds")
    calibration_seeds = parse_ints(args.calibration_seeds, "--calibration-seeds")
    scales = (
        parse_floats(args.calibration_scales, "--calibration-scales") if args.calibration_scales else None
    )
    return LibrarySettings(
        gan=args.gan, model=args.model, pairs=args.pairs, delta_scale=args.delta_scale,
        levels=parse_levels(args.levels), symmetric=not args.no_symmetric, resolution=args.resolution,
        stats_samples=args.stats_samples, steps=args.steps, lr=args.lr, rank=args.rank, batch=args.batch,
        together=args.together, checkpoint_every=args.checkpoint_every, seed=args.seed,
        prompts=read_prompts(args.prompts) if args.prompts else None, preview_seeds=seeds,
        sample_steps=args.sample_steps, guidance=args.guidance, size=args.size, calibration_seeds=calibration_seeds,
        calibration_scales=scales,
        device=args.device, threads=args.threads, gan_aliases=gan_aliases(), model_aliases=model_aliases(),
    )  # fmt: skip


def prepare_out(root: Path) -> Path:
    """Create the library folder once it is known that files can be written there (errors name --out)."""
    from transfer.commands.outputs import check_output_folder

    root = Path(root)
    check_output_folder(root, "--out")
    root.mkdir(parents=True, exist_ok=True)
    return root


def generator_record(gan: str, aliases: dict[str, Path]) -> dict[str, Any]:
    """The generator file of --gan (FileNotFoundError when missing): its name, sha256 and path."""
    from stylegan_bridge.direction_file import file_sha256
    from stylegan_bridge.mining import resolve_gan

    path = resolve_gan(gan, aliases)
    return {"file": path.name, "sha256": file_sha256(path), "path": path}


def load_library_candidates(path: Path, sha256: str, top: int | None = None) -> list:
    """The entries of a candidates.json made for the generator with `sha256` (the best `top`)."""
    from stylegan_bridge.candidates import load_candidates

    entries = load_candidates(path, sha256).entries
    return entries[:top] if top else entries


def discover_candidates(args: argparse.Namespace, root: Path, sha256: str, shard) -> Path:
    """`concept-transfer discover` into `root/candidates/` by the main process, unless it already holds
    --top candidates of this generator (a grown --top discovers again)."""
    from transfer.commands import discover

    path = root / "candidates" / "candidates.json"
    if shard.is_main and not _holds(path, sha256, args.top or DEFAULT_TOP):
        parser = argparse.ArgumentParser(prog="concept-transfer")
        discover.register(parser.add_subparsers())
        command = ["discover", "--gan", args.gan, "--top", str(args.top or DEFAULT_TOP), "--seed", str(args.seed),
                   "--out", str(path.parent), "--force", "--quiet", "--stats-samples", str(args.stats_samples),
                   *(["--device", args.device] if args.device else []),
                   *(["--threads", str(args.threads)] if args.threads else []),
                   *(["--components", str(args.components)] if args.components is not None else [])]  # fmt: skip
        options = parser.parse_args(command)
        options.func(options)
    shard.barrier()
    return path


def _holds(path: Path, sha256: str, top: int) -> bool:
    """Whether a candidates.json of this generator with at least `top` candidates is at `path`."""
    if not path.is_file():
        return False
    try:
        return len(load_library_candidates(path, sha256)) >= top
    except ValueError:
        return False


def run_build(args: argparse.Namespace) -> int:
    """Build (or continue) the library; exit status 1 when some slider failed."""
    from transfer.library.build import build_library
    from transfer.library.sharding import sharded

    if args.top is not None and args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    settings = settings_from_args(args)
    generator = generator_record(args.gan, settings.gan_aliases)
    root = prepare_out(args.out)
    with sharded() as shard:
        cand_file = args.candidates or discover_candidates(args, root, generator["sha256"], shard)
        top = None if args.candidates else args.top or DEFAULT_TOP
        candidates = load_library_candidates(cand_file, generator["sha256"], top)
        record = {k: v for k, v in generator.items() if k != "path"}
        index = build_library(settings, candidates, root, record, shard)
    if index is None:  # not the main process: it wrote no index
        return 0
    counts = index["counts"]
    print(f"library: {root / 'index.json'} and {root / 'index.html'}")
    print(f"sliders: {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending")
    for slider in index["sliders"]:
        if slider["status"] == "failed":
            print(f"  failed: {slider['id']}: {slider['reason']}")
    return 1 if counts["failed"] or counts["pending"] else 0


def run_rename(args: argparse.Namespace) -> int:
    """Rename one slider in the index (and the gallery)."""
    from transfer.library.index import rename

    slider = rename(args.library, args.slider, args.name)
    print(f"{slider['id']}: now called {slider['name']!r}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print one line per slider of a library."""
    from transfer.library.index import load_index

    index = load_index(args.library)
    for s in index["sliders"]:
        calibration = s.get("calibration") or {}
        raw = f"raw at 1: {calibration['raw_at_1']:+.3g}" if calibration else "uncalibrated"
        reason = f" ({s['reason']})" if s.get("reason") else ""
        print(f"{s['rank']:>3}  {s['name']:<24} {s['status']:<8} {raw:<18} {os.fspath(s['file'])}{reason}")
    return 0
