"""Run by tests/test_tuning_run.py in its own process: a sweep on a real 5-node Ray cluster.

The nodes (`ray.cluster_utils.Cluster`, all on 127.0.0.1, token auth on) are a head with no CPUs
that only holds the driver, and four 1-CPU workers, so every trial process and every EnvRunner
must land on a node of its own. Prints one JSON line: where each trial and EnvRunner ran, and
what a sweep asking for a GPU got.
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


def main(sweep_file: str, gpu_sweep_file: str, output: str) -> None:
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    from ray.cluster_utils import Cluster

    from rlscale.errors import RlscaleError
    from rlscale.platform.tuning.run import tune

    cluster = Cluster(
        initialize_head=True,
        head_node_args={**_node_args(), "num_cpus": 0, "include_dashboard": False},
    )
    try:
        for _ in range(4):
            cluster.add_node(**_node_args(), num_cpus=1)
        cluster.wait_for_nodes()
        result = tune(sweep_file, name="multinode", output=output, address=cluster.address)
        trials = [_placement(trial.path) for trial in result.trials]
        started = time.monotonic()
        try:
            tune(gpu_sweep_file, name="gpu", output=output, address=cluster.address)
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
    finally:
        cluster.shutdown()


def _node_args() -> dict[str, object]:
    """Loopback, and an agent port of its own: the default one would clash between nodes."""
    return {"node_ip_address": "127.0.0.1", "dashboard_agent_listen_port": _free_port()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _placement(trial_dir: Path) -> dict[str, object]:
    with (Path(trial_dir) / "progress.csv").open() as handle:
        last = list(csv.DictReader(handle))[-1]
    return {
        "node": last["node_id"],
        "env_runner_nodes": [n for n in last["env_runner_nodes"].split(",") if n],
    }


if __name__ == "__main__":
    main(*sys.argv[1:4])
