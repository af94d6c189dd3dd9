"""Rollout scaling: env steps/s of PPO sampling with 0, 1 and 2 EnvRunners, against the ceiling.

    .venv/bin/python benchmarks/pg_rollout_scaling.py [--env CartPole-v1] [--seconds 20]
        [--runners 0 1 2] [--env-runner vector rllib]
    .venv/bin/python benchmarks/pg_rollout_scaling.py --multinode 2 [--runners 1 2] \
        [--out benchmarks/results/pg_rollout_multinode.json]

- rlscale-ppo, N runners: rlscale's PPO config for the env (defaults, 8 vectorized envs per
  runner), sampling only: ``synchronous_parallel_sample`` of one train batch at a time from the
  EnvRunnerGroup, no learner update, for ``--seconds``. 0 runners samples in the driver.
  ``--env-runner`` picks the EnvRunner class: ``vector`` is rlscale's VectorEnvRunner (the
  default where it applies), ``rllib`` RLlib's SingleAgentEnvRunner (``vector_sampling=False``);
  both, one after the other, by default.
- gymnasium-vector: the ceiling, a raw ``gymnasium`` sync vector env of the same size stepping
  random actions in one process (no policy at all).

Ratios are against the raw vector env measured in the same run. Writes JSON and prints a table.

``--multinode W`` measures what scaling past one machine costs, on a real multi-node Ray cluster
on this host (``rlscale.platform.cluster.local``: a head without CPUs that holds the driver and
its Learner, W worker nodes of one CPU each, each with its own raylet and object store, talking
over loopback). For each runner count (one EnvRunner per worker node, VectorEnvRunner, 8 envs
each) it reports, per training iteration of PPO's default batch:

- sampling: env steps/s over ``--seconds`` (total and per runner) and the seconds of one batch
  as the driver sees them (``synchronous_parallel_sample``) against the seconds the runners
  spend stepping (timed on the runners): the difference is the batch's transfer and the
  driver's handling of it; the batch's size in bytes (pickled episodes);
- weight sync: the inference-only weights' size in bytes and the seconds to fetch them from the
  Learner, put them in the object store and have every runner set them (RLlib's
  ``sync_weights`` does the same without waiting; here each call waits for all runners);
- the Learner: seconds of one full iteration (``algo.train()``) minus the sampling and sync.

docs/scaling.md projects throughput for 8, 64 and 512 runners from these costs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym

RESULTS = Path(__file__).resolve().parent / "results" / "pg_rollout_scaling.json"
MULTINODE_RESULTS = RESULTS.with_name("pg_rollout_multinode.json")
ENVS_PER_RUNNER = 8
ENV_RUNNERS = {"vector": "VectorEnvRunner", "rllib": "RLlib SingleAgentEnvRunner"}
"""``--env-runner`` choices -> the EnvRunner class they sample with."""


def raw_vector_env_steps_per_s(env_name: str, num_envs: int, seconds: float) -> float:
    envs = gym.make_vec(env_name, num_envs=num_envs, vectorization_mode="sync")
    envs.reset(seed=0)
    envs.action_space.seed(0)
    steps = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        envs.step(envs.action_space.sample())
        steps += num_envs
    elapsed = time.perf_counter() - started
    envs.close()
    return steps / elapsed


def build_ppo(env_name: str, num_env_runners: int, vector_sampling: bool = True):
    """rlscale's PPO for the env (defaults, seed 0) with ``ENVS_PER_RUNNER`` envs per runner."""
    import rlscale
    from rlscale.platform.experiment import prepare

    spec = rlscale.ExperimentSpec(
        algorithm="ppo",
        env=env_name,
        seed=0,
        resources={
            "num_env_runners": num_env_runners,
            "num_envs_per_env_runner": ENVS_PER_RUNNER,
        },
        hyperparameters={"vector_sampling": vector_sampling},
    )
    return prepare(spec).config.build_algo()


def ppo_sampling_steps_per_s(
    env_name: str, num_env_runners: int, seconds: float, env_runner: str = "vector"
) -> float:
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    algo = build_ppo(env_name, num_env_runners, vector_sampling=env_runner == "vector")
    batch = algo.config.total_train_batch_size
    try:
        synchronous_parallel_sample(  # warm-up: actors started, first episodes reset
            worker_set=algo.env_runner_group, max_env_steps=batch, _uses_new_env_runners=True
        )
        steps = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            episodes = synchronous_parallel_sample(
                worker_set=algo.env_runner_group, max_env_steps=batch, _uses_new_env_runners=True
            )
            steps += sum(len(episode) for episode in episodes)
        return steps / (time.perf_counter() - started)
    finally:
        algo.stop()


def multinode_costs(env_name: str, num_env_runners: int, seconds: float) -> dict:
    """One PPO on the connected cluster with ``num_env_runners`` EnvRunners: the costs of an
    iteration, measured as the module docstring says."""
    import pickle
    import statistics

    import ray
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    algo = build_ppo(env_name, num_env_runners)
    batch = algo.config.total_train_batch_size
    group = algo.env_runner_group

    def sample_batch():
        return synchronous_parallel_sample(
            worker_set=group, max_env_steps=batch, _uses_new_env_runners=True
        )

    def timed_remote_sample(runner):
        started = time.perf_counter()
        episodes = runner.sample()
        return sum(len(e) for e in episodes), time.perf_counter() - started

    def inference_weights() -> dict:
        """What RLlib's ``sync_weights`` sends: the Learner's inference-only module state."""
        state = algo.learner_group.get_state(components="learner/rl_module", inference_only=True)
        return state["learner"]

    def sync_weights() -> None:
        reference = ray.put(inference_weights())
        group.foreach_env_runner("set_state", kwargs={"state": reference}, local_env_runner=False)

    try:
        sample_batch()  # warm-up: actors started, first episodes reset
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            steps += sum(len(episode) for episode in sample_batch())
        steps_per_s = steps / (time.perf_counter() - started)
        round_trips, compute, sizes = [], [], []
        for _ in range(5):
            begun = time.perf_counter()
            episodes = sample_batch()
            round_trips.append(time.perf_counter() - begun)
            sizes.append(len(pickle.dumps(episodes)))
            timings = group.foreach_env_runner(timed_remote_sample, local_env_runner=False)
            compute.append(max(seconds_ for _, seconds_ in timings))
        weight_bytes = len(pickle.dumps(inference_weights()))
        sync_seconds = []
        for _ in range(10):
            begun = time.perf_counter()
            sync_weights()
            sync_seconds.append(time.perf_counter() - begun)
        iteration_seconds = []
        for _ in range(3):
            begun = time.perf_counter()
            algo.train()
            iteration_seconds.append(time.perf_counter() - begun)
    finally:
        algo.stop()
    batch_round_trip = statistics.median(round_trips)
    batch_compute = statistics.median(compute)
    sync = statistics.median(sync_seconds)
    iteration = statistics.median(iteration_seconds)
    return {
        "env_runners": num_env_runners,
        "train_batch": batch,
        "steps_per_s": steps_per_s,
        "steps_per_s_per_runner": steps_per_s / num_env_runners,
        "batch_round_trip_s": batch_round_trip,
        "batch_runner_compute_s": batch_compute,
        "batch_transfer_and_driver_s": batch_round_trip - batch_compute,
        "batch_bytes": statistics.median(sizes),
        "weight_bytes": weight_bytes,
        "weight_sync_s": sync,
        "iteration_s": iteration,
        "learner_s": max(0.0, iteration - batch_round_trip - sync),
    }


def run_multinode(args: argparse.Namespace) -> None:
    from rlscale.platform.cluster.local import local_multinode_cluster

    counts = [n for n in args.runners if 1 <= n <= args.multinode]
    if not counts:
        raise SystemExit(f"--runners must include counts from 1 to --multinode {args.multinode}")
    rows = []
    with local_multinode_cluster(args.multinode, cpus_per_worker=1, head_cpus=0):
        for runners in counts:
            rows.append(multinode_costs(args.env, runners, args.seconds))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.env}, {args.multinode} one-CPU worker nodes, 8 envs per runner")
    print(
        "| runners | env steps/s | per runner | batch round trip s | runners stepping s "
        "| transfer + driver s | batch MB | weights KB | weight sync s | learner s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['env_runners']} | {row['steps_per_s']:,.0f} "
            f"| {row['steps_per_s_per_runner']:,.0f} | {row['batch_round_trip_s']:.3f} "
            f"| {row['batch_runner_compute_s']:.3f} | {row['batch_transfer_and_driver_s']:.3f} "
            f"| {row['batch_bytes'] / 1e6:.2f} | {row['weight_bytes'] / 1e3:.1f} "
            f"| {row['weight_sync_s']:.4f} | {row['learner_s']:.3f} |"
        )
    write_payload(
        args, {"benchmark": "pg_rollout_multinode", "worker_nodes": args.multinode, "rows": rows}
    )


def write_payload(args: argparse.Namespace, payload: dict) -> None:
    payload = {
        **payload,
        "env": args.env,
        "seconds": args.seconds,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(f".{args.out.name}.partial")
    temporary.write_text(json.dumps(payload, indent=2))
    temporary.replace(args.out)
    print(f"\nwrote {args.out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runners", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--env-runner", nargs="+", choices=list(ENV_RUNNERS), default=list(ENV_RUNNERS)
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--multinode", type=int, metavar="WORKERS", help="measure on a local multi-node cluster"
    )
    args = parser.parse_args(argv)
    if args.multinode:
        if args.out == RESULTS:
            args.out = MULTINODE_RESULTS
        run_multinode(args)
        return

    import ray

    from rlscale.platform.runtime import start_local_ray

    rows = [
        {
            "peer": "gymnasium-vector (random actions)",
            "env_runners": "-",
            "steps_per_s": raw_vector_env_steps_per_s(args.env, ENVS_PER_RUNNER, args.seconds),
        }
    ]
    start_local_ray()
    for runners in args.runners:
        for env_runner in args.env_runner:
            rows.append(
                {
                    "peer": f"rlscale-ppo sampling ({ENV_RUNNERS[env_runner]})",
                    "env_runners": runners,
                    "steps_per_s": ppo_sampling_steps_per_s(
                        args.env, runners, args.seconds, env_runner
                    ),
                }
            )
            print(
                f"{runners} env runners, {ENV_RUNNERS[env_runner]}: "
                f"{rows[-1]['steps_per_s']:,.0f} env steps/s",
                flush=True,
            )
    ray.shutdown()

    ceiling = rows[0]["steps_per_s"]
    for row in rows:
        row["vs_raw_vector_env"] = round(row["steps_per_s"] / ceiling, 3)
    print(f"\n{args.env}, {ENVS_PER_RUNNER} envs per runner, {args.seconds:g}s each")
    print("| peer | env runners | env steps/s | vs raw vector env |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['peer']} | {row['env_runners']} | {row['steps_per_s']:,.0f} "
            f"| {row['vs_raw_vector_env']:.3f}x |"
        )
    write_payload(args, {"benchmark": "pg_rollout_scaling", "rows": rows})


if __name__ == "__main__":
    main()
