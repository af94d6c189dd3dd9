"""One PNG with every trial's learning curve."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rlscale.platform.plots import save_figure
from rlscale.platform.tuning.progress import short_value


def plot_trial_curves(
    results, metric: str, path: Path, title: str, params: Sequence[str] = ()
) -> Path:
    """``metric`` against env steps, one line per trial labelled with its values of the
    searched ``params``; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    plotted = 0
    for result in results:
        frame = _progress(result)
        if frame is None or metric not in frame or "env_steps" not in frame:
            continue
        frame = frame[["env_steps", metric]].dropna()
        if frame.empty:
            continue
        ax.plot(frame["env_steps"], frame[metric], lw=1.5, label=trial_label(result, params))
        plotted += 1
    if plotted:
        if plotted <= 12:
            ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no trial reported yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("env steps")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def trial_label(result, params: Sequence[str]) -> str:
    """The trial's searched values (``lr=0.001 gamma=0.99``); its folder name without any."""
    config = getattr(result, "config", None) or {}
    values = [f"{name}={short_value(config[name])}" for name in params if name in config]
    return " ".join(values) or Path(result.path).name


def _progress(result) -> pd.DataFrame | None:
    frame = getattr(result, "metrics_dataframe", None)
    if frame is not None and not frame.empty:
        return frame
    csv = Path(result.path) / "progress.csv"
    if csv.is_file():
        return pd.read_csv(csv)
    return None
