"""The live table of trials that ``rlscale tune`` shows on stderr while a sweep runs.

On a terminal the table redraws in place; otherwise (logs, CI) one line is printed when a trial
starts, finishes or fails, so the output stays readable.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table

MAX_ROWS = 30
REDRAW_S = 0.5


class TrialTable(Callback):
    """A Tune callback; picklable (Tune saves callbacks with the experiment state)."""

    def __init__(
        self,
        metric: str,
        params: list[str],
        console: Console | None = None,
        total: int | None = None,
    ):
        self.metric = metric
        self.params = params
        self.total = total
        """The sweep's number of trials (``expected_trials``): Tune creates trials as it goes,
        so counting the trials seen so far would make "[k/n done]" change as the sweep runs."""
        self._console = console
        self._live: Live | None = None
        self._lock = threading.Lock()
        self._drawn = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"metric": self.metric, "params": self.params, "total": self.total}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["metric"], state["params"], total=state.get("total"))

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(stderr=True, soft_wrap=True)
        return self._console

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        # Tune's loop steps many times a second; redraw at most every REDRAW_S.
        if not self.console.is_terminal or time.monotonic() - self._drawn < REDRAW_S:
            return
        self._drawn = time.monotonic()
        with self._lock:
            if self._live is None:
                self._live = Live(console=self.console, auto_refresh=False, transient=False)
                self._live.start()
            self._live.update(self.table(trials), refresh=True)

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._line(trial, "started", trials)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._line(trial, "finished", trials)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._line(trial, "FAILED", trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        with self._lock:
            if self._live is not None:
                self._live.update(self.table(trials), refresh=True)
                self._live.stop()
                self._live = None

    def table(self, trials: list) -> Table:
        table = Table("trial", "status", *self.params, "iter", "env steps", self.metric)
        for trial in trials[:MAX_ROWS]:
            result = trial.last_result or {}
            table.add_row(
                trial.trial_id,
                trial.status,
                *(short_value(trial.config.get(p)) for p in self.params),
                str(result.get("training_iteration", "")),
                _count(result.get("env_steps")),
                short_value(result.get(self.metric)),
            )
        if len(trials) > MAX_ROWS:
            table.caption = f"... and {len(trials) - MAX_ROWS} more trials"
        return table

    def _line(self, trial, event: str, trials: list) -> None:
        if self.console.is_terminal:
            return
        result = trial.last_result or {}
        params = " ".join(f"{p}={short_value(trial.config.get(p))}" for p in self.params)
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        total = max(self.total or 0, len(trials))
        metric = result.get(self.metric)
        tail = f" {self.metric}={short_value(metric)}" if metric is not None else ""
        self.console.print(
            f"[{done}/{total} done] trial {trial.trial_id} {event} {params} "
            f"iter={result.get('training_iteration', 0)}{tail}",
            highlight=False,
            markup=False,
        )


def short_value(value: Any) -> str:
    """A parameter value as a table or legend shows it: floats to 4 significant digits."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def _count(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) and math.isfinite(value) else ""
