"""`concept-transfer toyworld build`: remake the shipped toy-world models (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

STAGE_CHOICES = ("vae", "decoder", "unet", "probe", "gan", "eval", "ship", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `toyworld build`."""
    parser = subparsers.add_parser(
        "toyworld", help="the toy world: procedural faces and the models fitted to them"
    )
    sub = parser.add_subparsers(dest="toyworld_command", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build",
        help="train the toy VAE, toy SDXL UNet, attribute probe and toy StyleGAN3, measure them and ship them",
        description="Stages run in order vae, decoder, unet, probe, gan, eval, ship; each resumes from its checkpoint "
        "in --work and is skipped once done. Delete the work folder to start again.",
    )
    build.add_argument(
        "--out", type=Path, default=None, help="where the shipped models go (default: the package's assets)"
    )
    build.add_argument(
        "--work", type=Path, default=Path("runs/toyworld-build"), help="checkpoints and intermediate files"
    )
    build.add_argument("--stage", choices=STAGE_CHOICES, default="all", help="run one stage (default: all)")
    build.add_argument(
        "--steps", type=int, default=None, help="training steps of the single training --stage chosen"
    )
    # Unset options take BuildConfig's defaults (one place for them).
    build.add_argument("--vae-steps", type=int, default=None, help="VAE training steps (default 500)")
    build.add_argument(
        "--decoder-steps", type=int, default=None, help="decoder fine-tuning steps (default 500)"
    )
    build.add_argument("--unet-steps", type=int, default=None, help="UNet training steps (default 4800)")
    build.add_argument("--probe-steps", type=int, default=None, help="probe training steps (default 800)")
    build.add_argument(
        "--gan-steps", type=int, default=None, help="toy StyleGAN3 fitting steps (default 3600)"
    )
    build.add_argument("--unet-images", type=int, default=None, help="world images encoded once for the UNet")
    build.add_argument(
        "--eval-samples", type=int, default=None, help="samples per prompt when measuring captions"
    )
    build.add_argument(
        "--eval-guidance", type=float, default=None, help="guidance scale when measuring captions (default 5)"
    )
    build.add_argument("--seed", type=int, default=None)
    build.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    build.add_argument(
        "--device",
        default=None,
        metavar="{auto,cpu,cuda,cuda:N,mps}",
        help="where the models train: auto (default) is cuda when available, else cpu",
    )
    build.set_defaults(func=run_build_command)


def config_from_args(args: argparse.Namespace):
    """Map the parsed arguments onto a BuildConfig (errors name the option)."""
    from toyworld import assets_dir
    from toyworld.build import STAGES, BuildConfig

    options = {
        "vae_steps": args.vae_steps,
        "decoder_steps": args.decoder_steps,
        "unet_steps": args.unet_steps,
        "probe_steps": args.probe_steps,
        "gan_steps": args.gan_steps,
        "unet_images": args.unet_images,
        "eval_samples": args.eval_samples,
        "eval_guidance": args.eval_guidance,
        "seed": args.seed,
        "device": args.device,
    }
    if args.steps is not None:
        if args.stage not in ("vae", "decoder", "unet", "probe", "gan"):
            raise ValueError(
                f"--steps needs --stage vae, decoder, unet, probe or gan (got --stage {args.stage}); use --vae-steps etc."
            )
        options[f"{args.stage}_steps"] = args.steps
    return BuildConfig(
        out=args.out or assets_dir(),
        work=args.work,
        stages=STAGES if args.stage == "all" else (args.stage,),
        threads=args.threads,
        **{k: v for k, v in options.items() if v is not None},
    )


def run_build_command(args: argparse.Namespace) -> int:
    """Run the build and say where everything went."""
    from toyworld.build import run_build

    config = config_from_args(args)
    out = run_build(config)
    print(f"toy world: work folder {config.work}")
    if "ship" in config.stages:
        print(f"toy world: shipped models in {out} (see build.json, samples.png)")
    return 0
