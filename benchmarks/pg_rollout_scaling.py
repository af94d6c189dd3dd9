"""Rollout scaling: env steps/s of PPO sampling with 0, 1 and 2 EnvRunners, against the ceiling.

    .venv/bin/python benchmarks/pg_rollout_scaling.py [--env CartPole-v1] [--seconds 20]
        [--runners 0 1 2] [--env-runner vector rllib]

- rlscale-ppo, N runners: rlscale's PPO config for the env (defaults, 8 vectorized envs per
  runner), sampling only: ``synchronous_parallel_sample`` of one train batch at a time from the
  EnvRunnerGroup, no learner update, for ``--seconds``. 0 runners samples in the driver.
  ``--env-runner`` picks the EnvRunner class: ``vector`` is rlscale's VectorEnvRunner (the
  default where it applies), ``rllib`` RLlib's SingleAgentEnvRunner (``vector_sampling=False``);
  both, one after the other, by default.
- gymnasium-vector: the ceiling, a raw ``gymnasium`` sync vector env of the same size stepping
  random actions in one process (no policy at all).

Ratios are against the raw vector env measured in the same run. Writes JSON and prints a table.
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


def ppo_sampling_steps_per_s(
    env_name: str, num_env_runners: int, seconds: float, env_runner: str = "vector"
) -> float:
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

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
        hyperparameters={"vector_sampling": env_runner == "vector"},
    )
    config = prepare(spec).config
    algo = config.build_algo()
    batch = config.total_train_batch_size
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runners", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--env-runner", nargs="+", choices=list(ENV_RUNNERS), default=list(ENV_RUNNERS)
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "pg_rollout_scaling",
        "env": args.env,
        "seconds": args.seconds,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "rows": rows,
    }
    temporary = args.out.with_name(f".{args.out.name}.partial")
    temporary.write_text(json.dumps(payload, indent=2))
    temporary.replace(args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
