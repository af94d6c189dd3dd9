"""Hopper-v5 (MuJoCo): mean return after 1M env steps, rlscale PPO and TRPO against SB3's.

    .venv/bin/python benchmarks/pg_hopper.py [--steps 1000000] [--seeds 0] [--peers ...]

Takes tens of minutes per run on 2 cores. Peers:

- rlscale-ppo / rlscale-trpo: ``rlscale.train`` with the algorithms' defaults for Box actions
  plus ``MUJOCO_HYPERPARAMETERS`` (observation normalization and a long horizon, the settings of
  Schulman et al. 2015/2017 for MuJoCo locomotion), the counterpart of rl-zoo's per-env file;
- sb3-ppo / sb3-trpo: Stable-Baselines3 PPO and sb3-contrib TRPO with rl-zoo's Hopper-v4
  hyper-parameters (rl-zoo has none for v5; ``normalize: true`` becomes ``VecNormalize``).

"Mean return" is the mean of the last 100 whole training episodes. Writes JSON after every run
and prints a table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import cartpole_race as race
import numpy as np

ENV = "Hopper-v5"
ZOO_ENV = "Hopper-v4"
RESULTS = Path(__file__).resolve().parent / "results" / "pg_hopper.json"


# On top of the defaults for Box actions, which are tuned for Pendulum (gamma 0.95).
MUJOCO_HYPERPARAMETERS = {
    "ppo": {
        "normalize_observations": True,
        "gamma": 0.99,
        "lambda_": 0.95,
        "lr": 3e-4,
        "train_batch_size_per_learner": 2048,
        "minibatch_size": 64,
        "num_epochs": 10,
    },
    "trpo": {
        "normalize_observations": True,
        "gamma": 0.99,
        "lambda_": 0.95,
        "train_batch_size_per_learner": 2048,
        "max_kl": 0.01,
    },
}


@dataclass
class Run:
    peer: str
    seed: int
    env_steps: int
    wall_s: float
    mean_return: float


def run_rlscale(algorithm: str, seed: int, steps: int, keep_in: Path | None) -> Run:
    result = race.train_with_defaults(
        algorithm,
        ENV,
        seed,
        {"timesteps": steps},
        f"hopper-{algorithm}-{seed}",
        MUJOCO_HYPERPARAMETERS[algorithm],
        keep_in,
    )
    final = result.final
    return Run(f"rlscale-{algorithm}", seed, final.env_steps, result.wall_s, final.return_mean)


def run_sb3(algorithm: str, seed: int, steps: int, keep_in: Path | None) -> Run:
    """SB3 runs are not kept (``keep_in`` is for rlscale runs)."""
    import rl_zoo3
    import yaml
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    if algorithm == "trpo":
        from sb3_contrib import TRPO as algo_class
    else:
        from stable_baselines3 import PPO as algo_class

    path = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algorithm}.yml"
    hp = dict(yaml.safe_load(path.read_text())[ZOO_ENV])
    for key in ("n_timesteps", "policy"):
        hp.pop(key)
    env = make_vec_env(ENV, n_envs=hp.pop("n_envs", 1), seed=seed)
    if hp.pop("normalize", False):
        env = VecNormalize(env)
    if "policy_kwargs" in hp:
        hp["policy_kwargs"] = race.parse_policy_kwargs(hp["policy_kwargs"])
    started = time.perf_counter()
    model = algo_class("MlpPolicy", env, seed=seed, device="cpu", **hp)
    model.learn(total_timesteps=steps)
    wall_s = time.perf_counter() - started
    mean = float(np.mean([info["r"] for info in model.ep_info_buffer]))
    return Run(f"sb3-{algorithm}", seed, int(model.num_timesteps), wall_s, mean)


PEERS = {
    "rlscale-ppo": partial(run_rlscale, "ppo"),
    "rlscale-trpo": partial(run_rlscale, "trpo"),
    "sb3-ppo": partial(run_sb3, "ppo"),
    "sb3-trpo": partial(run_sb3, "trpo"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--peers", nargs="+", choices=list(PEERS), default=list(PEERS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--keep-runs",
        type=Path,
        help="keep rlscale's runs (checkpoints every 25 iterations) in this folder, e.g. to "
        "collect a Hopper dataset with one of them",
    )
    args = parser.parse_args(argv)

    import ray

    from rlscale.platform.runtime import start_local_ray

    start_local_ray()
    runs: list[Run] = []
    for peer in args.peers:
        for seed in args.seeds:
            runs.append(PEERS[peer](seed, args.steps, args.keep_runs))
            run = runs[-1]
            print(
                f"{peer:<13} seed {seed}: {run.env_steps:,} steps in {run.wall_s:.0f}s, "
                f"mean return {run.mean_return:.1f}",
                flush=True,
            )
            write_results(args.out, runs, args.steps, sys.argv)
    ray.shutdown()

    print(f"\n{ENV}, mean return of the last 100 episodes after {args.steps:,} env steps")
    print("| peer | seed | env steps | wall s | mean return |")
    print("| --- | --- | --- | --- | --- |")
    for run in runs:
        print(
            f"| {run.peer} | {run.seed} | {run.env_steps:,} | {run.wall_s:.0f} "
            f"| {run.mean_return:.1f} |"
        )
    print(f"\nwrote {args.out}")


def write_results(path: Path, runs: list[Run], steps: int, command: list[str]) -> None:
    race.write_results(
        path,
        {
            "benchmark": "pg_hopper",
            "env": ENV,
            "steps": steps,
            "command": " ".join(command),
            "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
            "runs": [asdict(run) for run in runs],
        },
    )


if __name__ == "__main__":
    main()
