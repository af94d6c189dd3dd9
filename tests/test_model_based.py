"""The model-based algorithms as users run them: `mpc` (and, as they land, `sysid`, `pets`)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

import rlscale
from rlscale.algorithms.model_based import MPCConfig
from rlscale.algorithms.model_based.planning_module import HAS_PLAN, PLAN, PlanningModule
from rlscale.algorithms.model_based.systems import action_interface
from tests.conftest import run_cli


def _pendulum_module(**overrides) -> PlanningModule:
    config = MPCConfig().environment("Pendulum-v1").training(**overrides)
    return config.get_rl_module_spec(env=gym.make("Pendulum-v1")).build()


def _act(module: PlanningModule, observations: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    batch = {
        Columns.OBS: torch.as_tensor(observations, dtype=torch.float32)[:, None],
        Columns.STATE_IN: state,
    }
    out = module.forward_inference(batch)
    return out[Columns.ACTIONS][:, 0].numpy(), out[Columns.STATE_OUT]


def _initial_state(module: PlanningModule, batch: int) -> dict:
    return {
        key: value.expand(batch, *value.shape).clone()
        for key, value in module.get_initial_state().items()
    }


def test_planning_module_keeps_one_plan_per_episode_in_its_recurrent_state():
    module = _pendulum_module()
    observations = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    state = _initial_state(module, 2)
    actions, state = _act(module, observations, state)
    assert actions.shape == (2, 1)
    assert bool((state[HAS_PLAN] == 1).all())
    assert state[PLAN].shape == (2, 30, 1)
    # The plan's first action is what was applied, within the torque bounds.
    np.testing.assert_allclose(state[PLAN][:, 0].numpy(), actions, atol=1e-6)
    assert float(np.abs(actions).max()) <= 2.0
    # The upright pendulum at rest needs (almost) no torque; the hanging one must swing.
    assert abs(float(actions[1, 0])) < 0.05
    # A warm-started step plans from the shifted plan: one iLQR round per step stays close.
    again, _ = _act(module, observations, state)
    assert again.shape == (2, 1)


def test_mpc_refuses_an_env_without_a_model_naming_the_ones_it_has():
    config = MPCConfig().environment("Acrobot-v1")
    with pytest.raises(ValueError, match="analytic model only of .*Pendulum-v1"):
        config.validate()


def test_mpc_refuses_unknown_planner_settings():
    with pytest.raises(ValueError, match="no key 'iters'.*max_iterations"):
        _pendulum_module(planner_settings={"iters": 3})


def test_cartpole_actions_are_its_declared_forces_and_taxi_has_none():
    cartpole = action_interface("CartPole-v1", gym.spaces.Discrete(2))
    planned = torch.tensor([[0.3], [-0.9], [1.0]], dtype=torch.float64)
    assert cartpole.env_action(planned).tolist() == [1, 0, 1]
    pendulum = action_interface("Pendulum-v1", gym.make("Pendulum-v1").action_space)
    torch.testing.assert_close(pendulum.env_action(planned[:, :1]), planned.float())
    assert pendulum.low.tolist() == [-2.0] and pendulum.high.tolist() == [2.0]
    with pytest.raises(ValueError, match="Taxi-v3's Discrete\\(6\\) actions declare no continuous"):
        action_interface("Taxi-v3", gym.spaces.Discrete(6))


@pytest.mark.slow
def test_mpc_swings_pendulum_up_through_train_and_evaluate(ray_local, tmp_path):
    """`rlscale train mpc --env Pendulum-v1`: three 200-step episodes, each swung up and held;
    the final checkpoint evaluates (a fresh controller per episode) at a mean >= -200."""
    spec = rlscale.ExperimentSpec(
        algorithm="mpc",
        env="Pendulum-v1",
        seed=0,
        output=tmp_path,
        name="mpc-pendulum",
        stop={"iterations": 3},
        checkpoint={"every": 0},
    )
    result = rlscale.train(spec)
    assert result.final.return_mean >= -200, result.final
    evaluation = rlscale.evaluate(result.checkpoint, episodes=5, seed=0)
    assert evaluation.mean_return >= -200, evaluation.returns


@pytest.mark.slow
def test_mpc_cli_refuses_an_env_it_has_no_model_of(tmp_path):
    completed = run_cli("train", "mpc", "--env", "Acrobot-v1", "--output", str(tmp_path))
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr + completed.stdout
    assert "needs a model of the env" in completed.stderr + completed.stdout


def _restored_module(checkpoint):
    from ray.rllib.core.rl_module.rl_module import RLModule

    return RLModule.from_checkpoint(
        checkpoint / "learner_group" / "learner" / "rl_module" / "default_policy"
    )


@pytest.mark.slow
def test_sysid_identifies_cartpole_and_its_controller_balances_for_500_steps(ray_local, tmp_path):
    """`rlscale train sysid --env CartPole-v1`: 2,000 random transitions recover every
    identifiable parameter within 2%, and iLQR-MPC on the identified model (forces -1/+1 as
    CartPole-v1's actions 0/1) balances for the full 500 steps."""
    spec = rlscale.ExperimentSpec(
        algorithm="sysid",
        env="CartPole-v1",
        seed=0,
        output=tmp_path,
        name="sysid-cartpole",
        stop={"iterations": 1},
        checkpoint={"every": 0},
    )
    result = rlscale.train(spec)
    identified = _restored_module(result.checkpoint).dynamics.identifiable_parameters()
    truth = {"gravity": 9.8, "length": 0.5, "mass_ratio": 0.1 / 1.1, "force_per_mass": 10 / 1.1}
    for name, value in truth.items():
        assert identified[name] == pytest.approx(value, rel=0.02), (name, identified)
    evaluation = rlscale.evaluate(result.checkpoint, episodes=2, seed=0)
    assert evaluation.returns == [500.0, 500.0]
    assert evaluation.policy_text is not None and "gravity" in evaluation.policy_text

    # mpc plans with the identified model when given the checkpoint (its weights are loaded).
    controlled = rlscale.train(
        spec.model_copy(
            update={
                "algorithm": "mpc",
                "name": "mpc-identified",
                "hyperparameters": {"model_checkpoint": str(result.checkpoint), "horizon": 10},
            }
        )
    )
    loaded = _restored_module(controlled.checkpoint).dynamics.identifiable_parameters()
    assert loaded == pytest.approx(identified, rel=1e-12)
    assert controlled.final.env_steps == 200


def test_sysid_refuses_an_env_whose_model_has_no_parameters():
    from rlscale.algorithms import get_algorithm
    from rlscale.errors import IncompatibleSpaceError
    from rlscale.platform.experiment import prepare

    assert get_algorithm("sysid").takes(rlscale.algorithms.Input.ENVIRONMENT)
    with pytest.raises(IncompatibleSpaceError, match="only the models of .*CartPole-v1"):
        prepare(rlscale.ExperimentSpec(algorithm="sysid", env="Pendulum-v1", seed=0))


# `long`: its 1,600 planned steps (800 training, 600 evaluating) took 479 s of `make test`.
@pytest.mark.long
def test_pets_swings_pendulum_up_within_a_thousand_env_steps(ray_local, tmp_path):
    """`rlscale train pets --env Pendulum-v1`: one random episode, then four episodes of CEM-MPC
    on the ensemble refitted after each. The issue asks for a mean return >= -250 within 10,000
    env steps; the greedy controller after 1,000 steps already holds that over 3 episodes."""
    spec = rlscale.ExperimentSpec(
        algorithm="pets",
        env="Pendulum-v1",
        seed=0,
        output=tmp_path,
        name="pets-pendulum",
        stop={"timesteps": 1_000},
        checkpoint={"every": 0},
    )
    result = rlscale.train(spec)
    assert result.final.env_steps == 1_000
    evaluation = rlscale.evaluate(result.checkpoint, episodes=3, seed=0)
    assert evaluation.mean_return >= -250, evaluation.returns


def test_pets_refuses_an_env_without_an_observation_cost():
    from rlscale.errors import IncompatibleSpaceError
    from rlscale.platform.experiment import prepare

    with pytest.raises(IncompatibleSpaceError, match="cost on observations, which rlscale has"):
        prepare(rlscale.ExperimentSpec(algorithm="pets", env="MountainCarContinuous-v0", seed=0))


def test_pets_network_width_and_ensemble_settings_reach_the_module():
    from rlscale.algorithms.model_based import PETSConfig

    config = (
        PETSConfig()
        .environment("Pendulum-v1")
        .training(hidden_sizes=[32], ensemble={"members": 3}, planner_settings={"population": 40})
    )
    module = config.get_rl_module_spec(env=gym.make("Pendulum-v1")).build()
    assert module.dynamics.members == 3
    assert module.planner.settings.population == 40
    assert module.planner.settings.particles == 10  # PETS's default kept under the override
    with pytest.raises(ValueError, match="set the ensemble's hidden_sizes with hidden_sizes"):
        PETSConfig().environment("Pendulum-v1").training(ensemble={"hidden_sizes": [8]}).validate()


@pytest.mark.long
def test_pets_balances_inverted_pendulum_within_5000_env_steps(ray_local, tmp_path):
    """The issue's InvertedPendulum-v5 check: mean greedy return >= 950 (of 1000) after at most
    5,000 env steps of PETS. The surrogate cost penalizes the pole angle (the env pays 1 per
    step alive), and the plans end in the LQR cost-to-go of the ensemble at the upright, centred
    rest point, which keeps the cart off the ends of its rail. The horizon is short (0.4 s: with
    25-30 steps the plans follow compounding model error), and the first CEM samples narrower
    than the action box's half-width of 3."""
    spec = rlscale.ExperimentSpec(
        algorithm="pets",
        env="InvertedPendulum-v5",
        seed=0,
        output=tmp_path,
        name="pets-inverted-pendulum",
        stop={"timesteps": 5_000},
        checkpoint={"every": 0},
        hyperparameters={"horizon": 10, "planner_settings": {"initial_std": 1.0}},
    )
    result = rlscale.train(spec)
    evaluation = rlscale.evaluate(result.checkpoint, episodes=3, seed=0)
    assert evaluation.mean_return >= 950, (evaluation.returns, result.final)


def _fake_checkpoint(folder, algorithm: str, env: str):
    folder.mkdir()
    (folder / "rlscale.json").write_text(json.dumps({"algorithm": algorithm, "env": env}))
    return folder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "not a complete rlscale checkpoint"),
        (lambda tmp: _fake_checkpoint(tmp / "ppo", "ppo", "Pendulum-v1"), "is a ppo checkpoint"),
        (
            lambda tmp: _fake_checkpoint(tmp / "cartpole", "pets", "CartPole-v1"),
            "holds a dynamics model of CartPole-v1, not of Pendulum-v1",
        ),
    ],
)
def test_mpc_refuses_a_model_checkpoint_it_cannot_plan_with(tmp_path, make, message):
    from rlscale.errors import SpecError
    from rlscale.platform.experiment import prepare

    spec = rlscale.ExperimentSpec(
        algorithm="mpc",
        env="Pendulum-v1",
        seed=0,
        hyperparameters={"model_checkpoint": str(make(tmp_path))},
    )
    with pytest.raises(SpecError, match=message):
        prepare(spec)


def test_mpc_without_a_model_checkpoint_on_an_env_without_equations_says_what_to_pass():
    from rlscale.errors import SpecError
    from rlscale.platform.experiment import prepare

    with pytest.raises(SpecError, match="set model_checkpoint to a pets checkpoint"):
        prepare(rlscale.ExperimentSpec(algorithm="mpc", env="InvertedPendulum-v5", seed=0))
