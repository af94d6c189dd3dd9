"""Ray connection, resource placement and where Ray's output goes, without starting Ray."""

from __future__ import annotations

import io
import logging
import socket
import time
import warnings
from pathlib import Path

import pytest

from rlscale.errors import RayConnectionError, RlscaleError
from rlscale.platform.ray_output import RAY_LOG, WORKER_HANDLER, RayOutput
from rlscale.platform.runtime import (
    check_cpu_demand,
    parse_address,
    probe_address,
    resolve_gpus_per_learner,
)


def closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("ray://127.0.0.1:10001", ("127.0.0.1", 10001)),
        ("localhost", ("localhost", 6379)),
    ],
)
def test_parse_address(address, expected):
    assert parse_address(address) == expected


def test_bad_port_is_a_clear_error():
    with pytest.raises(RayConnectionError, match="invalid port"):
        parse_address("127.0.0.1:notaport")


def test_unreachable_address_fails_fast():
    port = closed_loopback_port()
    started = time.monotonic()
    with pytest.raises(RayConnectionError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        probe_address("127.0.0.1", port)
    assert time.monotonic() - started < 10


def test_reachable_address_passes():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        probe_address("127.0.0.1", server.getsockname()[1])


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        ("auto", 0, 0.0),
        ("auto", 2, 1.0),
        (0, 0, 0.0),
        (0.5, 1, 0.5),
    ],
)
def test_gpus_per_learner(requested, available, expected):
    assert resolve_gpus_per_learner(requested, available) == expected


def test_gpu_request_beyond_cluster_is_refused():
    with pytest.raises(RlscaleError, match="gpus_per_learner=1 but the Ray cluster has 0 GPU"):
        resolve_gpus_per_learner(1, 0)


def test_cpu_demand_beyond_cluster_is_refused():
    check_cpu_demand(2, 2)
    with pytest.raises(RlscaleError, match="needs 3 CPUs.*has 2"):
        check_cpu_demand(3, 2)


@pytest.fixture
def worker_dispatcher():
    """Ray's worker-output dispatcher with a stand-in for its console handler, put back after."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    saved = list(dispatcher.handlers)
    shown: list[dict] = []
    dispatcher.handlers = [(WORKER_HANDLER, shown.append)]
    yield dispatcher, shown
    dispatcher.handlers = saved


@pytest.fixture
def ray_console_logger():
    """A Ray-style logger with its own console handler, as ``ray.rllib`` and ``ray.data`` have."""
    logger = logging.getLogger("ray.rlscale_test")
    console = io.StringIO()
    handler = logging.StreamHandler(console)
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, console
    logger.removeHandler(handler)


def test_ray_log_lines_go_to_the_file_and_errors_still_to_the_console(
    tmp_path, ray_console_logger
):
    logger, console = ray_console_logger
    log = tmp_path / RAY_LOG
    with RayOutput(log, title="test"):
        logger.getChild("algorithms").warning("You are running Fake on the new API stack!")
        logger.error("RLlib failed for real")
    assert console.getvalue() == "RLlib failed for real\n"
    text = log.read_text()
    assert "===== test" in text and "WARNING" in text and "new API stack" in text
    assert "RLlib failed for real" in text
    # Afterwards the console handler shows warnings again, and the file gets nothing more.
    logger.warning("shown again")
    assert "shown again" in console.getvalue() and "shown again" not in log.read_text()


def test_verbose_keeps_ray_on_the_console_and_copies_it_to_the_file(
    tmp_path, ray_console_logger
):
    logger, console = ray_console_logger
    with RayOutput(tmp_path / RAY_LOG, console=True):
        logger.warning("a deprecation")
    assert "a deprecation" in console.getvalue()
    assert "a deprecation" in (tmp_path / RAY_LOG).read_text()


def test_warnings_raised_in_ray_go_to_the_file_and_others_are_shown(tmp_path):
    import ray

    in_ray = str(Path(ray.__file__).parent / "data" / "fake.py")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with RayOutput(tmp_path / RAY_LOG):
            warnings.warn_explicit("Ray's concurrency note", UserWarning, in_ray, 1)
            warnings.warn_explicit("someone else's note", UserWarning, "elsewhere.py", 1)
    assert [str(warning.message) for warning in shown] == ["someone else's note"]
    assert "Ray's concurrency note" in (tmp_path / RAY_LOG).read_text()


@pytest.mark.parametrize("ray_running", [False, True], ids=["ray-stopped", "ray-running"])
def test_worker_output_goes_to_the_file_and_worker_tracebacks_to_the_console(
    tmp_path, worker_dispatcher, monkeypatch, ray_running
):
    import ray

    # Whether another test of the session left Ray running must not decide the outcome.
    monkeypatch.setattr(ray, "is_initialized", lambda: ray_running)
    dispatcher, shown = worker_dispatcher
    note = {"pid": 7, "actor_name": "SingleAgentEnvRunner", "is_err": True,
            "lines": ["DeprecationWarning: `RLModule(config=...)` has been deprecated."]}
    failure = {"pid": 7, "actor_name": "SingleAgentEnvRunner", "is_err": True,
               "lines": ["Traceback (most recent call last):", "RuntimeError: boom"]}
    with RayOutput(tmp_path / RAY_LOG) as output:
        output.capture_worker_output()
        dispatcher.emit(note)
        dispatcher.emit(failure)
    assert shown == [failure]
    text = (tmp_path / RAY_LOG).read_text()
    assert "(SingleAgentEnvRunner pid=7) DeprecationWarning" in text
    assert "(SingleAgentEnvRunner pid=7) RuntimeError: boom" in text
    # Afterwards a running Ray forwards to its own console handler again; a stopped one
    # forwards nothing (ray.shutdown removes the handler).
    expected = [(WORKER_HANDLER, shown.append)] if ray_running else []
    assert dispatcher.handlers == expected


def test_no_log_file_changes_nothing(ray_console_logger):
    logger, console = ray_console_logger
    with RayOutput(None) as output:
        output.capture_worker_output()
        logger.warning("as before")
    assert console.getvalue() == "as before\n"
