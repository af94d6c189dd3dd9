"""Tabular Q-learning and SARSA: the TD math of one Learner step, ε-greedy acting, space checks,
transition building, the arrows picture, and (slow) learning checks on toy-text grid worlds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import DEFAULT_MODULE_ID
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

import rlscale
from rlscale.algorithms.tabular.grid_policy import FROZEN_LAKE_ARROWS, policy_arrows
from rlscale.algorithms.tabular.q_learning import QLearningConfig
from rlscale.algorithms.tabular.sarsa import SarsaConfig
from rlscale.algorithms.tabular.td import TabularConfig
from rlscale.algorithms.tabular.transitions import HAS_NEXT_ACTION, NEXT_ACTIONS, TransitionBuilder
from rlscale.errors import IncompatibleSpaceError
from rlscale.modules.rl_modules.tabular_q import (
    EpsilonSchedule,
    TabularQModule,
    epsilon_greedy_actions,
)
from rlscale.platform.experiment import prepare

N_STATES, N_ACTIONS = 5, 3
GAMMA, ALPHA, EPSILON = 0.9, 0.5, 0.3


def make_learner(config: TabularConfig, table: np.ndarray):
    """A local Learner (no Ray) over a 5-state, 3-action table set to ``table``."""
    config.environment(
        observation_space=gym.spaces.Discrete(N_STATES),
        action_space=gym.spaces.Discrete(N_ACTIONS),
    )
    config.training(gamma=GAMMA, lr=ALPHA)
    config.epsilon_start = config.epsilon_end = EPSILON
    learner = config.build_learner()
    module = learner.module[DEFAULT_MODULE_ID]
    with torch.no_grad():
        module.table.copy_(torch.as_tensor(table, dtype=torch.float32))
    return learner, module


def td_step(config: TabularConfig, table: np.ndarray, **columns) -> np.ndarray:
    """The table after one Learner update on a batch of the given transition columns."""
    learner, module = make_learner(config, table)
    n = len(columns[Columns.OBS])
    batch = {
        Columns.TERMINATEDS: np.zeros(n, dtype=bool),
        NEXT_ACTIONS: np.zeros(n, dtype=np.int64),
        HAS_NEXT_ACTION: np.ones(n, dtype=bool),
        **{key: np.asarray(value) for key, value in columns.items()},
    }
    batch[Columns.REWARDS] = batch[Columns.REWARDS].astype(np.float32)
    learner.update(
        batch=MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(batch)}, env_steps=n),
        timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 1000},
    )
    return module.table.detach().numpy().astype(np.float64)


@pytest.fixture
def table() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N_STATES, N_ACTIONS)).round(2)


def textbook(table, updates) -> np.ndarray:
    """Apply Q(s,a) += α (target - Q(s,a)) for each (s, a, target) with targets precomputed."""
    expected = table.copy()
    for state, action, target in updates:
        expected[state, action] += ALPHA * (target - table[state, action])
    return expected


def pi_epsilon(row: np.ndarray) -> np.ndarray:
    greedy = (row == row.max()).astype(float)
    return EPSILON / len(row) + (1 - EPSILON) * greedy / greedy.sum()


# --- one Learner step == the textbook tabular update ---------------------------------------


def test_q_learning_step_is_the_textbook_update(table):
    after = td_step(
        QLearningConfig(),
        table,
        obs=[0, 1, 2],
        actions=[1, 2, 0],
        rewards=[1.0, -1.0, 5.0],
        new_obs=[3, 4, 4],
        terminateds=[False, False, True],
    )
    expected = textbook(
        table,
        [
            (0, 1, 1.0 + GAMMA * table[3].max()),
            (1, 2, -1.0 + GAMMA * table[4].max()),
            (2, 0, 5.0),  # terminated: no bootstrap
        ],
    )
    np.testing.assert_allclose(after, expected, atol=1e-6)


def test_sarsa_step_bootstraps_on_the_next_action_taken(table):
    after = td_step(
        SarsaConfig(),
        table,
        obs=[0, 1, 2],
        actions=[1, 2, 0],
        rewards=[1.0, -1.0, 0.5],
        new_obs=[3, 4, 4],
        next_actions=[2, 0, 0],
        has_next_action=[True, True, False],  # the third was truncated: no next action
    )
    expected = textbook(
        table,
        [
            (0, 1, 1.0 + GAMMA * table[3, 2]),
            (1, 2, -1.0 + GAMMA * table[4, 0]),
            (2, 0, 0.5 + GAMMA * pi_epsilon(table[4]) @ table[4]),
        ],
    )
    np.testing.assert_allclose(after, expected, atol=1e-6)


def test_expected_sarsa_step_bootstraps_on_the_epsilon_greedy_mean(table):
    config = SarsaConfig()
    config.expected = True
    after = td_step(
        config,
        table,
        obs=[0, 1],
        actions=[1, 2],
        rewards=[1.0, -1.0],
        new_obs=[3, 4],
        next_actions=[2, 0],  # ignored by expected SARSA
    )
    expected = textbook(
        table,
        [
            (0, 1, 1.0 + GAMMA * pi_epsilon(table[3]) @ table[3]),
            (1, 2, -1.0 + GAMMA * pi_epsilon(table[4]) @ table[4]),
        ],
    )
    np.testing.assert_allclose(after, expected, atol=1e-6)


def test_repeated_pair_moves_like_sequential_updates(table):
    """Three copies of one transition in a batch move Q(s,a) as three textbook updates would."""
    after = td_step(
        QLearningConfig(),
        table,
        obs=[0, 0, 0],
        actions=[1, 1, 1],
        rewards=[2.0, 2.0, 2.0],
        new_obs=[4, 4, 4],
        terminateds=[True, True, True],
    )
    sequential = table[0, 1]
    for _ in range(3):
        sequential += ALPHA * (2.0 - sequential)
    assert after[0, 1] == pytest.approx(sequential, abs=1e-6)


def test_summed_loss_without_duplicate_weighting(table):
    config = QLearningConfig()
    config.sequential_duplicates = False
    after = td_step(
        config,
        table,
        obs=[0, 0],
        actions=[1, 1],
        rewards=[2.0, 2.0],
        new_obs=[4, 4],
        terminateds=[True, True],
    )
    assert after[0, 1] == pytest.approx(table[0, 1] + 2 * ALPHA * (2.0 - table[0, 1]), abs=1e-6)


# --- acting ----------------------------------------------------------------------------------


def test_epsilon_greedy_frequencies():
    rng = np.random.default_rng(0)
    q_rows = np.tile([[0.0, 2.0, 2.0, -1.0]], (40_000, 1))  # actions 1 and 2 tie for greedy
    actions = epsilon_greedy_actions(q_rows, epsilon=0.2, rng=rng)
    frequencies = np.bincount(actions, minlength=4) / len(actions)
    np.testing.assert_allclose(frequencies, [0.05, 0.45, 0.45, 0.05], atol=0.01)


def test_module_explores_by_schedule_and_acts_greedily_in_inference():
    module = TabularQModule(
        observation_space=gym.spaces.Discrete(3),
        action_space=gym.spaces.Discrete(4),
        model_config={"epsilon_start": 1.0, "epsilon_end": 0.0, "epsilon_decay_steps": 100},
    )
    with torch.no_grad():
        module.table[2, 3] = 1.0
    observations = {Columns.OBS: torch.full((2_000,), 2)}
    greedy = module.forward_inference(observations)[Columns.ACTIONS]
    assert set(greedy.tolist()) == {3}
    early = module.forward_exploration(observations, t=0)[Columns.ACTIONS]
    late = module.forward_exploration(observations, t=100)[Columns.ACTIONS]
    assert 0.2 < (early == 3).float().mean() < 0.3  # ε = 1: uniform over 4 actions
    assert set(late.tolist()) == {3}  # ε = 0 after decay


def test_epsilon_schedule_is_linear_then_flat():
    schedule = EpsilonSchedule(start=1.0, end=0.1, decay_steps=1000)
    assert schedule.value(0) == 1.0
    assert schedule.value(500) == pytest.approx(0.55)
    assert schedule.value(5000) == pytest.approx(0.1)


# --- spaces and registry --------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["q_learning", "sarsa"])
def test_tabular_on_box_observations_names_the_space_and_what_fits(algorithm):
    spec = rlscale.ExperimentSpec(algorithm=algorithm, env="CartPole-v1", seed=0)
    with pytest.raises(IncompatibleSpaceError) as info:
        prepare(spec)
    message = str(info.value)
    assert f"{algorithm} cannot run on CartPole-v1" in message
    assert "Discrete observation space" in message and "Box(" in message
    fitting = message.split("Algorithms that fit this environment:")[1]
    assert "dqn" in fitting and "ppo" in fitting and "q_learning" not in fitting


def test_dqn_on_toy_text_suggests_the_tabular_algorithms():
    spec = rlscale.ExperimentSpec(algorithm="dqn", env="Taxi-v3", seed=0)
    with pytest.raises(IncompatibleSpaceError, match="Discrete") as info:
        prepare(spec)
    fitting = str(info.value).split("Algorithms that fit this environment:")[1]
    assert "q_learning" in fitting and "sarsa" in fitting


def test_sarsa_expected_is_a_hyperparameter():
    prepared = prepare(
        rlscale.ExperimentSpec(
            algorithm="sarsa",
            env="FrozenLake-v1",
            seed=0,
            hyperparameters={"expected": True, "lr": [[0, 0.5], [1000, 0.1]]},
        )
    )
    assert prepared.config.td_target() == "expected"
    assert prepared.config.lr == [[0, 0.5], [1000, 0.1]]


def test_tabular_keys_are_accepted_by_training():
    config = SarsaConfig().training(expected=True, epsilon_end=0.1, initial_q=1.0)
    assert config.td_target() == "expected"
    assert (config.epsilon_end, config.initial_q) == (0.1, 1.0)
    assert config.model_config["initial_q"] == 1.0
    assert QLearningConfig().training(epsilon_decay_steps=5).epsilon_decay_steps == 5


@pytest.mark.parametrize("config_class", [QLearningConfig, SarsaConfig])
def test_bare_config_is_what_a_discrete_env_runs(config_class):
    bare = config_class().to_dict()
    on_env = config_class().environment("FrozenLake-v1").to_dict()
    differing = {k for k, v in on_env.items() if bare.get(k) != v and not k.startswith("_rlscale")}
    assert differing == {"env"}


# --- episodes -> transitions ----------------------------------------------------------------


def episode_chunk(observations, actions, rewards, terminated=False, truncated=False):
    episode = SingleAgentEpisode(observations=[observations[0]])
    for obs, action, reward in zip(observations[1:], actions, rewards, strict=True):
        episode.add_env_step(obs, action, reward)
    episode.is_terminated = terminated
    episode.is_truncated = truncated
    return episode


def test_sarsa_transition_waits_for_the_next_chunk_of_its_episode():
    builder = TransitionBuilder(needs_next_action=True)
    first = episode_chunk([0, 1, 2], actions=[5, 6], rewards=[1.0, 2.0])
    batch = builder([first])
    assert batch[Columns.OBS].tolist() == [0]
    assert batch[NEXT_ACTIONS].tolist() == [6]
    assert builder.num_pending == 1

    second = first.cut()
    second.add_env_step(3, 7, 3.0, terminated=True)
    batch = builder([second])
    assert batch[Columns.OBS].tolist() == [1, 2]
    assert batch[Columns.ACTIONS].tolist() == [6, 7]
    assert batch[Columns.NEXT_OBS].tolist() == [2, 3]
    assert batch[NEXT_ACTIONS][0] == 7 and batch[HAS_NEXT_ACTION].tolist() == [True, False]
    assert batch[Columns.TERMINATEDS].tolist() == [False, True]
    assert builder.num_pending == 0


def test_q_learning_transitions_use_every_step_at_once():
    builder = TransitionBuilder(needs_next_action=False)
    batch = builder([episode_chunk([0, 1, 2], actions=[5, 6], rewards=[1.0, 2.0], truncated=True)])
    assert batch[Columns.OBS].tolist() == [0, 1]
    assert batch[Columns.NEXT_OBS].tolist() == [1, 2]
    assert batch[Columns.TERMINATEDS].tolist() == [False, False]  # truncation bootstraps
    assert builder.num_pending == 0


# --- arrows ----------------------------------------------------------------------------------


def test_frozen_lake_arrows_mark_holes_and_goal():
    env = gym.make("FrozenLake-v1")
    text = policy_arrows([2] * 16, env)
    assert text.splitlines() == ["→ → → →", "→ H → H", "→ → → H", "H → → G"]
    assert policy_arrows([0] * 500, gym.make("Taxi-v3")) is None


def arrows_to_actions(text: str, arrows: tuple[str, ...]) -> list[int]:
    """Read a policy picture back into actions (marked cells -> action 0)."""
    cells = [cell for line in text.splitlines() for cell in line.split()]
    return [arrows.index(cell) if cell in arrows else 0 for cell in cells]


# --- learning checks (slow) ------------------------------------------------------------------

CLIFF = "CliffWalking-v1"
CLIFF_OPTIMAL_RETURN = -13.0
CLIFF_HYPERPARAMETERS = {
    "lr": [[0, 0.5], [20_000, 0.01]],
    "epsilon_start": 0.1,
    "epsilon_end": 0.1,
}
"""Sutton & Barto's example 6.6 (α = 0.5, constant ε = 0.1), with α decaying to 0.01 so the
greedy policy reads converged values rather than the last few noisy updates."""
FROZEN_LAKE_HORIZON = 100
"""FrozenLake-v1 4x4 ends episodes after 100 steps (its registered TimeLimit)."""
TAXI_TARGET = 7.0


def train_and_evaluate(tmp_path, algorithm, env, steps, hyperparameters, episodes, **spec):
    trained = rlscale.train(
        rlscale.ExperimentSpec(
            algorithm=algorithm,
            env=env,
            seed=0,
            output=tmp_path,
            name=f"{algorithm}-{env}",
            stop={"timesteps": steps},
            checkpoint={"every": 0},
            hyperparameters=hyperparameters,
            **spec,
        )
    )
    return rlscale.evaluate(trained.checkpoint, episodes=episodes, seed=123)


@pytest.mark.slow
def test_q_learning_walks_the_cliff_edge(ray_local, tmp_path):
    result = train_and_evaluate(
        tmp_path,
        "q_learning",
        CLIFF,
        steps=20_000,
        hyperparameters=CLIFF_HYPERPARAMETERS,
        episodes=3,
        env_config={"max_episode_steps": 500},
    )
    assert result.returns == [CLIFF_OPTIMAL_RETURN] * 3, result.policy_text
    rows = result.policy_text.splitlines()
    assert rows[2].split() == ["→"] * 11 + ["↓"], result.policy_text  # right along the edge
    assert rows[3].split()[0] == "↑" and rows[3].split()[-1] == "G"


@pytest.mark.slow
def test_sarsa_takes_a_safer_path_than_the_edge(ray_local, tmp_path):
    result = train_and_evaluate(
        tmp_path,
        "sarsa",
        CLIFF,
        steps=20_000,
        hyperparameters=CLIFF_HYPERPARAMETERS,
        episodes=3,
        env_config={"max_episode_steps": 500},
    )
    assert all(-19.0 <= value <= -14.0 for value in result.returns), result.returns
    assert "→ → →" not in result.policy_text.splitlines()[2], result.policy_text


def frozen_lake_success(transitions: dict, policy: list[int] | None, horizon: int) -> float:
    """Exact probability of reaching the goal from state 0 within ``horizon`` steps.

    With ``policy`` None, the best achievable (finite-horizon value iteration); else the
    stationary ``policy``'s (finite-horizon policy evaluation). Reward 1 only at the goal.
    """
    n_states = len(transitions)
    value = np.zeros(n_states)
    for _ in range(horizon):
        q = np.array(
            [
                [
                    sum(p * (r + (0.0 if done else value[s2])) for p, s2, r, done in outcomes)
                    for outcomes in transitions[state].values()
                ]
                for state in range(n_states)
            ]
        )
        value = q.max(axis=1) if policy is None else q[np.arange(n_states), policy]
    return float(value[0])


@pytest.mark.slow
def test_q_learning_frozen_lake_is_near_optimal(ray_local, tmp_path):
    transitions = gym.make("FrozenLake-v1").unwrapped.P
    optimum = frozen_lake_success(transitions, None, FROZEN_LAKE_HORIZON)
    result = train_and_evaluate(
        tmp_path,
        "q_learning",
        "FrozenLake-v1",
        steps=150_000,
        hyperparameters={
            "gamma": 0.99,
            "lr": [[0, 0.1], [150_000, 0.01]],
            "epsilon_start": 1.0,
            "epsilon_end": 0.1,
            "epsilon_decay_steps": 75_000,
            "num_envs_per_env_runner": 32,
            "min_sample_timesteps_per_iteration": 10_000,
        },
        episodes=1000,
    )
    greedy = arrows_to_actions(result.policy_text, FROZEN_LAKE_ARROWS)
    exact = frozen_lake_success(transitions, greedy, FROZEN_LAKE_HORIZON)
    measured = result.mean_return
    assert optimum == pytest.approx(0.744, abs=0.001)
    assert exact >= optimum - 0.05, (exact, optimum, result.policy_text)
    assert measured >= optimum - 0.05, (measured, optimum, result.policy_text)


@pytest.mark.slow
def test_q_learning_solves_taxi(ray_local, tmp_path):
    result = train_and_evaluate(
        tmp_path,
        "q_learning",
        "Taxi-v3",
        steps=120_000,
        hyperparameters={"lr": 0.5, "min_sample_timesteps_per_iteration": 10_000},
        episodes=200,
    )
    assert result.mean_return >= TAXI_TARGET, result.returns
    assert result.policy_text is None
