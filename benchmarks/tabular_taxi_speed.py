"""Tabular Q-learning throughput on Taxi-v3: rlscale against a plain NumPy loop, same process.

    .venv/bin/python benchmarks/tabular_taxi_speed.py [--steps 60000] [--envs 16 64]

- numpy:   one ``gymnasium.make("Taxi-v3")`` env, ε-greedy on a NumPy table, the textbook update
           after every step (the floor: env step + a few NumPy calls);
- rlscale: ``q_learning`` through RLlib's EnvRunner (vectorized envs, connectors, episodes), the
           Learner (one SGD step per batch) and the weight sync, one row per envs-per-runner.

Both count env steps (transitions) per second of training, Ray's start and the algorithm's build
excluded. The rlscale rows also split a training step into RLlib's own timers (mean seconds
per call): sampling, the Learner update and the weight sync. Writes
benchmarks/results/tabular_taxi_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

ENV = "Taxi-v3"
ALPHA, GAMMA, EPSILON = 0.1, 0.99, 0.1
RESULTS = Path(__file__).resolve().parent / "results" / "tabular_taxi_speed.json"


def numpy_q_learning(steps: int, seed: int = 0) -> dict:
    """Plain Q-learning: env steps per second over ``steps`` steps."""
    env = gym.make(ENV)
    rng = np.random.default_rng(seed)
    table = np.zeros((env.observation_space.n, env.action_space.n))
    state, _ = env.reset(seed=seed)
    started = time.perf_counter()
    for _ in range(steps):
        if rng.random() < EPSILON:
            action = int(rng.integers(env.action_space.n))
        else:
            action = int(np.argmax(table[state]))
        next_state, reward, terminated, truncated, _ = env.step(action)
        bootstrap = 0.0 if terminated else GAMMA * table[next_state].max()
        table[state, action] += ALPHA * (reward + bootstrap - table[state, action])
        state = next_state
        if terminated or truncated:
            state, _ = env.reset()
    wall_s = time.perf_counter() - started
    return {"peer": "numpy", "envs": 1, "env_steps": steps, "wall_s": wall_s}


def rlscale_q_learning(steps: int, envs: int, seed: int = 0) -> dict:
    """rlscale's q_learning (defaults but the env count): env steps per second of train()."""
    import rlscale
    from rlscale.platform.experiment import prepare

    spec = rlscale.ExperimentSpec(
        algorithm="q_learning",
        env=ENV,
        seed=seed,
        hyperparameters={"num_envs_per_env_runner": envs, "gamma": GAMMA, "lr": ALPHA},
    )
    algo = prepare(spec).config.build_algo()
    try:
        algo.train()  # warm-up: first-call costs (torch, connectors) are not throughput
        first = int(algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime")))
        started = time.perf_counter()
        env_steps = 0
        while env_steps < steps:
            result = algo.train()
            env_steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"]) - first
        wall_s = time.perf_counter() - started
    finally:
        algo.stop()
    timers = result["timers"]
    return {
        "peer": "rlscale",
        "envs": envs,
        "env_steps": env_steps,
        "wall_s": wall_s,
        "training_step_s": timers.get("training_step"),
        "sampling_s": timers.get("env_runner_sampling_timer"),
        "learner_update_s": timers.get("learner_update_timer"),
        "weight_sync_s": timers.get("synch_weights"),
        "env_step_s": result["env_runners"].get("env_step_timer"),
        "module_forward_s": result["env_runners"].get("rlmodule_inference_timer"),
    }


def print_table(rows: list[dict]) -> None:
    base = next(row for row in rows if row["peer"] == "numpy")
    print(f"\nQ-learning on {ENV}: env steps per second of training (same process)")
    print(
        "| peer | envs | env steps/s | vs numpy | per training step: sample / learn / sync (ms) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        split = "n/a"
        if row["peer"] == "rlscale":
            split = " / ".join(
                f"{1000 * row[key]:.1f}"
                for key in ("sampling_s", "learner_update_s", "weight_sync_s")
            )
        print(
            f"| {row['peer']} | {row['envs']} | {row['steps_per_s']:,.0f} "
            f"| {row['steps_per_s'] / base['steps_per_s']:.2f}x | {split} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--envs", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import ray

    from rlscale.platform.runtime import start_local_ray

    start_local_ray()
    numpy_before = numpy_q_learning(args.steps)
    rlscale_rows = [rlscale_q_learning(args.steps, envs) for envs in args.envs]
    numpy_after = numpy_q_learning(args.steps, seed=1)  # again: the machine's speed drifts
    ray.shutdown()
    numpy_row = min(numpy_before, numpy_after, key=lambda row: row["wall_s"])
    rows = [numpy_row, *rlscale_rows]
    for row in rows:
        row["steps_per_s"] = row["env_steps"] / row["wall_s"]
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "tabular_taxi_speed",
                "env": ENV,
                "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
