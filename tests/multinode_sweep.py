"""Run by tests/test_tuning_run.py in its own process: a sweep on a real multi-node Ray cluster.

The test starts the nodes with `ray start` on 127.0.0.1 (token auth on): a head with no CPUs
that only holds this driver, and four 1-CPU workers, so every trial process and every EnvRunner
needs a node of its own. Prints one JSON line: where each trial and EnvRunner ran, and what a
sweep asking for a GPU got.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path


def main(address: str, nodes: str, sweep_file: str, gpu_sweep_file: str, output: str) -> None:
    import ray

    from rlscale.errors import RlscaleError
    from rlscale.platform.tuning.run import tune

    ray.init(address=address, _node_ip_address="127.0.0.1")
    deadline = time.monotonic() + 120
    while sum(node["Alive"] for node in ray.nodes()) < int(nodes):
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(ray.nodes())} of {nodes} nodes joined")
        time.sleep(1)
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
    ray.shutdown()


def _placement(trial_dir: Path) -> dict[str, object]:
    with (Path(trial_dir) / "progress.csv").open() as handle:
        last = list(csv.DictReader(handle))[-1]
    return {
        "node": last["node_id"],
        "env_runner_nodes": [n for n in last["env_runner_nodes"].split(",") if n],
    }


if __name__ == "__main__":
    main(*sys.argv[1:6])
