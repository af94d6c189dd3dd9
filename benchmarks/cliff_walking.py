"""Q-learning vs SARSA on CliffWalking-v1 (Sutton & Barto, example 6.6 and figure 6.4).

    .venv/bin/python benchmarks/cliff_walking.py [--seeds 0 1 2 3 4] [--steps 20000]

Both run through rlscale (RLlib EnvRunner + Learner) with constant ε = 0.1 and α decaying from
0.5 to 0.01. The figure shows the sum of rewards per training episode (ε-greedy, online),
smoothed over 10 episodes and averaged over seeds: Q-learning walks the cliff edge and falls
off now and then, SARSA learns the safer path and scores better online. The table adds each
run's final greedy return (Q-learning: -13, the edge; SARSA: -15 or -17, a row or two up).
Writes benchmarks/results/cliff_walking.json and .png.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

ENV = "CliffWalking-v1"
ALGORITHMS = ("q_learning", "sarsa")
HYPERPARAMETERS = {"epsilon_start": 0.1, "epsilon_end": 0.1}
GREEDY_STEP_LIMIT = 500
SMOOTHING = 10
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Run:
    algorithm: str
    seed: int
    episode_returns: list[float]
    greedy_return: float
    env_steps: int
    wall_s: float


def train(algorithm: str, seed: int, steps: int) -> Run:
    """Train to ``steps`` env steps, keeping every training episode's return."""
    import rlscale
    from rlscale.platform.episode_stats import EpisodeWindow
    from rlscale.platform.experiment import prepare

    hyperparameters = HYPERPARAMETERS | {"lr": [[0, 0.5], [steps, 0.01]]}
    spec = rlscale.ExperimentSpec(
        algorithm=algorithm, env=ENV, seed=seed, hyperparameters=hyperparameters
    )
    algo = prepare(spec).config.build_algo()
    episodes = EpisodeWindow(size=10**7)
    started = time.perf_counter()
    env_steps = 0
    try:
        while env_steps < steps:
            result = algo.train()
            episodes.add_from(result)
            env_steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
        wall_s = time.perf_counter() - started
        greedy = algo.get_module().greedy_actions()
    finally:
        algo.stop()
    return Run(algorithm, seed, list(episodes.returns), greedy_return(greedy), env_steps, wall_s)


def greedy_return(greedy_actions: list[int]) -> float:
    """One episode of the greedy policy (the env is deterministic); capped at 500 steps."""
    env = gym.make(ENV, max_episode_steps=GREEDY_STEP_LIMIT)
    state, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        state, reward, terminated, truncated, _ = env.step(greedy_actions[state])
        total += float(reward)
        done = terminated or truncated
    return total


def smoothed_mean_curve(runs: list[Run]) -> np.ndarray:
    """Per-episode returns averaged over seeds (first N episodes, N = the shortest run)."""
    length = min(len(run.episode_returns) for run in runs)
    curves = np.array([run.episode_returns[:length] for run in runs])
    window = np.ones(SMOOTHING) / SMOOTHING
    return np.convolve(curves.mean(axis=0), window, mode="valid")


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for algorithm in ALGORITHMS:
        mine = [run for run in runs if run.algorithm == algorithm]
        if mine:
            curve = smoothed_mean_curve(mine)
            axes.plot(np.arange(len(curve)) + SMOOTHING, curve, label=algorithm)
    axes.set_ylim(-100, 0)
    axes.set_xlabel("training episode")
    axes.set_ylabel(f"sum of rewards per episode ({SMOOTHING}-episode mean)")
    seeds = len({run.seed for run in runs})
    axes.set_title(f"{ENV}: ε = 0.1, mean of {seeds} seeds (rlscale)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def summarize(runs: list[Run]) -> list[dict]:
    rows = []
    for algorithm in ALGORITHMS:
        mine = [run for run in runs if run.algorithm == algorithm]
        online = [statistics.mean(run.episode_returns[-100:]) for run in mine]
        greedy = [run.greedy_return for run in mine]
        rows.append(
            {
                "algorithm": algorithm,
                "online_return_last100_median": statistics.median(online),
                "online_return_last100": [round(value, 1) for value in online],
                "greedy_return_median": statistics.median(greedy),
                "greedy_returns": greedy,
                "episodes_median": statistics.median(len(run.episode_returns) for run in mine),
                "steps_per_s_median": statistics.median(run.env_steps / run.wall_s for run in mine),
            }
        )
    return rows


def print_table(rows: list[dict], steps: int) -> None:
    print(f"\n{ENV}, {steps:,} env steps per run, ε = 0.1, α 0.5 -> 0.01")
    print(
        "| algorithm | online return, last 100 episodes (median) | greedy return (median) "
        "| greedy returns per seed | episodes | env steps/s |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['algorithm']} | {row['online_return_last100_median']:.1f} "
            f"| {row['greedy_return_median']:.0f} "
            f"| {', '.join(f'{value:.0f}' for value in row['greedy_returns'])} "
            f"| {row['episodes_median']:.0f} | {row['steps_per_s_median']:,.0f} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import ray

    from rlscale.platform.runtime import start_local_ray

    start_local_ray()
    runs = []
    for algorithm in ALGORITHMS:
        for seed in args.seeds:
            run = train(algorithm, seed, args.steps)
            print(
                f"{algorithm:<10} seed {seed}: {len(run.episode_returns)} episodes, "
                f"greedy return {run.greedy_return:.0f}, {run.wall_s:.1f}s",
                flush=True,
            )
            runs.append(run)
    ray.shutdown()

    rows = summarize(runs)
    print_table(rows, args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(runs, args.out / "cliff_walking.png")
    (args.out / "cliff_walking.json").write_text(
        json.dumps(
            {
                "benchmark": "cliff_walking",
                "env": ENV,
                "steps": args.steps,
                "hyperparameters": HYPERPARAMETERS,
                "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
                "summary": rows,
                "runs": [asdict(run) for run in runs],
            },
            indent=1,
        )
    )
    print(f"\nwrote {args.out / 'cliff_walking.json'} and {args.out / 'cliff_walking.png'}")


if __name__ == "__main__":
    main()
