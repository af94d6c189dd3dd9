"""Connecting to Ray: an embedded local instance by default, or an existing cluster.

The address comes from ``--address`` or ``RAY_ADDRESS``. A cluster address is probed with a
plain TCP connect first, so an unreachable one fails within seconds instead of Ray's minute of
retries.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlparse

from rlscale.errors import RayConnectionError, RlscaleError

LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 5.0
DEFAULT_RAY_PORT = 6379


@dataclass(frozen=True)
class RaySession:
    address: str | None
    """The cluster connected to, or None for the embedded local instance."""
    start_s: float
    """Seconds spent starting or connecting to Ray (benchmarks report it apart)."""

    @property
    def num_cpus(self) -> float:
        import ray

        return ray.cluster_resources().get("CPU", 0.0)

    @property
    def num_gpus(self) -> float:
        import ray

        return ray.cluster_resources().get("GPU", 0.0)


@contextmanager
def ray_session(
    address: str | None = None, include_dashboard: bool = False
) -> Iterator[RaySession]:
    """Use the Ray already initialized in this process, or start/connect one for the block."""
    import ray

    if ray.is_initialized():
        yield RaySession(address=None, start_s=0.0)
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    started = time.perf_counter()
    if address:
        _connect_to_cluster(address)
    else:
        start_local_ray(include_dashboard=include_dashboard)
    session = RaySession(address=address, start_s=time.perf_counter() - started)
    try:
        yield session
    finally:
        # Objects left in reference cycles (an algorithm's Ray Data iterators) must be
        # finalized while Ray is still up, or their finalizers print tracebacks at exit.
        gc.collect()
        ray.shutdown()


def start_local_ray(include_dashboard: bool = False, num_cpus: int | None = None) -> None:
    """Start an embedded Ray bound to loopback, sized to this machine."""
    import ray

    ray.init(
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        include_dashboard=include_dashboard,
        dashboard_host=LOOPBACK,
        _node_ip_address=LOOPBACK,
        logging_level=logging.WARNING,
        configure_logging=True,
    )


def _connect_to_cluster(address: str) -> None:
    import ray

    if address != "auto":
        host, port = parse_address(address)
        probe_address(host, port)
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayConnectionError(
            f"could not connect to the Ray cluster at {address}: {exc}. Check the address "
            "(--address or RAY_ADDRESS) and, for a token-authenticated cluster, that "
            "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN) are set."
        ) from None


def parse_address(address: str) -> tuple[str, int]:
    """``host:port``, ``ray://host:port`` or ``host`` -> (host, port)."""
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    if not parsed.hostname:
        raise RayConnectionError(
            f"'{address}' is not a Ray address; use HOST:PORT (e.g. 127.0.0.1:6379) or "
            "ray://HOST:10001."
        )
    try:
        port = parsed.port or DEFAULT_RAY_PORT
    except ValueError:
        raise RayConnectionError(f"'{address}' has an invalid port; use HOST:PORT.") from None
    return parsed.hostname, port


def check_address(address: str | None) -> None:
    """A malformed or unreachable cluster address (``address``, else ``RAY_ADDRESS``) fails
    here: the API's entry points call it before they make a run, sweep or dataset folder or
    write anything. An embedded Ray (no address) or ``auto`` needs no check."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        probe_address(*parse_address(address))


def probe_address(host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise RayConnectionError(
            f"cannot reach a Ray cluster at {host}:{port} ({reason}). Start one with "
            "`ray start --head`, or fix --address / RAY_ADDRESS; leave both unset to run on an "
            "embedded local Ray."
        ) from None


def resolve_gpus_per_learner(requested: float | str, available_gpus: float) -> float:
    """``auto`` -> 1 when the cluster has a GPU, else 0; a number must fit the cluster."""
    if requested == "auto":
        return 1.0 if available_gpus >= 1 else 0.0
    requested = float(requested)
    if requested > available_gpus:
        raise RlscaleError(
            f"gpus_per_learner={requested:g} but the Ray cluster has {available_gpus:g} GPU(s). "
            "Use 'auto' (GPU when present, CPU otherwise), 0, or connect to a cluster with GPUs."
        )
    return requested


def check_cpu_demand(demand: float, available: float) -> None:
    """Fail now, with the fix, instead of letting Ray wait forever for CPUs that never come."""
    if demand > available:
        raise RlscaleError(
            f"the run needs {demand:g} CPUs for its EnvRunner and Learner actors but the Ray "
            f"cluster has {available:g}. Lower resources.num_env_runners / num_learners (0 runs "
            "in the driver), or connect to a larger cluster with --address."
        )
