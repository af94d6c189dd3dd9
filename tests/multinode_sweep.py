"""Run by tests/test_tuning_run.py in its own process: a sweep on a real multi-node Ray cluster.

The nodes (`ray.cluster_utils.Cluster`, all on 127.0.0.1, token auth on) are a head with no CPUs
that only holds this driver, and four 1-CPU workers, so every trial process and every EnvRunner
needs a node of its own. (Several `ray start` nodes cannot share one host: their raylet sockets
would clash; `Cluster` gives each node its own.) Prints one JSON line: where each trial and
EnvRunner ran, and what a sweep asking for a GPU got.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path

WORKERS = 4


def main(sweep_file: str, gpu_sweep_file: str, output: str) -> None:
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    import ray
    from ray._private import services
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={**_node_args(), "num_cpus": 0}
    )
    try:
        for _ in range(WORKERS):
            cluster.add_node(**_node_args(), num_cpus=1)
        cluster.wait_for_nodes(timeout=120)
        # Ray rewrites a loopback address to this host's outward IP when the connecting process
        # started no node itself; this cluster listens on loopback only, so keep the address.
        services.resolve_ip_for_localhost = lambda host: host
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1")
        _sweeps(sweep_file, gpu_sweep_file, output)
        ray.shutdown()
    finally:
        cluster.shutdown()


def _node_args() -> dict[str, object]:
    """Loopback, and ports of its own: the defaults clash with other nodes on this host."""
    ports = ("dashboard_agent_listen_port", "metrics_export_port", "runtime_env_agent_port")
    return {
        "node_ip_address": "127.0.0.1",
        "include_dashboard": False,
        **{name: _free_port() for name in ports},
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sweeps(sweep_file: str, gpu_sweep_file: str, output: str) -> None:
    from rlscale.errors import RlscaleError
    from rlscale.platform.tuning.run import tune

    result = tune(sweep_file, name="multinode", output=output)
    trials = [_placement(trial.path) for trial in result.trials]
    started = time.monotonic()
    try:
        tune(gpu_sweep_file, name="gpu", output=output)
        gpu_error = None
    except RlscaleError as exc:
        gpu_error = str(exc)
    report = {
        "trials": trials,
        "statuses": [trial.status for trial in result.trials],
        "gpu_error": gpu_error,
        "gpu_error_s": time.monotonic() - started,
    }
    print(json.dumps(report), flush=True)


def _placement(trial_dir: Path) -> dict[str, object]:
    with (Path(trial_dir) / "progress.csv").open() as handle:
        last = list(csv.DictReader(handle))[-1]
    return {
        "node": last["node_id"],
        "env_runner_nodes": [n for n in last["env_runner_nodes"].split(",") if n],
    }


if __name__ == "__main__":
    main(*sys.argv[1:4])
