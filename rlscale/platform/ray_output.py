"""Ray's own output goes to a log file, so the console shows rlscale's progress and results.

Ray prints start-up notes, deprecation warnings and Ray Data progress on every run (the token
authentication note, "You are running X on the new API stack!", RLModule deprecations, "Install
gputil ...", Ray Data's execution plan and progress). They reach the console by four roads, and
:class:`RayOutput` turns each towards the run's log file while the block runs:

* Python logging: the ``ray``, ``ray.rllib`` and ``ray.data`` loggers each have their own
  console handler and do not propagate. Those handlers are raised to ERROR and the log file is
  added beside them, so errors still show on the console.
* ``warnings.warn`` from Ray's code (e.g. Ray Data's concurrency ``UserWarning``) is written to
  the file; other libraries' warnings are shown as before.
* Worker output (EnvRunner actors, Ray Data tasks), forwarded by the driver when Ray runs with
  ``log_to_driver``: it is written to the file; a batch that holds a traceback or an
  ``...Error:`` line is also shown on the console.
* Ray Data's own progress bars, which would draw over rlscale's progress bar: turned off.

RLlib's ERROR lines about an EnvRunner that died and was restarted go to the file alone: the
runner says so in one line of its own and counts the restarts in the run's summary.

With ``console=True`` (``--verbose``) nothing is taken off the console; the file gets a copy.
Everything is put back when the block ends, so the Ray of a test session or a notebook keeps
its usual output afterwards.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any

RAY_LOG = "ray.log"
"""The log file's name, in the run folder."""
LOG_FORMAT = "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"
"""Ray's own line format."""
WORKER_HANDLER = "ray_print_logs"
"""The name Ray gives its worker-output handler (``ray/_private/worker.py``, ``connect``)."""
_ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|^\s*[\w.]*(Error|Exception)\b")


class RayOutput:
    """Context manager: Ray's log lines, warnings and worker output go to ``log_file``.

    Enter it before Ray starts (start-up notes are logged during ``ray.init``) and call
    :meth:`capture_worker_output` once Ray is up (Ray adds its worker-output handler while it
    connects). ``log_file=None`` changes nothing.
    """

    def __init__(self, log_file: Path | None, console: bool = False, title: str = ""):
        self.log_file = log_file
        self.console = console
        self.title = title
        self._stream: IO[str] | None = None
        self._handler: logging.Handler | None = None
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []
        """What puts Ray's output back as it was, in the order it was changed."""
        self._workers_captured = False

    def __enter__(self) -> RayOutput:
        if self.log_file is None:
            return self
        self._stream = self.log_file.open("a", encoding="utf-8")
        heading = f"{self.title} " if self.title else ""
        self._write(f"===== {heading}{datetime.now():%Y-%m-%d %H:%M:%S} =====\n")
        self._handler = logging.StreamHandler(self._stream)
        self._handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self._handler.setLevel(logging.INFO)
        # Ray, RLlib and Ray Data add their console handlers when first imported.
        import ray
        import ray.data
        import ray.rllib  # noqa: F401

        self._redirect_loggers()
        self._redirect_warnings()
        if not self.console:
            self._hide_data_progress_bars()
        if ray.is_initialized():
            self.capture_worker_output()
        return self

    def capture_worker_output(self) -> None:
        """Send what the workers print to the file; call it once Ray is initialized."""
        if self._stream is None or self._workers_captured:
            return
        try:
            from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
        except ImportError:  # another Ray version: its worker output stays on the console
            return
        original = dict(dispatcher.handlers).get(WORKER_HANDLER)
        if original is None:  # Ray runs with log_to_driver=False: nothing is forwarded
            return

        def handle(batch: dict[str, Any]) -> None:
            self._write_worker_batch(batch)
            if self.console or (batch.get("is_err") and _has_error(batch.get("lines", []))):
                original(batch)

        # Same name as Ray's, so that ray.shutdown() removes it as it removes its own.
        dispatcher.remove_handler(WORKER_HANDLER)
        dispatcher.add_handler(WORKER_HANDLER, handle)
        self._workers_captured = True
        self._undo.append(lambda: _restore_worker_handler(dispatcher, original))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stream is None:
            return
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self._workers_captured = False
        with self._lock:
            self._stream.close()
            self._stream = None

    def _redirect_loggers(self) -> None:
        for logger in _ray_loggers():
            consoles = [h for h in logger.handlers if _is_console_handler(h)]
            if not consoles:
                continue
            if logger.name == "ray" or not logger.propagate:
                # A propagating logger's records reach the file through "ray" already.
                logger.addHandler(self._handler)
                self._undo.append(partial(logger.removeHandler, self._handler))
            if self.console:
                continue
            for handler in consoles:
                self._undo.append(partial(handler.setLevel, handler.level))
                handler.setLevel(max(handler.level, logging.ERROR))
                handler.addFilter(_hide_env_runner_failures)
                self._undo.append(partial(handler.removeFilter, _hide_env_runner_failures))

    def _redirect_warnings(self) -> None:
        import ray

        ray_dir = str(Path(ray.__file__).parent)
        show = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
            if not str(filename).startswith(ray_dir):
                show(message, category, filename, lineno, file, line)
                return
            self._write(warnings.formatwarning(message, category, filename, lineno, line))
            if self.console:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        self._undo.append(partial(setattr, warnings, "showwarning", show))

    def _hide_data_progress_bars(self) -> None:
        from ray.data import DataContext

        context = DataContext.get_current()
        self._undo.append(
            partial(setattr, context, "enable_progress_bars", context.enable_progress_bars)
        )
        context.enable_progress_bars = False

    def _write_worker_batch(self, batch: dict[str, Any]) -> None:
        from ray.experimental.tqdm_ray import RAY_TQDM_MAGIC

        lines = batch.get("lines", [])
        if batch.get("pid") == "autoscaler":
            from ray._private.worker import filter_autoscaler_events

            # Its periodic status report is not news; Ray's console shows only the events too.
            lines = list(filter_autoscaler_events(lines))
        name = batch.get("actor_name") or batch.get("task_name") or ""
        prefix = f"({name + ' ' if name else ''}pid={batch.get('pid')})"
        lines = [line for line in lines if RAY_TQDM_MAGIC not in line]
        self._write("".join(f"{prefix} {line}\n" for line in lines))

    def _write(self, text: str) -> None:
        with self._lock:
            if self._stream is not None and text:
                self._stream.write(text)
                self._stream.flush()


def _restore_worker_handler(dispatcher: Any, original: Callable[[Any], None]) -> None:
    import ray

    if WORKER_HANDLER not in [name for name, _ in dispatcher.handlers]:
        return  # ray.shutdown() removed it, as it removes its own
    dispatcher.remove_handler(WORKER_HANDLER)
    if ray.is_initialized():
        dispatcher.add_handler(WORKER_HANDLER, original)


def _ray_loggers() -> list[logging.Logger]:
    """``ray`` and every ``ray.*`` logger created so far (Ray's packages make theirs at import)."""
    loggers = dict(logging.root.manager.loggerDict)
    return [logging.getLogger("ray")] + [
        logger
        for name, logger in sorted(loggers.items())
        if name.startswith("ray.") and isinstance(logger, logging.Logger)
    ]


def _is_console_handler(handler: logging.Handler) -> bool:
    """Ray's console handlers are StreamHandlers on stderr; file handlers are left alone."""
    return isinstance(handler, logging.StreamHandler) and not isinstance(
        handler, logging.FileHandler
    )


ENV_RUNNER_FAILURE_LOGGERS = ("ray.rllib.utils.actor_manager", "ray.rllib.env.env_runner_group")
"""Where RLlib logs an EnvRunner that died and its restart (several ERROR lines, one of them a
stray ``NoneType: None``): the file keeps them; the runner reports each restart in one line."""


def _hide_env_runner_failures(record: logging.LogRecord) -> bool:
    return not record.name.startswith(ENV_RUNNER_FAILURE_LOGGERS)


def _has_error(lines: list[str]) -> bool:
    return any(_ERROR_LINE.search(line) for line in lines)
