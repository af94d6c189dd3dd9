"""diffusion_bc: the config's checks before Ray, the module (sampled actions inside the bounds,
observation standardization kept with the weights), the Learner's loss, and learning checks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import write_scripted_dataset
from ray.rllib.core.columns import Columns

import rlscale
from rlscale.algorithms.generative import DiffusionBCConfig, DiffusionBCModule
from rlscale.datasets.collect import run_episode
from rlscale.envs import make_env, point_mass
from rlscale.errors import IncompatibleSpaceError, SpecError
from rlscale.platform.experiment import prepare
from rlscale.platform.spec import ExperimentSpec
from rlscale.policies import named_policy, scripted_policy
from rlscale.policies.checkpoint import CheckpointPolicy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PENDULUM_OBSERVATIONS = gym.spaces.Box(-8.0, 8.0, (3,), np.float32)
PENDULUM_ACTIONS = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


@pytest.fixture
def pendulum_dataset(minari_root) -> str:
    return write_scripted_dataset(
        minari_root, "pendulum/swingup-v0", 2, "Pendulum-v1", "pendulum_swing_up"
    )


def _spec(dataset: str, env: str = "Pendulum-v1", **hyperparameters) -> ExperimentSpec:
    return ExperimentSpec(
        algorithm="diffusion_bc", env=env, seed=0, dataset=dataset, hyperparameters=hyperparameters
    )


def test_discrete_actions_are_refused_naming_what_fits():
    with pytest.raises(IncompatibleSpaceError, match=r"needs a Box .* Discrete\(2\).*bc"):
        prepare(_spec("some/data-v0", env="CartPole-v1"), attach_dataset=False)


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"ddim_steps": 200}, r"ddim_steps must be an integer from 1 to diffusion_steps \(100\)"),
        ({"ddim_steps": 0}, r"ddim_steps must be an integer from 1 to diffusion_steps"),
        ({"diffusion_steps": 0}, "diffusion_steps must be a positive integer"),
        ({"beta_schedule": "cosine"}, "beta_schedule must be one of linear, squaredcos_cap_v2"),
        ({"ddim_eta": 2.0}, r"ddim_eta must lie in \[0, 1\], got 2.0"),
        ({"sampler": "euler"}, "sampler must be one of ddim, ddpm, got 'euler'"),
        ({"ema_decay": 1.0}, r"ema_decay must lie in \[0, 1\), got 1.0"),
    ],
)
def test_bad_diffusion_settings_are_refused_before_ray(pendulum_dataset, hyperparameters, message):
    with pytest.raises(SpecError, match=message):
        prepare(_spec(pendulum_dataset, **hyperparameters))


def test_the_dataset_gives_the_module_its_observation_statistics(pendulum_dataset):
    config = prepare(_spec(pendulum_dataset)).config
    statistics = config.model_config["dataset_statistics"]
    assert len(statistics["obs_mean"]) == 3 and min(statistics["obs_std"]) > 0.01


def _module(
    statistics: dict | None = None, inference_only: bool = False, **training
) -> DiffusionBCModule:
    config = DiffusionBCConfig().training(hidden_sizes=[32, 32], **training)
    config.dataset_statistics = statistics  # as attach_standardized_dataset sets it
    return DiffusionBCModule(
        observation_space=PENDULUM_OBSERVATIONS,
        action_space=PENDULUM_ACTIONS,
        model_config=config.model_config,
        inference_only=inference_only,
    )


def test_the_module_samples_actions_inside_the_learners_bounds():
    torch.manual_seed(0)
    module = _module()
    observations = torch.as_tensor(
        np.stack([PENDULUM_OBSERVATIONS.sample() for _ in range(64)]), dtype=torch.float32
    )
    for forward in (module.forward_inference, module.forward_exploration):
        actions = forward({Columns.OBS: observations})[Columns.ACTIONS]
        assert actions.shape == (64, 1)
        # Normalized actions (RLlib's normalize_actions): [-1, 1], not the env's [-2, 2].
        assert actions.abs().max() <= 1.0 and actions.std() > 0.05


def test_observation_statistics_are_saved_with_the_weights():
    statistics = {"obs_mean": [1.0, 2.0, 3.0], "obs_std": [2.0, 2.0, 4.0]}
    trained = _module(statistics)
    # Evaluation builds the module without the dataset and restores the buffers.
    restored = _module()
    restored.set_state(trained.get_state())
    observations = torch.tensor([[3.0, 2.0, 7.0]])
    assert torch.equal(restored.standardized(observations), torch.tensor([[1.0, 0.0, 1.0]]))
    assert _module(statistics, standardize=False).obs_mean is None


def _weights(diffusion: torch.nn.Module) -> torch.Tensor:
    return torch.cat([parameter.flatten() for parameter in diffusion.parameters()])


def _trained(**training) -> DiffusionBCModule:
    """A module whose trained weights moved 1 away from the acting ones, as updates move them."""
    module = _module(**training)
    with torch.no_grad():
        for parameter in module.diffusion.parameters():
            parameter.add_(1.0)
    return module


def test_the_acting_weights_are_a_moving_average_of_the_trained_ones():
    """The first updates average over few steps (decay 1/10, then 2/11, ...) until the decay
    reaches ``ema_decay``; with 0 the policy acts with the trained weights themselves."""
    module = _trained(ema_decay=0.15)
    start = _weights(module.acting_diffusion)
    assert torch.equal(start + 1.0, _weights(module.diffusion))
    module.update_acting_weights()  # decay 1/10: 0.9 of the way
    assert torch.allclose(_weights(module.acting_diffusion), start + 0.9)
    module.update_acting_weights()  # 2/11 is above 0.15: the gap of 0.1 shrinks to 0.015
    assert torch.allclose(_weights(module.acting_diffusion), start + 1.0 - 0.015)
    assert int(module.ema_updates) == 2
    instant = _trained(ema_decay=0.0)
    instant.update_acting_weights()
    assert torch.equal(_weights(instant.acting_diffusion), _weights(instant.diffusion))


def test_the_envrunners_copy_holds_the_acting_weights_alone():
    trained = _trained()
    trained.update_acting_weights()
    acting = _module(inference_only=True)
    assert not hasattr(acting, "diffusion")
    state = trained.get_state(inference_only=True)
    assert not any(key.startswith("diffusion.") for key in state)
    acting.set_state(state)
    assert torch.equal(_weights(acting.acting_diffusion), _weights(trained.acting_diffusion))


def test_a_checkpoint_from_before_the_moving_average_acts_with_its_trained_weights():
    trained = _trained()
    state = {
        key: value
        for key, value in trained.get_state().items()
        if not key.startswith("acting_diffusion.") and key != "ema_updates"
    }
    restored = _module(inference_only=True)
    restored.set_state(state)
    assert torch.equal(_weights(restored.acting_diffusion), _weights(trained.diffusion))


def test_the_noise_prediction_loss_falls_as_the_module_fits_a_policy():
    """Actions a fixed function of the observation: the learner's loss is the diffusion
    model's, and it falls with Adam updates on it."""
    torch.manual_seed(0)
    module = _module()
    observations = torch.randn(512, 3)
    actions = torch.tanh(observations[:, :1] - observations[:, 1:2])
    optimizer = torch.optim.Adam(module.diffusion.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        return module.diffusion.loss(actions, module.standardized(observations))

    with torch.no_grad():
        before = float(np.mean([loss().item() for _ in range(20)]))
    for _ in range(300):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        after = float(np.mean([loss().item() for _ in range(20)]))
    assert after < 0.6 * before, (before, after)


MULTIMODAL_DEMOS = 100
MULTIMODAL_ITERATIONS = 40
MULTIMODAL_EPISODES = 100


def _train_on_two_ways(algorithm: str, dataset: str, output) -> tuple[float, float, float]:
    """Train ``algorithm`` on ``dataset``; its checkpoint policy's success rate over sampled
    episodes, the share of those that went left, and the share of actions sampled at the start
    (where the expert's two modes part) that point left."""
    spec = ExperimentSpec(
        algorithm=algorithm,
        env=point_mass.ENV_ID,
        dataset=dataset,
        seed=0,
        stop={"iterations": MULTIMODAL_ITERATIONS},
        output=output,
        checkpoint={"every": 0},
    )
    result = rlscale.train(spec)
    env = make_env(point_mass.ENV_ID, {})
    policy = named_policy(str(result.checkpoint))(env.observation_space, env.action_space)
    torch.manual_seed(0)  # the diffusion policy's sampling noise
    episodes = [run_episode(env, policy, 100 + seed) for seed in range(MULTIMODAL_EPISODES)]
    success = float(np.mean([episode.rewards.sum() for episode in episodes]))
    went_left = float(np.mean([_side(episode.observations) < 0 for episode in episodes]))
    rng = np.random.default_rng(0)
    start = point_mass.START.astype(np.float32)
    turning_left = float(np.mean([policy(start, rng)[0] < 0 for _ in range(200)]))
    return success, went_left, turning_left


def _side(observations: np.ndarray) -> float:
    """The x of the episode's point farthest to a side: its sign is the side it took."""
    return float(observations[np.argmax(np.abs(observations[:, 0])), 0])


@pytest.mark.slow
def test_diffusion_bc_keeps_both_ways_around_the_obstacle_where_gaussian_bc_fails(
    ray_local, minari_root, tmp_path
):
    """The expert starts just below the obstacle and steps to either side, equally often. The
    diffusion policy, sampling, goes both ways (each in 30-70 % of its first actions and of its
    episodes) and reaches the goal in >= 90 % of the episodes; Gaussian BC, trained on the same
    data for as long, averages the two first steps and reaches it in at most half."""
    name = write_scripted_dataset(
        minari_root,
        "pointmass/two-ways-v0",
        MULTIMODAL_DEMOS,
        point_mass.ENV_ID,
        "point_mass_two_ways",
    )
    diffusion = _train_on_two_ways("diffusion_bc", name, tmp_path / "diffusion")
    gaussian = _train_on_two_ways("bc", name, tmp_path / "bc")
    success, went_left, turning_left = diffusion
    assert success >= 0.9, (diffusion, gaussian)
    assert 0.3 <= went_left <= 0.7, (diffusion, gaussian)
    assert 0.3 <= turning_left <= 0.7, (diffusion, gaussian)
    assert gaussian[0] <= 0.5, (diffusion, gaussian)


PENDULUM_DEMOS = 20
PENDULUM_ITERATIONS = 20
PENDULUM_EPISODES = 10


def _mean_return(policy_factory, episodes: int) -> float:
    """Mean return on Pendulum-v1 over the same start states (env seeds 1000, 1001, ...)."""
    env = make_env("Pendulum-v1", {})
    policy = policy_factory(env.observation_space, env.action_space)
    return float(
        np.mean([run_episode(env, policy, 1000 + s).rewards.sum() for s in range(episodes)])
    )


@pytest.mark.slow
def test_diffusion_bc_clones_a_pendulum_expert_and_ten_ddim_steps_match_ddpm(
    ray_local, minari_root, tmp_path
):
    """Normalized against the expert and a random policy on the same start states, the policy
    acting with 10 DDIM steps scores >= 0.9, and within 0.05 of the same weights sampling
    with DDPM's full chain of T = 100 steps."""
    name = write_scripted_dataset(
        minari_root, "pendulum/expert-v0", PENDULUM_DEMOS, "Pendulum-v1", "pendulum_swing_up"
    )
    spec = ExperimentSpec(
        algorithm="diffusion_bc",
        env="Pendulum-v1",
        dataset=name,
        seed=0,
        stop={"iterations": PENDULUM_ITERATIONS},
        output=tmp_path / "runs",
        checkpoint={"every": 0},
    )
    checkpoint = rlscale.train(spec).checkpoint
    expert = _mean_return(scripted_policy("pendulum_swing_up"), PENDULUM_EPISODES)
    random = _mean_return(scripted_policy("random"), PENDULUM_EPISODES)

    def normalized(policy_factory) -> float:
        return (_mean_return(policy_factory, PENDULUM_EPISODES) - random) / (expert - random)

    ddim = normalized(CheckpointPolicy(checkpoint))
    ddpm = normalized(
        CheckpointPolicy(checkpoint, lambda module: setattr(module, "sampler", "ddpm"))
    )
    assert ddim >= 0.9, (ddim, ddpm, expert, random)
    assert abs(ddim - ddpm) <= 0.05, (ddim, ddpm, expert, random)
