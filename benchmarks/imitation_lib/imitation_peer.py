"""The `imitation` library's BC, DAgger and GAIL on rlscale's demonstrations and expert budgets.

Runs in ``.venv-imitation`` (``make bench-imitation-venv``: imitation 1.0.1, gymnasium 0.29,
stable-baselines3 2.2), called by ``benchmarks/imitation_peer.py`` once per (algorithm, env,
seed) with a JSON job on the command line; prints one JSON line with the greedy return and the
wall time. The expert is rlscale's scripted controller itself (``rlscale.policies.scripted``
needs only gymnasium and numpy, so it imports here from the repository), wrapped as a
stable-baselines3 policy for DAgger. The demonstrations are the episodes rlscale wrote, read
from an ``.npz`` file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from imitation.algorithms import bc
from imitation.algorithms.adversarial.gail import GAIL
from imitation.algorithms.dagger import LinearBetaSchedule, SimpleDAggerTrainer
from imitation.data import rollout
from imitation.data.types import Trajectory
from imitation.data.wrappers import RolloutInfoWrapper
from imitation.rewards.reward_nets import BasicRewardNet
from imitation.util.networks import RunningNorm
from stable_baselines3 import PPO
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import DummyVecEnv

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rlscale.policies.scripted import scripted_policy  # noqa: E402


class ScriptedExpert(BasePolicy):
    """A scripted rlscale controller as the stable-baselines3 policy imitation's DAgger asks."""

    def __init__(self, name: str, observation_space: gym.Space, action_space: gym.Space):
        super().__init__(observation_space, action_space)
        self._act = scripted_policy(name)(observation_space, action_space)
        self._rng = np.random.default_rng(0)

    def _predict(self, observation: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        rows = observation.cpu().numpy()
        return torch.as_tensor(np.stack([np.asarray(self._act(row, self._rng)) for row in rows]))


def demonstrations(path: str) -> list[Trajectory]:
    data = np.load(path)
    return [
        Trajectory(
            obs=data[f"observations_{i}"],
            acts=data[f"actions_{i}"],
            infos=None,
            terminal=bool(data[f"terminated_{i}"]),
        )
        for i in range(int(data["episodes"]))
    ]


def vec_env(env_id: str, seed: int) -> DummyVecEnv:
    def make() -> gym.Env:
        return RolloutInfoWrapper(gym.make(env_id))

    venv = DummyVecEnv([make])
    venv.seed(seed)
    return venv


def greedy_return(policy, env_id: str, episodes: int, seed: int) -> float:
    """Mean return of the deterministic policy, the env reset with ``seed`` once and then on
    (the protocol of ``rlscale.evaluate``)."""
    env = gym.make(env_id)
    returns = []
    observation, _ = env.reset(seed=seed)
    for episode in range(episodes):
        if episode:
            observation, _ = env.reset()
        total, done = 0.0, False
        while not done:
            action, _ = policy.predict(observation, deterministic=True)
            observation, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def bc_trainer(job: dict, venv, rng, demos=None) -> bc.BC:
    return bc.BC(
        observation_space=venv.observation_space,
        action_space=venv.action_space,
        demonstrations=demos,
        rng=rng,
        batch_size=job["batch_size"],
    )


def run_bc(job: dict, venv, rng):
    trainer = bc_trainer(job, venv, rng, demonstrations(job["demos"]))
    trainer.train(n_batches=job["updates"], progress_bar=False, log_interval=10**9)
    return trainer.policy, {}


def run_dagger(job: dict, venv, rng, scratch: str):
    """``rounds`` DAgger rounds of at least ``labels_per_round`` expert labels each.

    The body of ``SimpleDAggerTrainer.train``, driven here by rounds: its own loop stops at a
    total of labels, and as a round collects whole episodes, one InvertedPendulum episode
    (1,000 steps) would end it after 2 of the 4 rounds, with half the updates."""
    expert = ScriptedExpert(job["expert"], venv.observation_space, venv.action_space)
    trainer = SimpleDAggerTrainer(
        venv=venv,
        scratch_dir=scratch,
        expert_policy=expert,
        bc_trainer=bc_trainer(job, venv, rng),
        rng=rng,
        beta_schedule=LinearBetaSchedule(job["beta_decay_rounds"]),
    )
    labels = 0
    for _ in range(job["rounds"]):
        collector = trainer.create_trajectory_collector()
        trajectories = rollout.generate_trajectories(
            policy=expert,
            venv=collector,
            sample_until=rollout.make_sample_until(
                min_timesteps=job["labels_per_round"], min_episodes=1
            ),
            deterministic_policy=True,
            rng=collector.rng,
        )
        labels += sum(len(trajectory) for trajectory in trajectories)
        trainer.extend_and_update({"n_batches": job["updates_per_round"], "progress_bar": False})
    return trainer.policy, {"rounds": trainer.round_num, "labels": labels}


def run_gail(job: dict, venv, rng):
    learner = PPO("MlpPolicy", venv, seed=job["seed"], verbose=0, n_steps=job["ppo_steps"])
    reward_net = BasicRewardNet(
        venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm
    )
    trainer = GAIL(
        demonstrations=rollout.flatten_trajectories(demonstrations(job["demos"])),
        demo_batch_size=job["batch_size"],
        gen_replay_buffer_capacity=job["ppo_steps"] * 2,
        n_disc_updates_per_round=job["discriminator_updates"],
        venv=venv,
        gen_algo=learner,
        reward_net=reward_net,
        allow_variable_horizon=True,
    )
    trainer.train(job["env_steps"])
    return learner.policy, {}


def main() -> None:
    job = json.loads(sys.argv[1])
    torch.manual_seed(job["seed"])
    rng = np.random.default_rng(job["seed"])
    venv = vec_env(job["env"], job["seed"])
    started = time.perf_counter()
    if job["algorithm"] == "bc":
        policy, counts = run_bc(job, venv, rng)
    elif job["algorithm"] == "dagger":
        policy, counts = run_dagger(job, venv, rng, job["scratch"])
    else:
        policy, counts = run_gail(job, venv, rng)
    wall_s = time.perf_counter() - started
    score = greedy_return(policy, job["env"], job["eval_episodes"], job["eval_seed"])
    print(json.dumps({"return": score, "wall_s": wall_s} | counts))


if __name__ == "__main__":
    main()
