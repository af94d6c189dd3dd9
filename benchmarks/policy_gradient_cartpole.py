"""A2C, TRPO and PPO on CartPole-v1: env steps and wall time to a mean return of 475, in one run.

    .venv/bin/python benchmarks/policy_gradient_cartpole.py [--seeds 0 1 2] [--max-steps 200000]
        [--peers rlscale-ppo sb3-ppo ...] [--env-runner vector|rllib] [--set KEY=JSON ...]
        [--out FILE]

- rlscale-a2c / rlscale-trpo / rlscale-ppo: ``rlscale.train`` with each algorithm's defaults
  (what ``rlscale train a2c|trpo|ppo`` runs);
- sb3-a2c / sb3-ppo / sb3-trpo: Stable-Baselines3 A2C and PPO and sb3-contrib TRPO with the
  rl-zoo hyper-parameters for CartPole-v1 (read from the installed rl_zoo3 package's yml);
- rllib-stock-ppo: RLlib's ``PPOConfig()`` with nothing changed but the environment and the seed.

``--env-runner`` picks the rlscale peers' EnvRunner: ``vector`` (default) is rlscale's
VectorEnvRunner, ``rllib`` RLlib's SingleAgentEnvRunner (``vector_sampling=False``); give an
``--out`` file too, so that the two runs do not share one results file. ``--set KEY=JSON ...``
sets hyper-parameters of the rlscale peers (``--set lr=0.002 entropy_coeff=0.01``), to race
other settings against SB3's; the defaults are what the race is for.

Ratios compare each rlscale algorithm with its SB3 counterpart and rlscale PPO with RLlib's stock
PPO. See ``cartpole_race.py`` for how returns and times are measured.
"""

from __future__ import annotations

import argparse
import json
from functools import partial

import cartpole_race as race

ALGORITHMS = ("a2c", "trpo", "ppo")
RLSCALE_HYPERPARAMETERS: dict[str, object] = {}
"""What ``--env-runner`` and ``--set`` set on the rlscale peers (nothing: rlscale's defaults)."""


def run_rlscale(algorithm: str, seed: int, max_steps: int) -> race.Run:
    if not RLSCALE_HYPERPARAMETERS:
        return race.run_rlscale(algorithm, seed, max_steps, peer=f"rlscale-{algorithm}")
    stop = {"reward": race.TARGET, "timesteps": max_steps}
    result = race.train_with_defaults(
        algorithm, race.ENV, seed, stop, f"bench-{algorithm}-{seed}", RLSCALE_HYPERPARAMETERS
    )
    final = result.final
    return race.Run(
        f"rlscale-{algorithm}",
        seed,
        final.return_mean >= race.TARGET,
        final.env_steps,
        result.wall_s,
        final.return_mean,
    )


def sb3_class(algorithm: str) -> type:
    if algorithm == "trpo":
        from sb3_contrib import TRPO

        return TRPO
    import stable_baselines3

    return getattr(stable_baselines3, algorithm.upper())


def run_sb3(algorithm: str, seed: int, max_steps: int) -> race.Run:
    from stable_baselines3.common.env_util import make_vec_env

    hp = race.rl_zoo_hyperparameters(algorithm)
    n_envs = hp.pop("n_envs")
    hp.pop("n_timesteps")
    policy = hp.pop("policy")
    for key in ("learning_rate", "clip_range"):
        if key in hp:
            hp[key] = race.linear_schedule(hp[key])

    def make_model():
        env = make_vec_env(race.ENV, n_envs=n_envs, seed=seed)
        return sb3_class(algorithm)(policy, env, seed=seed, device="cpu", **hp)

    return race.run_sb3_model(make_model, seed, max_steps, peer=f"sb3-{algorithm}")


def run_rllib_stock(seed: int, max_steps: int) -> race.Run:
    from ray.rllib.algorithms.ppo import PPOConfig

    return race.run_rllib_config("rllib-stock-ppo", PPOConfig(), seed, max_steps)


# The slowest peer runs last, so a run cut short still holds the others.
PEERS: dict[str, race.Peer] = {
    **{f"rlscale-{name}": partial(run_rlscale, name) for name in ALGORITHMS},
    **{f"sb3-{name}": partial(run_sb3, name) for name in ALGORITHMS},
    "rllib-stock-ppo": run_rllib_stock,
}
BASELINES = {
    **{f"sb3-{name}": f"rlscale-{name}" for name in ALGORITHMS},
    **{f"rlscale-{name}": f"rlscale-{name}" for name in ALGORITHMS},
    "rllib-stock-ppo": "rlscale-ppo",
}

if __name__ == "__main__":
    runner_flag = argparse.ArgumentParser(add_help=False)
    runner_flag.add_argument("--env-runner", choices=("vector", "rllib"), default="vector")
    runner_flag.add_argument("--set", nargs="+", default=[], metavar="KEY=JSON")
    known, rest = runner_flag.parse_known_args()
    if known.env_runner == "rllib":
        RLSCALE_HYPERPARAMETERS["vector_sampling"] = False
    for pair in known.set:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            runner_flag.error(f"--set {pair!r}: expected KEY=JSON, for example lr=0.002")
        try:
            RLSCALE_HYPERPARAMETERS[key] = json.loads(value)
        except json.JSONDecodeError as error:
            runner_flag.error(f"--set {pair!r}: the value after '=' must be JSON ({error})")
    race.race(
        "policy_gradient_cartpole",
        "A2C, TRPO, PPO",
        PEERS,
        BASELINES,
        max_steps=200_000,
        argv=rest,
    )
