"""Each trial's Tune logs hold every training iteration once, across restores.

A trial that restores from a checkpoint (``rlscale tune --resume`` after the driver was killed,
a retried failure, PBT's exploit) runs again the iterations it had run after that checkpoint.
Tune's CSV and JSON loggers only append, so its ``progress.csv`` and ``result.json`` would hold
those iterations twice. :class:`OneRowPerIteration` removes, before a result is logged whose
iteration is not past the last one in the files, the rows from that iteration on. Tune calls
user callbacks before its own loggers, so the new row is written after that. The files are cut
in place: Tune's loggers keep them open for appending.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ray.air.constants import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE
from ray.tune import Callback

ITERATION = "training_iteration"


class OneRowPerIteration(Callback):
    """A Tune callback (picklable: Tune saves callbacks with the experiment state)."""

    def __init__(self) -> None:
        self._last_logged: dict[str, int] = {}
        """Per trial id, the iteration of the last row in its files (read once per driver)."""

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        current = result.get(ITERATION)
        if not isinstance(current, int):
            return
        trial_dir = Path(trial.local_path)
        last = self._last_logged.get(trial.trial_id)
        if last is None:
            last = last_logged_iteration(trial_dir)
        if last is not None and current <= last:
            drop_rows_from(trial_dir, current)
        self._last_logged[trial.trial_id] = current


def last_logged_iteration(trial_dir: Path) -> int | None:
    """The highest iteration in the trial's ``progress.csv``; None without one."""
    rows = _read_progress(trial_dir / EXPR_PROGRESS_FILE)[1]
    iterations = [_iteration(row.get(ITERATION)) for row in rows]
    return max((i for i in iterations if i is not None), default=None)


def drop_rows_from(trial_dir: Path, iteration: int) -> None:
    """Remove the rows of ``iteration`` and later from ``progress.csv`` and ``result.json``."""
    progress = trial_dir / EXPR_PROGRESS_FILE
    fields, rows = _read_progress(progress)
    if fields:
        kept = io.StringIO()
        writer = csv.DictWriter(kept, fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for row in rows if _before(row.get(ITERATION), iteration))
        _rewrite_in_place(progress, kept.getvalue())
    results = trial_dir / EXPR_RESULT_FILE
    if results.is_file():
        lines = results.read_text().splitlines(keepends=True)
        kept_lines = [line for line in lines if _before(_json_iteration(line), iteration)]
        _rewrite_in_place(results, "".join(kept_lines))


def _read_progress(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        return [], []
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _rewrite_in_place(path: Path, text: str) -> None:
    """Same inode, so that a logger's open append handle goes on writing at the new end."""
    with path.open("r+") as file:
        file.write(text)
        file.truncate()


def _before(value: Any, iteration: int) -> bool:
    """Whether a row of iteration ``value`` stays; a row without a readable one stays."""
    row_iteration = _iteration(value)
    return row_iteration is None or row_iteration < iteration


def _iteration(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _json_iteration(line: str) -> int | None:
    try:
        return _iteration(json.loads(line).get(ITERATION))
    except (ValueError, AttributeError):
        return None
