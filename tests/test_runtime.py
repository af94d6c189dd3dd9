"""Ray connection and resource placement, without starting Ray."""

from __future__ import annotations

import socket
import time

import pytest

from rlscale.errors import RayConnectionError, RlscaleError
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
