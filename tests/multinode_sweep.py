"""Run by tests/test_tuning_run.py in its own process: a sweep on a real multi-node Ray cluster.

The nodes (`rlscale.platform.cluster.local`: `ray.cluster_utils.Cluster`, all on 127.0.0.1,
token auth on) are a head with no CPUs that only holds this driver, and four 1-CPU workers, so
every trial process and every EnvRunner needs a node of its own. Prints one JSON line: where each
trial and EnvRunner ran, and what a sweep asking for a GPU got.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

WORKERS = 4


def main(sweep_file: str, gpu_sweep_file: str, output: str) -> None:
    from rlscale.platform.cluster.local import local_multinode_cluster

    with local_multinode_cluster(WORKERS, cpus_per_worker=1, head_cpus=0):
        _sweeps(sweep_file, gpu_sweep_file, output)


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
