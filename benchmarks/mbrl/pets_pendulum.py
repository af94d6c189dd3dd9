"""mbrl-lib 0.2.0's PETS on Gymnasium 0.26 Pendulum-v1: the peer side of the PETS comparison.

Run with the mbrl venv (``make bench-mbrl-venv``; see README.md beside this file):

    .venv-mbrl/bin/python benchmarks/mbrl/pets_pendulum.py [--seed 0] [--env-steps 10000] \
        [--threshold -250] [--settings JSON] [--json OUT.json]

PETS (Chua, Calandra, McAllister & Levine 2018, "Deep Reinforcement Learning in a Handful of
Trials using Probabilistic Dynamics Models", https://arxiv.org/abs/1805.12114) as mbrl-lib
builds it (Pineda, Amos, Zhang, Lambert & Calandra 2021, "MBRL-Lib: A Modular Library for
Model-based Reinforcement Learning", https://arxiv.org/abs/2104.10159). This script only calls
the library, the way ``mbrl.algorithms.pets.train`` and mbrl-lib's PETS example notebook do:

- ``mbrl.util.common.create_one_dim_tr_model``: a ``GaussianMLP`` ensemble (probabilistic
  members, mean and log-variance heads) in a ``OneDTransitionRewardModel`` that predicts the
  normalized change of the observation;
- ``mbrl.models.ModelEnv`` with Pendulum's reward given (mbrl-lib ships none for Pendulum:
  ``pendulum_reward`` below is Gymnasium's formula) and ``termination_fns.no_termination``;
- ``mbrl.planning.create_trajectory_optim_agent_for_model``: a ``TrajectoryOptimizerAgent``
  with ``CEMOptimizer``, each candidate scored by the mean return of its particles, propagated
  through the ensemble with mbrl-lib's default ``random_model`` (PETS's TS1);
- one random warm-up episode (``rollout_agent_trajectories`` with ``RandomAgent``), then 200-step
  episodes, the model retrained on the whole replay buffer before each
  (``train_model_and_save_model_and_data``, which also refreshes the normalizer).

The defaults (``PETSSettings``) are mbrl-lib's PETS configuration (``examples/conf``:
``algorithm/pets.yaml``, ``dynamics_model/gaussian_mlp_ensemble.yaml``, ``action_optimizer/
cem.yaml`` and the ``overrides/pets_cartpole.yaml`` training values for 200-step episodes) with
an ensemble of 5 and a 25-step horizon. ``--settings`` (a JSON object or a path to one) changes
any of them.

mbrl-lib's reward functions see the action and the *next* observation, so the planner scores a
step by the cost of the state it leads to; Gymnasium's Pendulum charges the state the step
starts from. The env's own reward is what the returns below report.

Reports each episode's return with the cumulative env steps, the env steps at the end of the
first planned episode whose return reaches ``--threshold`` (None if none does; the random
warm-up episode does not count), the wall time (total and per episode, split into model training
and acting), the process CPU time (the honest figure on a shared machine: one torch thread), and
the versions of mbrl, torch and gymnasium.

mbrl 0.2.0 was written for Hydra 1.0, whose ``instantiate`` is not recursive; this venv has
Hydra 1.3 (see constraints.txt), so the configs handed to mbrl-lib's factories say
``_recursive_: False`` to keep Hydra 1.0's behaviour (the nested optimizer and activation configs
are instantiated by mbrl-lib itself).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
import warnings
from pathlib import Path

import gymnasium as gym
import mbrl
import mbrl.env.termination_fns as termination_fns
import mbrl.models
import mbrl.planning
import mbrl.util.common
import numpy as np
import omegaconf
import torch

ENV_ID = "Pendulum-v1"
MAX_TORQUE = 2.0  # Pendulum-v1's action bound; its cost clips the torque to it.

# gymnasium 0.26.3's env checker names np.bool8, deprecated since numpy 1.24.
warnings.filterwarnings("ignore", message=".*np.bool8.*", category=DeprecationWarning)


@dataclasses.dataclass(frozen=True)
class PETSSettings:
    """mbrl-lib's PETS defaults, ensemble of 5 and horizon 25; ``--settings`` overrides them."""

    trial_length: int = 200
    warmup_episodes: int = 1
    # Dynamics model: GaussianMLP ensemble (dynamics_model/gaussian_mlp_ensemble.yaml).
    ensemble_size: int = 5
    num_layers: int = 4
    hid_size: int = 200
    activation: str = "torch.nn.SiLU"
    propagation_method: str = "random_model"
    # Model training (overrides/pets_cartpole.yaml), once before every planned episode.
    model_lr: float = 7.5e-4
    model_wd: float = 3e-5
    model_batch_size: int = 256
    validation_ratio: float = 0.0
    num_epochs_train_model: int = 25
    patience: int = 25
    # Planner: CEM over action sequences (algorithm/pets.yaml, action_optimizer/cem.yaml).
    planning_horizon: int = 25
    num_particles: int = 20
    cem_num_iters: int = 5
    cem_elite_ratio: float = 0.1
    cem_population_size: int = 350
    cem_alpha: float = 0.1
    cem_clipped_normal: bool = False

    def __post_init__(self) -> None:
        positive = (
            "trial_length",
            "ensemble_size",
            "num_layers",
            "hid_size",
            "model_batch_size",
            "num_epochs_train_model",
            "patience",
            "planning_horizon",
            "num_particles",
            "cem_num_iters",
            "cem_population_size",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_episodes < 1:
            raise ValueError(
                f"warmup_episodes must be at least 1 (the model needs data), "
                f"got {self.warmup_episodes}"
            )
        if not 0 < self.cem_elite_ratio <= 1:
            raise ValueError(f"cem_elite_ratio must be in (0, 1], got {self.cem_elite_ratio}")
        if not 0 <= self.validation_ratio < 1:
            raise ValueError(f"validation_ratio must be in [0, 1), got {self.validation_ratio}")
        if self.propagation_method not in ("random_model", "fixed_model", "expectation"):
            raise ValueError(
                f"propagation_method {self.propagation_method!r} is not one of mbrl-lib's: "
                "random_model, fixed_model, expectation"
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-steps", type=int, default=10_000, help="budget, warm-up included")
    parser.add_argument("--threshold", type=float, default=-250.0)
    parser.add_argument("--settings", default="{}", help="JSON object or path to one")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the report here")
    args = parser.parse_args()
    if args.env_steps < 1:
        parser.error(f"--env-steps must be at least 1, got {args.env_steps}")
    return args


def load_settings(text: str) -> PETSSettings:
    given = json.loads(Path(text).read_text() if os.path.isfile(text) else text)
    known = {field.name for field in dataclasses.fields(PETSSettings)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; known: {sorted(known)}")
    return PETSSettings(**given)


def pendulum_reward(action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Gymnasium Pendulum-v1's reward, -(theta^2 + 0.1 theta_dot^2 + 0.001 u^2), as [B, 1]."""
    cos_theta, sin_theta, theta_dot = next_obs[:, 0], next_obs[:, 1], next_obs[:, 2]
    theta = torch.atan2(sin_theta, cos_theta)  # in [-pi, pi], like Gymnasium's angle_normalize
    torque = action[:, 0].clamp(-MAX_TORQUE, MAX_TORQUE)
    cost = theta**2 + 0.1 * theta_dot**2 + 0.001 * torque**2
    return -cost.view(-1, 1)


def mbrl_config(settings: PETSSettings, env_steps: int) -> omegaconf.DictConfig:
    """The config tree mbrl-lib's factories read (same keys as its Hydra configs)."""
    return omegaconf.OmegaConf.create(
        {
            "dynamics_model": {
                "_target_": "mbrl.models.GaussianMLP",
                "_recursive_": False,
                "device": "cpu",
                "num_layers": settings.num_layers,
                "ensemble_size": settings.ensemble_size,
                "hid_size": settings.hid_size,
                "deterministic": False,
                "propagation_method": settings.propagation_method,
                "learn_logvar_bounds": False,
                "activation_fn_cfg": {"_target_": settings.activation},
            },
            "algorithm": {
                "learned_rewards": False,
                "target_is_delta": True,
                "normalize": True,
                "normalize_double_precision": True,
                # room for every transition: the last episode may run past the budget
                "dataset_size": env_steps + settings.trial_length,
            },
            "overrides": {
                "num_elites": settings.ensemble_size,
                "model_batch_size": settings.model_batch_size,
                "validation_ratio": settings.validation_ratio,
                "num_epochs_train_model": settings.num_epochs_train_model,
                "patience": settings.patience,
            },
        }
    )


def agent_config(settings: PETSSettings) -> omegaconf.DictConfig:
    """TrajectoryOptimizerAgent with CEMOptimizer; the action bounds are filled in by mbrl-lib."""
    return omegaconf.OmegaConf.create(
        {
            "_target_": "mbrl.planning.TrajectoryOptimizerAgent",
            "_recursive_": False,
            "action_lb": "???",
            "action_ub": "???",
            "planning_horizon": settings.planning_horizon,
            "replan_freq": 1,
            "verbose": False,
            "optimizer_cfg": {
                "_target_": "mbrl.planning.CEMOptimizer",
                "num_iterations": settings.cem_num_iters,
                "elite_ratio": settings.cem_elite_ratio,
                "population_size": settings.cem_population_size,
                "alpha": settings.cem_alpha,
                "lower_bound": "???",
                "upper_bound": "???",
                "return_mean_elites": True,
                "device": "cpu",
                "clipped_normal": settings.cem_clipped_normal,
            },
        }
    )


def run_pets(args: argparse.Namespace, settings: PETSSettings) -> dict:
    """Warm-up, then plan-and-retrain episodes until the env-step budget is spent."""
    start, start_cpu = time.perf_counter(), time.process_time()
    env = gym.make(ENV_ID)
    env.action_space.seed(args.seed)
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    rng = np.random.default_rng(seed=args.seed)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(args.seed)

    cfg = mbrl_config(settings, args.env_steps)
    dynamics_model = mbrl.util.common.create_one_dim_tr_model(cfg, obs_shape, act_shape)
    replay_buffer = mbrl.util.common.create_replay_buffer(
        cfg,
        obs_shape,
        act_shape,
        rng=rng,
        obs_type=np.double,  # as mbrl-lib's PETS with normalize_double_precision
        action_type=np.double,
        reward_type=np.double,
    )
    episodes = []
    for _ in range(settings.warmup_episodes):
        t0 = time.perf_counter()
        (warmup_return,) = mbrl.util.common.rollout_agent_trajectories(
            env,
            settings.trial_length,
            mbrl.planning.RandomAgent(env),
            {},
            replay_buffer=replay_buffer,
            seed=args.seed if not episodes else None,
        )
        episodes.append(
            episode_record(
                "random", warmup_return, replay_buffer.num_stored, 0.0, time.perf_counter() - t0
            )
        )
        report_episode(episodes[-1])

    model_env = mbrl.models.ModelEnv(
        env, dynamics_model, termination_fns.no_termination, pendulum_reward, generator=generator
    )
    model_trainer = mbrl.models.ModelTrainer(
        dynamics_model, optim_lr=settings.model_lr, weight_decay=settings.model_wd
    )
    agent = mbrl.planning.create_trajectory_optim_agent_for_model(
        model_env, agent_config(settings), num_particles=settings.num_particles
    )

    env_steps = replay_buffer.num_stored
    while env_steps < args.env_steps:
        t0 = time.perf_counter()
        mbrl.util.common.train_model_and_save_model_and_data(
            dynamics_model, model_trainer, cfg.overrides, replay_buffer
        )
        t1 = time.perf_counter()
        episode_return, steps = play_episode(env, agent, replay_buffer)
        env_steps += steps
        episodes.append(
            episode_record("pets", episode_return, env_steps, t1 - t0, time.perf_counter() - t1)
        )
        report_episode(episodes[-1])
    env.close()
    return {
        "episodes": episodes,
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - start_cpu,
    }


def play_episode(env, agent, replay_buffer) -> tuple[float, int]:
    """One episode with the planner, every transition added to the replay buffer."""
    obs, _ = env.reset()
    agent.reset()
    total, steps, terminated, truncated = 0.0, 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, _ = mbrl.util.common.step_env_and_add_to_buffer(
            env, obs, agent, {}, replay_buffer
        )
        total += float(reward)
        steps += 1
    return total, steps


def episode_record(kind, episode_return, env_steps, train_seconds, act_seconds) -> dict:
    return {
        "kind": kind,
        "return": float(episode_return),
        "env_steps": int(env_steps),
        "train_seconds": train_seconds,
        "act_seconds": act_seconds,
    }


def report_episode(episode: dict) -> None:
    print(
        f"{episode['kind']:6s} env steps {episode['env_steps']:6d}  return "
        f"{episode['return']:8.1f}  train {episode['train_seconds']:6.1f} s  "
        f"act {episode['act_seconds']:7.1f} s",
        flush=True,
    )


def steps_to_threshold(episodes: list[dict], threshold: float) -> int | None:
    """Env steps at the end of the first planned episode whose return reaches the threshold."""
    for episode in episodes:
        if episode["kind"] == "pets" and episode["return"] >= threshold:
            return episode["env_steps"]
    return None


def main() -> None:
    args = parse_args()
    settings = load_settings(args.settings)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # ensemble weights and CEM's samples
    result = run_pets(args, settings)
    planned = [e for e in result["episodes"] if e["kind"] == "pets"]
    report = {
        "peer": "mbrl-lib",
        "algorithm": "PETS",
        "env": ENV_ID,
        "versions": {
            "mbrl": mbrl.__version__,
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
            "python": platform.python_version(),
        },
        "seed": args.seed,
        "env_steps_budget": args.env_steps,
        "threshold": args.threshold,
        "steps_to_threshold": steps_to_threshold(result["episodes"], args.threshold),
        "wall_seconds": result["wall_seconds"],
        "cpu_seconds": result["cpu_seconds"],
        "seconds_per_planned_episode": (
            sum(e["train_seconds"] + e["act_seconds"] for e in planned) / len(planned)
            if planned
            else None
        ),
        "settings": dataclasses.asdict(settings),
        "episodes": result["episodes"],
    }
    print(
        f"steps to {args.threshold:g}: {report['steps_to_threshold']}  "
        f"wall {report['wall_seconds']:.1f} s (cpu {report['cpu_seconds']:.1f} s)  "
        f"versions {report['versions']}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"-> {args.json}")


if __name__ == "__main__":
    main()
