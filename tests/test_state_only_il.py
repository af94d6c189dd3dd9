"""State-only IL (SOIL-TDM style): the reward and its densities, the discrete SAC module, bad
input, and (slow) learning CartPole-v1 and Pendulum-v1 from an expert's states alone (the
datasets' actions are erased, so a method that read them would fail)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

import rlscale
from rlscale.algorithms import get_algorithm
from rlscale.algorithms.imitation.state_only_il import (
    DiscreteSACModule,
    RewardParts,
    StateOnlyILConfig,
    TransitionDensities,
)
from rlscale.algorithms.imitation.state_only_il.densities import (
    one_thread,
    with_absorbing_terminals,
)
from rlscale.algorithms.value_based.sac import LOGP_ACTOR, LOGP_NEXT, Q_ACTOR, Q_TARGET_NEXT
from rlscale.errors import DatasetError, SpecError
from rlscale.modules.generative.flows import FlowFitSettings
from rlscale.platform.experiment import prepare
from rlscale.policies import scripted_policy
from tests.conftest import write_scripted_dataset
from tests.test_dagger import _scripted_returns

# ------------------------------------------------------------------------------------ reward


def test_the_reward_is_the_expert_log_density_minus_the_policy_induced_one_clipped():
    parts = RewardParts(
        expert=torch.tensor([1.0, -30.0, 20.0]),
        forward=torch.tensor([3.0, 0.0, 0.0]),
        inverse=torch.tensor([-0.5, 0.0, 0.0]),
    )
    # log p_E(s'|s) - [log p(s'|s,a) - log pi'(a|s,s')]  (+ log pi(a|s) is SAC's entropy term)
    torch.testing.assert_close(parts.reward(10.0), torch.tensor([-2.5, -10.0, 10.0]))


def test_a_terminal_transition_is_followed_by_the_reward_floor_forever():
    reward = torch.tensor([1.0, 1.0])
    adjusted = with_absorbing_terminals(reward, torch.tensor([False, True]), 0.9, 10.0)
    torch.testing.assert_close(adjusted, torch.tensor([1.0, 1.0 - 0.9 * 10.0 / 0.1]))


def _rollouts(env_name: str, policy: str, steps: int, seed: int):
    """``(s, a, s')`` of a scripted policy, episodes reset on."""
    env = gym.make(env_name)
    act = scripted_policy(policy)(env.observation_space, env.action_space)
    rng = np.random.default_rng(seed)
    states, actions, next_states = [], [], []
    observation, _ = env.reset(seed=seed)
    while len(states) < steps:
        action = act(observation, rng)
        next_observation, _, terminated, truncated, _ = env.step(action)
        states.append(observation)
        actions.append(action)
        next_states.append(next_observation)
        observation = next_observation
        if terminated or truncated:
            observation, _ = env.reset()
    env.close()
    return (
        torch.as_tensor(np.array(states), dtype=torch.float32),
        torch.as_tensor(np.array(actions)),
        torch.as_tensor(np.array(next_states), dtype=torch.float32),
        env.action_space,
    )


@pytest.mark.parametrize(
    ("env_name", "expert"),
    [("CartPole-v1", "cartpole_centered"), ("Pendulum-v1", "pendulum_swing_up")],
)
def test_the_experts_transitions_earn_more_than_a_random_policys(env_name, expert):
    """p_E fitted on 1,000 expert transitions, the agent's two models on 2,000 random ones:
    the expert's own (held-out) transitions score higher than the random policy's."""
    torch.manual_seed(0)
    states, _, next_states, space = _rollouts(env_name, expert, 1_000, seed=0)
    random = _rollouts(env_name, "random", 2_000, seed=1)
    config = StateOnlyILConfig()
    densities = TransitionDensities(
        states.shape[1], space, config.effective_flow(), noise=config.density_noise
    )
    fit = FlowFitSettings(steps=400)
    held_out = _rollouts(env_name, expert, 300, seed=2)
    with one_thread():
        densities.fit_expert(states, next_states, fit)
        densities.fit_agent_models(random[:3], random[:3], fit)
        expert_reward = densities.reward_parts(*held_out[:3]).reward(config.reward_clip).mean()
        random_reward = densities.reward_parts(*random[:3]).reward(config.reward_clip).mean()
    assert expert_reward > random_reward + 1.0, (expert_reward, random_reward)


# ------------------------------------------------------------------------- discrete SAC module


def _discrete_module() -> DiscreteSACModule:
    module = DiscreteSACModule(
        observation_space=gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        action_space=gym.spaces.Discrete(3),
        model_config={
            "hidden_sizes": [16],
            "activation": "relu",
            "num_critics": 2,
            "initial_alpha": 1.0,
        },
    )
    module.make_target_networks()
    return module


def test_discrete_sac_takes_exact_expectations_over_the_actions():
    torch.manual_seed(0)
    module = _discrete_module()
    obs, next_obs = torch.randn(5, 4), torch.randn(5, 4)
    batch = {
        Columns.OBS: obs,
        Columns.NEXT_OBS: next_obs,
        Columns.ACTIONS: torch.tensor([0, 1, 2, 0, 1]),
    }
    out = module._forward_train(batch)
    log_pi_next = torch.log_softmax(module.policy(next_obs), -1)
    q_next = module._target_critics(next_obs).min(0).values
    soft_value = (log_pi_next.exp() * (q_next - log_pi_next)).sum(-1)
    # SAC's Learner bootstraps from Q_TARGET_NEXT - alpha * LOGP_NEXT (alpha = 1 here).
    torch.testing.assert_close(out[Q_TARGET_NEXT] - out[LOGP_NEXT], soft_value)
    log_pi = torch.log_softmax(module.policy(obs), -1)
    q = module.critics(obs).min(0).values
    expected_actor_loss = (log_pi.exp() * (log_pi - q)).sum(-1)
    torch.testing.assert_close(out[LOGP_ACTOR] - out[Q_ACTOR], expected_actor_loss)


def test_discrete_sac_warm_up_acts_uniformly():
    module = _discrete_module()
    module.act_uniformly = True
    out = module._forward_exploration({Columns.OBS: torch.randn(7, 4)})
    assert torch.equal(out[Columns.ACTION_DIST_INPUTS], torch.zeros(7, 3))


# ------------------------------------------------------------------------------- bad input


def _state_only_dataset(minari_root, name, episodes, env="CartPole-v1", policy="cartpole_centered"):
    return write_scripted_dataset(minari_root, name, episodes, env, policy, erase_actions=True)


def _spec(tmp_path, dataset, env="CartPole-v1", iterations=5, **hyperparameters):
    return rlscale.ExperimentSpec(
        algorithm="state_only_il",
        env=env,
        dataset=dataset,
        stop={"iterations": iterations},
        seed=0,
        output=tmp_path / "runs",
        hyperparameters=hyperparameters,
        checkpoint={"every": 0},
    )


def test_state_only_il_is_registered_for_discrete_and_box_actions():
    entry = get_algorithm("state_only_il")
    assert entry.family == "imitation"
    observations = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    assert entry.incompatibility(observations, gym.spaces.Discrete(2)) is None
    assert entry.incompatibility(observations, gym.spaces.Box(-2.0, 2.0, (1,))) is None
    assert entry.incompatibility(observations, gym.spaces.MultiDiscrete([2, 2])) is not None


def test_state_only_il_needs_demonstrations(tmp_path):
    spec = rlscale.ExperimentSpec(algorithm="state_only_il", env="CartPole-v1", seed=0)
    with pytest.raises(SpecError, match="state_only_il needs a dataset: pass --dataset"):
        prepare(spec)


def test_demonstrated_states_of_another_env_are_refused(minari_root, tmp_path):
    name = _state_only_dataset(
        minari_root, "pendulum/swing-v0", 1, env="Pendulum-v1", policy="pendulum_swing_up"
    )
    with pytest.raises(DatasetError, match="cannot train on CartPole-v1"):
        prepare(_spec(tmp_path, name))


def test_bad_state_only_il_settings_are_refused_before_ray(minari_root, tmp_path):
    name = _state_only_dataset(minari_root, "cartpole/blind-v0", 1)
    with pytest.raises(DatasetError, match=r"num_demos=2 .*\(1 episodes in"):
        prepare(_spec(tmp_path, name, num_demos=2))
    refused = {
        "model_updates": (0, "model_updates must be a positive integer"),
        "reward_clip": (0.0, "reward_clip must be a positive number"),
        "density_noise": (-0.1, "density_noise must be a number >= 0"),
        "flow": ({"kind": "glow"}, "unknown flow kind 'glow'"),
        "entropy_coefficient": (-1.0, "entropy_coefficient must be a positive number"),
    }
    for key, (value, message) in refused.items():
        with pytest.raises(SpecError, match=message):
            prepare(_spec(tmp_path, name, **{key: value}))


def test_defaults_live_in_the_config():
    config = StateOnlyILConfig()
    assert config.entropy_coefficient == 1.0  # the KL weighs log pi by exactly 1
    assert config.model_config["initial_alpha"] == 1.0
    assert config.num_demos is None and config.subsample_every == 1
    assert config.effective_flow().kind == "spline"
    discrete = StateOnlyILConfig().environment("CartPole-v1")
    assert discrete.entropy_coefficient == 0.1 and discrete.model_config["initial_alpha"] == 0.1
    kept = StateOnlyILConfig().training(entropy_coefficient=0.5).environment("CartPole-v1")
    assert kept.entropy_coefficient == 0.5
    assert config.copy().training(flow={"transforms": 2}).effective_flow().kind == "spline"


# ------------------------------------------------------------------------------ learning


def _evaluated(tmp_path, dataset, env, timesteps, episodes, **hyperparameters):
    spec = rlscale.ExperimentSpec(
        algorithm="state_only_il",
        env=env,
        dataset=dataset,
        stop={"timesteps": timesteps},
        seed=0,
        output=tmp_path / "runs",
        hyperparameters=hyperparameters,
        checkpoint={"every": 0},
    )
    result = rlscale.train(spec)
    return result, rlscale.evaluate(result.checkpoint, episodes=episodes, seed=0)


@pytest.mark.slow
@pytest.mark.long  # about 5 minutes on 2 cores: over make test's per-check budget
def test_state_only_il_learns_cartpole_from_one_demonstration_of_states_alone(
    ray_local, minari_root, tmp_path
):
    """One `cartpole_centered` episode (500 states) with its actions erased; greedy
    evaluation over 10 episodes, with the defaults (Discrete actions: entropy weight 0.1)."""
    name = _state_only_dataset(minari_root, "cartpole/blind-v0", 1)
    result, evaluation = _evaluated(tmp_path, name, "CartPole-v1", CARTPOLE_STEPS, 10)
    assert evaluation.mean_return >= 475, (evaluation.returns, result.final)


CARTPOLE_STEPS = 20_000
PENDULUM_STEPS = 8_000


@pytest.mark.slow
@pytest.mark.long  # 307 s on a loaded machine: over make test's per-check budget
def test_state_only_il_swings_pendulum_up_from_states_alone(ray_local, minari_root, tmp_path):
    """Five `pendulum_swing_up` episodes with their actions erased; greedy evaluation over 5
    episodes, normalized between the random policy (0) and the expert (1) from the same
    start states."""
    name = _state_only_dataset(
        minari_root, "pendulum/swing-v0", 5, env="Pendulum-v1", policy="pendulum_swing_up"
    )
    episodes, seed = 5, 0
    expert = float(np.mean(_scripted_returns("Pendulum-v1", "pendulum_swing_up", episodes, seed)))
    random = float(np.mean(_scripted_returns("Pendulum-v1", "random", 20, seed)))
    result, evaluation = _evaluated(tmp_path, name, "Pendulum-v1", PENDULUM_STEPS, episodes)
    normalized = (evaluation.mean_return - random) / (expert - random)
    assert normalized >= 0.8, (normalized, evaluation.returns, expert, random, result.final)
