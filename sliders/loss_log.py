"""The loss log of a training run: a CSV and a loss-curve PNG beside the output file."""

from __future__ import annotations

from pathlib import Path

from pair_datasets.atomic import atomic_save, atomic_write_text


def loss_paths(out: str | Path) -> tuple[Path, Path]:
    """`<out stem>.loss.csv` and `<out stem>.loss.png` in the output's folder."""
    out = Path(out)
    return out.with_name(out.stem + ".loss.csv"), out.with_name(out.stem + ".loss.png")


def write_loss_csv(path: str | Path, losses: list[float]) -> None:
    """Write `step,loss` rows (steps from 1), atomically."""
    path = Path(path)
    lines = ["step,loss"] + [f"{i},{loss:.8g}" for i, loss in enumerate(losses, start=1)]
    atomic_write_text(path, "\n".join(lines) + "\n")


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
    try:
        atomic_save(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
