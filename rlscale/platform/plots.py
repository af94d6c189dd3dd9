"""Learning-curve plots (matplotlib, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rlscale.platform.outputs import IterationMetrics


def plot_learning_curve(history: Sequence[IterationMetrics], path: Path, title: str) -> Path:
    """Mean episode return against env steps, with the min-max band; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [m for m in history if m.has_return]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if points:
        steps = [m.env_steps for m in points]
        ax.fill_between(
            steps,
            [m.return_min for m in points],
            [m.return_max for m in points],
            alpha=0.2,
            label="min-max, last 100 episodes",
        )
        ax.plot(
            steps, [m.return_mean for m in points], lw=2, label="mean return, last 100 episodes"
        )
        ax.legend(loc="lower right")
    else:
        ax.text(
            0.5, 0.5, "no episode finished yet", ha="center", va="center", transform=ax.transAxes
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Lay out, save under a hidden name, close and rename into place (never a torn PNG)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    fig.savefig(partial)
    plt.close(fig)
    os.replace(partial, path)
    return path
