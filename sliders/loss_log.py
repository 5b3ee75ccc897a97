"""The loss log of a training run: a CSV and a loss-curve PNG beside the output file."""

from __future__ import annotations

import os
from pathlib import Path


def loss_paths(out: str | Path) -> tuple[Path, Path]:
    """`<out stem>.loss.csv` and `<out stem>.loss.png` in the output's folder."""
    out = Path(out)
    return out.with_name(out.stem + ".loss.csv"), out.with_name(out.stem + ".loss.png")


def _atomic_tmp(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def write_loss_csv(path: str | Path, losses: list[float]) -> None:
    """Write `step,loss` rows (steps from 1), atomically."""
    path = Path(path)
    tmp = _atomic_tmp(path)
    lines = ["step,loss"] + [f"{i},{loss:.8g}" for i, loss in enumerate(losses, start=1)]
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def plot_loss(path: str | Path, losses: list[float], title: str = "slider training loss") -> None:
    """Save a loss curve (raw and a moving average) as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    steps = list(range(1, len(losses) + 1))
    window = max(1, len(losses) // 20)
    smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
              for i in range(len(losses))]  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, alpha=0.35, label="loss")
    ax.plot(steps, smooth, label=f"moving average ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = _atomic_tmp(path)
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)
