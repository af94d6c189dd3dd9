"""A2C, TRPO and PPO on CartPole-v1: env steps and wall time to a mean return of 475, in one run.

    .venv/bin/python benchmarks/policy_gradient_cartpole.py [--seeds 0 1 2] [--max-steps 300000]
        [--peers rlscale-ppo sb3-ppo ...]

- rlscale-a2c / rlscale-trpo / rlscale-ppo: ``rlscale.train`` with each algorithm's defaults
  (what ``rlscale train a2c|trpo|ppo`` runs);
- sb3-a2c / sb3-ppo / sb3-trpo: Stable-Baselines3 A2C and PPO and sb3-contrib TRPO with the
  rl-zoo hyper-parameters for CartPole-v1 (read from the installed rl_zoo3 package's yml);
- rllib-stock-ppo: RLlib's ``PPOConfig()`` with nothing changed but the environment and the seed.

"Mean return" is the mean return of the last 100 whole training episodes for all of them
(rlscale's EpisodeTotals callback for the RLlib runs, SB3's ep_info_buffer for SB3). Wall time
runs from building the algorithm to the iteration that crosses 475; Ray's start-up is measured
once and reported apart. A run that does not reach 475 within --max-steps is reported as not
reached. Ratios compare each rlscale algorithm with its SB3 counterpart and rlscale PPO with
RLlib's stock PPO. Writes JSON after every run and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

TARGET = 475.0
ENV = "CartPole-v1"
RESULTS = Path(__file__).resolve().parent / "results" / "policy_gradient_cartpole.json"


@dataclass
class Run:
    peer: str
    seed: int
    reached: bool
    env_steps: int
    wall_s: float
    final_return: float


def run_rlscale(algorithm: str, seed: int, max_steps: int) -> Run:
    import rlscale

    with tempfile.TemporaryDirectory() as output:
        spec = rlscale.ExperimentSpec(
            algorithm=algorithm,
            env=ENV,
            seed=seed,
            output=output,
            name=f"bench-{algorithm}-{seed}",
            stop={"reward": TARGET, "timesteps": max_steps},
            checkpoint={"every": 0},
        )
        result = rlscale.train(spec)
    final = result.final
    return Run(
        f"rlscale-{algorithm}",
        seed,
        final.return_mean >= TARGET,
        final.env_steps,
        result.wall_s,
        final.return_mean,
    )


def run_rllib_stock(seed: int, max_steps: int) -> Run:
    from ray.rllib.algorithms.ppo import PPOConfig

    from rlscale.platform.episode_stats import EpisodeTotals, EpisodeWindow

    # EpisodeTotals only measures (whole-episode returns, as rlscale reports them); it does not
    # change what PPO does.
    config = PPOConfig().environment(ENV).debugging(seed=seed).callbacks(EpisodeTotals)
    started = time.perf_counter()
    algo = config.build_algo()
    window = EpisodeWindow()
    try:
        while True:
            result = algo.train()
            window.add_from(result)
            steps = int(result["num_env_steps_sampled_lifetime"])
            mean = float(np.mean(window.returns)) if window.returns else float("nan")
            if mean >= TARGET or steps >= max_steps:
                wall_s = time.perf_counter() - started
                return Run("rllib-stock-ppo", seed, mean >= TARGET, steps, wall_s, mean)
    finally:
        algo.stop()


def rl_zoo_hyperparameters(algorithm: str) -> dict:
    import rl_zoo3
    import yaml

    path = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algorithm}.yml"
    return dict(yaml.safe_load(path.read_text())[ENV])


def linear_schedule(spec: str | float) -> Callable[[float], float] | float:
    """rl-zoo's ``lin_<start>`` strings: decay linearly from start to 0 over training."""
    if isinstance(spec, str) and spec.startswith("lin_"):
        start = float(spec.removeprefix("lin_"))
        return lambda progress_remaining: progress_remaining * start
    return spec


def sb3_class(algorithm: str) -> type:
    if algorithm == "trpo":
        from sb3_contrib import TRPO

        return TRPO
    import stable_baselines3

    return getattr(stable_baselines3, algorithm.upper())


def run_sb3(algorithm: str, seed: int, max_steps: int) -> Run:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    hp = rl_zoo_hyperparameters(algorithm)
    n_envs = hp.pop("n_envs")
    hp.pop("n_timesteps")
    policy = hp.pop("policy")
    for key in ("learning_rate", "clip_range"):
        if key in hp:
            hp[key] = linear_schedule(hp[key])

    class StopAtTarget(BaseCallback):
        """Records steps and time when the 100-episode mean first reaches the target, then stops."""

        hit: tuple[int, float] | None = None

        def _on_step(self) -> bool:
            return self.hit is None

        def _on_rollout_end(self) -> None:
            buffer = self.model.ep_info_buffer
            if self.hit is None and buffer and np.mean([i["r"] for i in buffer]) >= TARGET:
                self.hit = (self.model.num_timesteps, time.perf_counter() - started)

    started = time.perf_counter()
    env = make_vec_env(ENV, n_envs=n_envs, seed=seed)
    model = sb3_class(algorithm)(policy, env, seed=seed, device="cpu", **hp)
    callback = StopAtTarget()
    model.learn(total_timesteps=max_steps, callback=callback)
    mean = float(np.mean([info["r"] for info in model.ep_info_buffer]))
    steps, wall_s = callback.hit or (int(model.num_timesteps), time.perf_counter() - started)
    return Run(f"sb3-{algorithm}", seed, callback.hit is not None, steps, wall_s, mean)


# The slowest peer runs last, so a run cut short still holds the others.
PEERS: dict[str, Callable[[int, int], Run]] = {
    **{f"rlscale-{name}": partial(run_rlscale, name) for name in ("a2c", "trpo", "ppo")},
    **{f"sb3-{name}": partial(run_sb3, name) for name in ("a2c", "trpo", "ppo")},
    "rllib-stock-ppo": run_rllib_stock,
}
# Each rlscale algorithm against these peers (peer / rlscale: > 1 means rlscale is better).
BASELINES = {
    "sb3-a2c": "rlscale-a2c",
    "sb3-trpo": "rlscale-trpo",
    "sb3-ppo": "rlscale-ppo",
    "rllib-stock-ppo": "rlscale-ppo",
}


def summarize(runs: list[Run]) -> list[dict]:
    rows = []
    for peer in PEERS:
        mine = [run for run in runs if run.peer == peer]
        if not mine:
            continue
        reached = [run for run in mine if run.reached]
        rows.append(
            {
                "peer": peer,
                "reached": f"{len(reached)}/{len(mine)}",
                "median_env_steps": statistics.median(r.env_steps for r in reached)
                if reached
                else None,
                "env_steps": [r.env_steps for r in mine],
                "median_wall_s": statistics.median(r.wall_s for r in reached) if reached else None,
                "wall_s": [round(r.wall_s, 1) for r in mine],
            }
        )
    by_peer = {row["peer"]: row for row in rows}
    for row in rows:
        base = by_peer.get(BASELINES.get(row["peer"], row["peer"]))
        row["compared_with"] = base["peer"] if base else None
        for key in ("median_env_steps", "median_wall_s"):
            ratio = None
            if base and base[key] and row[key]:
                ratio = round(row[key] / base[key], 2)
            row[key.replace("median_", "ratio_to_rlscale_")] = ratio
    return rows


def print_table(rows: list[dict], ray_start_s: float) -> None:
    print(f"\n{ENV}, to mean return {TARGET:g} (Ray start {ray_start_s:.1f}s, excluded)")
    print(
        "| peer | reached | env steps per seed | median env steps | wall s per seed "
        "| median wall s | vs | steps / rlscale's | time / rlscale's |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:

        def fmt(value, spec=",.0f"):
            return "n/a" if value is None else format(value, spec)

        print(
            f"| {row['peer']} | {row['reached']} "
            f"| {' / '.join(f'{steps:,}' for steps in row['env_steps'])} "
            f"| {fmt(row['median_env_steps'])} "
            f"| {' / '.join(f'{wall:.1f}' for wall in row['wall_s'])} "
            f"| {fmt(row['median_wall_s'], '.1f')} | {row['compared_with']} "
            f"| {fmt(row['ratio_to_rlscale_env_steps'], '.2f')}x "
            f"| {fmt(row['ratio_to_rlscale_wall_s'], '.2f')}x |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=200_000)
    parser.add_argument("--peers", nargs="+", choices=list(PEERS), default=list(PEERS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import ray

    from rlscale.platform.runtime import start_local_ray

    started = time.perf_counter()
    start_local_ray()
    ray_start_s = time.perf_counter() - started

    runs: list[Run] = []
    for peer in args.peers:
        for seed in args.seeds:
            run = PEERS[peer](seed, args.max_steps)
            print(
                f"{peer:<12} seed {seed}: reached={run.reached} steps={run.env_steps:,} "
                f"wall={run.wall_s:.1f}s final mean return={run.final_return:.1f}",
                flush=True,
            )
            runs.append(run)
            # Saved after every run, so a long benchmark cut short still leaves its numbers.
            write_results(args.out, runs, ray_start_s, args.max_steps)
    ray.shutdown()

    print_table(summarize(runs), ray_start_s)
    print(f"\nwrote {args.out}")


def write_results(path: Path, runs: list[Run], ray_start_s: float, max_steps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "policy_gradient_cartpole",
        "target": TARGET,
        "env": ENV,
        "ray_start_s": ray_start_s,
        "max_steps": max_steps,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "runs": [asdict(run) for run in runs],
        "summary": summarize(runs),
    }
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(payload, indent=2))
    temporary.replace(path)


if __name__ == "__main__":
    main()
