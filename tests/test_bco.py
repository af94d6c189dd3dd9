"""BCO: the inverse dynamics model, bad input, and learning CartPole-v1 from an expert's states
alone (the dataset's actions are overwritten, so a method that read them would fail)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlscale
from rlscale.errors import DatasetError, SpecError
from rlscale.modules.dynamics.inverse import InverseDynamicsModel
from rlscale.platform.experiment import prepare
from tests.conftest import write_scripted_dataset


def _state_only_dataset(minari_root, name, episodes, env="CartPole-v1", policy="cartpole_centered"):
    """Expert episodes whose recorded actions are all erased (recorded as 0)."""
    return write_scripted_dataset(minari_root, name, episodes, env, policy, erase_actions=True)


def _random_transitions(env_name: str, steps: int):
    env = gym.make(env_name)
    env.action_space.seed(0)
    observation, _ = env.reset(seed=0)
    states, actions, next_states = [], [], []
    for _ in range(steps):
        action = env.action_space.sample()
        next_observation, _, terminated, truncated, _ = env.step(action)
        states.append(observation)
        actions.append(action)
        next_states.append(next_observation)
        observation = next_observation
        if terminated or truncated:
            observation, _ = env.reset()
    env.close()
    return env, np.array(states, np.float32), np.array(actions), np.array(next_states, np.float32)


def _fitted(env_name: str):
    env, states, actions, next_states = _random_transitions(env_name, 3_000)
    torch.manual_seed(0)
    model = InverseDynamicsModel(states.shape[1], env.action_space)
    fit = model.fit(
        states,
        actions,
        next_states,
        updates=1_500,
        batch_size=256,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        rng=np.random.default_rng(0),
    )
    return model, fit, actions


def test_the_inverse_model_infers_cartpoles_push_from_the_state_change():
    _, fit, _ = _fitted("CartPole-v1")
    assert fit.holdout >= 0.97  # the push sets the sign of the cart's acceleration


def test_the_inverse_model_infers_pendulums_torque_far_better_than_its_mean():
    model, fit, actions = _fitted("Pendulum-v1")
    assert fit.holdout < 0.1 * actions.var()  # uniform torques on [-2, 2]: variance 1.33
    predicted = model.predict(torch.zeros(4, 3), torch.ones(4, 3) * 10)
    assert torch.all(predicted.abs() <= 2.0)  # inside the bounds, even far from the data


def test_an_inverse_model_needs_a_discrete_or_flat_box_action():
    with pytest.raises(ValueError, match="Discrete or flat Box"):
        InverseDynamicsModel(3, gym.spaces.MultiDiscrete([2, 2]))


def _spec(tmp_path, dataset, env="CartPole-v1", iterations=5, **hyperparameters):
    return rlscale.ExperimentSpec(
        algorithm="bco",
        env=env,
        dataset=dataset,
        stop={"iterations": iterations},
        seed=0,
        output=tmp_path / "runs",
        hyperparameters=hyperparameters,
        checkpoint={"every": 0},
    )


def test_bco_needs_demonstrations(tmp_path):
    spec = rlscale.ExperimentSpec(algorithm="bco", env="CartPole-v1", seed=0)
    with pytest.raises(SpecError, match="bco needs a dataset: pass --dataset"):
        prepare(spec)


def test_demonstrated_states_of_another_env_are_refused(minari_root, tmp_path):
    name = _state_only_dataset(
        minari_root, "pendulum/swing-v0", 1, env="Pendulum-v1", policy="pendulum_swing_up"
    )
    with pytest.raises(DatasetError, match="cannot train on CartPole-v1"):
        prepare(_spec(tmp_path, name))


def test_bad_bco_settings_are_refused_before_ray(minari_root, tmp_path):
    name = _state_only_dataset(minari_root, "cartpole/blind-v0", 1)
    with pytest.raises(DatasetError, match=r"num_demos=2 .*\(1 episodes in"):
        prepare(_spec(tmp_path, name, num_demos=2))
    with pytest.raises(SpecError, match="pre_demonstration_steps must be a positive integer"):
        prepare(_spec(tmp_path, name, pre_demonstration_steps=0))
    with pytest.raises(SpecError, match="inverse_model_hidden_sizes must be a list"):
        prepare(_spec(tmp_path, name, inverse_model_hidden_sizes=64))


@pytest.mark.slow
def test_bco_learns_cartpole_from_one_demonstration_of_states_alone(
    ray_local, minari_root, tmp_path
):
    """One `cartpole_centered` episode with its actions erased; 2,000 random steps, then 1,000
    policy steps per iteration; greedy evaluation over 10 episodes after 5 iterations."""
    name = _state_only_dataset(minari_root, "cartpole/blind-v0", 1)
    result = rlscale.train(_spec(tmp_path, name))
    evaluated = [metrics for metrics in result.history if metrics.has_return]
    assert evaluated, "no evaluation ran"
    assert evaluated[-1].return_mean >= 475, [m.return_mean for m in evaluated]
