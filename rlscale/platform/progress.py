"""Live training progress on stderr (stdout is kept for results scripts read).

On a terminal: a rich progress bar with iteration, env steps, mean return, steps/s and ETA
(when a stop rule has a known end). Elsewhere (CI logs, pipes): one plain line per iteration.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rlscale.platform.outputs import IterationMetrics
from rlscale.platform.spec import StopRules


def _progress_total(stop: StopRules) -> tuple[float | None, str]:
    """The quantity whose end is known in advance, for the bar and its ETA."""
    if stop.timesteps:
        return float(stop.timesteps), "env_steps"
    if stop.iterations:
        return float(stop.iterations), "iteration"
    if stop.time_s:
        return float(stop.time_s), "time_s"
    return None, ""


def describe(metrics: IterationMetrics) -> str:
    mean = f"{metrics.return_mean:.1f}" if metrics.has_return else "n/a"
    return (
        f"iter {metrics.iteration:>4}  steps {metrics.env_steps:>9,}  "
        f"return {mean:>7}  {metrics.steps_per_s:>7,.0f} steps/s"
    )


class TrainingProgress:
    """Context manager fed one IterationMetrics per iteration."""

    def __init__(self, stop: StopRules, label: str, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.total, self._measure = _progress_total(stop)
        self.label = label
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> TrainingProgress:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, status="starting")
        else:
            self.console.print(f"{self.label}: training started", highlight=False)
        return self

    def update(self, metrics: IterationMetrics) -> None:
        if self._progress is not None:
            done = getattr(metrics, self._measure) if self._measure else None
            self._progress.update(self._task, completed=done, status=describe(metrics))
            return
        line = describe(metrics)
        if self.total and self._measure:
            line += f"  {self._eta(metrics)}"
        self.console.print(line, highlight=False)

    def _eta(self, metrics: IterationMetrics) -> str:
        done = float(getattr(metrics, self._measure))
        if done <= 0 or metrics.time_s <= 0:
            return ""
        remaining = metrics.time_s * (self.total - done) / done
        return f"ETA {math.ceil(max(remaining, 0.0))}s"

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.stop()
