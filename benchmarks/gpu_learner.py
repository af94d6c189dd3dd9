"""Learner updates per second on the learner's device: GPU against CPU, for the generative and
offline families.

    .venv/bin/python benchmarks/gpu_learner.py [--algorithms diffusion_bc cql]
        [--updates 2000] [--episodes 20] [--batch-sizes 0 1024] [--online-iterations 2]
        [--json OUT]

For each algorithm it builds the run exactly as ``rlscale train`` does (``prepare``, then
``place_on_cluster`` on an embedded Ray bound to 127.0.0.1), on a Pendulum-v1 dataset of the
scripted swing-up collected here, and times ``--updates`` Learner updates (iterations of
``dataset_num_iters_per_learner`` updates each, after one warm-up iteration, without
evaluation). It runs once with ``gpus_per_learner: 0`` (CPU) and, when Ray sees a GPU, once
with ``gpus_per_learner: auto``; on the GPU run it asserts that every parameter of the
learner's module is on CUDA and that the EnvRunner's copy, which acts, stays on the CPU.
``dreamer`` is measured online instead (``ONLINE``): ``--online-iterations`` timed iterations
after a warm-up one, each sampling on the CPU EnvRunner and updating on the learner's device.
``--batch-sizes`` repeats the pair at other learner batch sizes (0: the algorithm's default),
since a GPU pays off only once a batch is large enough to hide its launch overhead.
Prints a table of updates/s per device and the GPU/CPU ratio; ``--json`` also writes the rows.
Without a GPU it reports the CPU rows and says so: a check of the GPU path needs a machine
with one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import ray

import rlscale
from rlscale.platform.datasets_api import collect_dataset
from rlscale.platform.experiment import place_on_cluster, prepare
from rlscale.platform.iteration import build_algorithm

ENV = "Pendulum-v1"
EXPERT = "pendulum_swing_up"
DATASET = "bench/pendulum-swingup-v0"


def parameter_devices(module) -> set[str]:
    """The device types of every parameter of an RLModule or of each module in a
    MultiRLModule (which is a container, not an ``nn.Module`` itself)."""
    modules = module.values() if hasattr(module, "values") else [module]
    return {parameter.device.type for each in modules for parameter in each.parameters()}


def learner_module_devices(algo) -> set[str]:
    """The device types of every parameter of the local learner's modules."""
    return parameter_devices(algo.learner_group._learner.module)


def acting_module_devices(algo) -> set[str]:
    """The device types of the parameters of the module the local EnvRunner acts with."""
    runner = algo.env_runner_group.local_env_runner if algo.env_runner_group else None
    if runner is None or getattr(runner, "module", None) is None:
        return set()
    return parameter_devices(runner.module)


def placed(spec: rlscale.ExperimentSpec):
    """The experiment prepared and placed on this Ray cluster, as ``rlscale train`` does."""
    prepared = prepare(spec)
    resources = ray.cluster_resources()
    place_on_cluster(
        prepared.config, prepared.spec, resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    )
    return prepared


def timed(prepared, iterations: int) -> tuple[dict, dict, float, set[str], set[str]]:
    """One warm-up iteration (data iterator, kernels, optimizer state), then ``iterations``
    timed ones: (warm-up result, last result, seconds, learner devices, acting devices)."""
    algo = build_algorithm(prepared)
    try:
        first = algo.train()
        started = time.perf_counter()
        for _ in range(iterations):
            last = algo.train()
        elapsed = time.perf_counter() - started
        return first, last, elapsed, learner_module_devices(algo), acting_module_devices(algo)
    finally:
        algo.stop()


def row(prepared, updates: int, elapsed: float, devices: set, acting: set, batch: int) -> dict:
    """The table row; on a GPU run, first the check that the learner's module is on CUDA and
    the acting copy on the CPU."""
    algorithm = prepared.spec.algorithm
    on_gpu = prepared.config.num_gpus_per_learner > 0
    if on_gpu:
        assert devices == {"cuda"}, f"{algorithm}: learner parameters on {devices}, not CUDA"
        assert acting <= {"cpu"}, f"{algorithm}: the acting copy is on {acting}, not the CPU"
    return {
        "algorithm": algorithm,
        "device": "cuda" if on_gpu else "cpu",
        "batch_size": batch,
        "updates": int(updates),
        "seconds": round(elapsed, 2),
        "updates_per_s": round(updates / elapsed, 1),
        "learner_devices": sorted(devices),
    }


def measure(algorithm: str, gpus: float | str, updates: int, batch_size: int) -> dict:
    # Updates only: the first evaluation would come after the timed iterations.
    hyperparameters: dict = {"evaluation_interval": 1_000_000}
    if batch_size:
        hyperparameters["train_batch_size_per_learner"] = batch_size
    spec = rlscale.ExperimentSpec(
        algorithm=algorithm,
        env=ENV,
        dataset=DATASET,
        seed=0,
        resources={"gpus_per_learner": gpus},
        hyperparameters=hyperparameters,
    )
    prepared = placed(spec)
    per_iteration = int(prepared.config.dataset_num_iters_per_learner)
    iterations = max(1, updates // per_iteration)
    _, _, elapsed, devices, acting = timed(prepared, iterations)
    batch = int(prepared.config.train_batch_size_per_learner)
    return row(prepared, iterations * per_iteration, elapsed, devices, acting, batch)


ONLINE = ("dreamer",)
"""Algorithms measured online on ``ENV`` (no dataset): each iteration samples on the CPU
EnvRunner and updates on the learner's device; updates/s counts the updates only."""


def measure_online(algorithm: str, gpus: float | str, iterations: int) -> dict:
    from ray.rllib.utils.metrics import NUM_GRAD_UPDATES_LIFETIME

    spec = rlscale.ExperimentSpec(
        algorithm=algorithm, env=ENV, seed=0, resources={"gpus_per_learner": gpus}
    )
    prepared = placed(spec)
    first, last, elapsed, devices, acting = timed(prepared, iterations)
    updates = last.get(NUM_GRAD_UPDATES_LIFETIME, 0) - first.get(NUM_GRAD_UPDATES_LIFETIME, 0)
    return row(prepared, updates, elapsed, devices, acting, batch=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=["diffusion_bc", "cql"])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--online-iterations", type=int, default=2, help="timed iterations of dreamer"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("MINARI_DATASETS_PATH", tempfile.mkdtemp(prefix="gpu_learner_"))
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False)
    gpus = ray.cluster_resources().get("GPU", 0.0)
    collect_dataset(ENV, EXPERT, args.episodes, DATASET, workers=1)
    rows = []
    for algorithm in args.algorithms:
        for batch_size in args.batch_sizes if algorithm not in ONLINE else [0]:
            for requested in (0, "auto") if gpus >= 1 else (0,):
                if algorithm in ONLINE:
                    rows.append(measure_online(algorithm, requested, args.online_iterations))
                else:
                    rows.append(measure(algorithm, requested, args.updates, batch_size))
                print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()
    print(f"\n{platform.processor() or platform.machine()}, Ray GPUs: {gpus:g}")
    print(f"{'algorithm':<14} {'batch':>6} {'device':<6} {'updates/s':>10} {'GPU/CPU':>8}")
    for row in rows:
        cpu = next(
            r
            for r in rows
            if (r["algorithm"], r["batch_size"], r["device"])
            == (row["algorithm"], row["batch_size"], "cpu")
        )
        ratio = row["updates_per_s"] / cpu["updates_per_s"]
        print(
            f"{row['algorithm']:<14} {row['batch_size']:>6} {row['device']:<6} "
            f"{row['updates_per_s']:>10.1f} {ratio:>7.2f}x"
        )
    if gpus < 1:
        print("No GPU in this Ray cluster: CPU rows only. Run this on a machine with a GPU.")
    if args.json:
        args.json.write_text(json.dumps({"gpus": gpus, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
