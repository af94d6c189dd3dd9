"""diffusion_ql: the config's checks before Ray, the Learner's losses (cloning plus a Q term whose
gradient runs through the whole reverse chain), the Polyak and EMA targets, acting by Q among
sampled candidates, and a learning check on noisy Pendulum data."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import pendulum_transition_batch, write_scripted_dataset
from ray.rllib.core.columns import Columns
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

import rlscale
from rlscale.algorithms.generative.diffusion_ql import (
    DiffusionQLConfig,
    DiffusionQLLearner,
    DiffusionQLModule,
)
from rlscale.algorithms.generative.diffusion_ql.module import (
    CONDITION,
    Q_ACTOR,
    Q_LOGGED,
    Q_TARGET_NEXT,
)
from rlscale.datasets.collect import CollectionRequest, collect
from rlscale.envs import make_env
from rlscale.errors import DatasetError, SpecError
from rlscale.platform.experiment import prepare
from rlscale.platform.spec import ExperimentSpec
from rlscale.policies import scripted_policy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PENDULUM_OBSERVATIONS = gym.spaces.Box(-8.0, 8.0, (3,), np.float32)
PENDULUM_ACTIONS = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
SMALL = {"hidden_sizes": [16, 16]}
"""Networks small enough that the unit tests take milliseconds."""


@pytest.fixture
def pendulum_dataset(minari_root) -> str:
    return write_scripted_dataset(
        minari_root, "pendulum/swingup-v0", 2, "Pendulum-v1", "pendulum_swing_up"
    )


def _spec(dataset: str, **hyperparameters) -> ExperimentSpec:
    return ExperimentSpec(
        algorithm="diffusion_ql",
        env="Pendulum-v1",
        seed=0,
        dataset=dataset,
        hyperparameters=hyperparameters,
    )


def _learner(**training) -> DiffusionQLLearner:
    config = DiffusionQLConfig().training(**(SMALL | training))
    return config.build_learner(
        spaces={"default_policy": (PENDULUM_OBSERVATIONS, PENDULUM_ACTIONS)}
    )


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        (
            {"sampler": "ddim", "ddim_steps": 6},
            r"ddim_steps must be an integer from 1 to diffusion_steps \(5\), got 6",
        ),
        ({"ddim_steps": 3}, "ddim_steps=3 only applies to sampler='ddim'"),
        ({"diffusion_steps": 0}, "diffusion_steps must be a positive integer, got 0"),
        ({"beta_schedule": "cosine"}, "beta_schedule must be one of linear, .*got 'cosine'"),
        ({"sampler": "euler"}, "sampler must be one of ddim, ddpm, got 'euler'"),
        ({"ddim_eta": 2.0}, r"ddim_eta must lie in \[0, 1\], got 2.0"),
        ({"eta": -0.5}, r"eta \(η\) must be a number >= 0, got -0.5"),
        ({"num_candidate_actions": 0}, "num_candidate_actions must be a positive integer, got 0"),
        ({"num_backup_samples": 0}, "num_backup_samples must be a positive integer, got 0"),
        ({"actor_grad_clip": -1.0}, "actor_grad_clip must be a positive gradient-norm bound"),
        ({"critic_lr": -1e-3}, "critic_lr must be a positive learning rate"),
        ({"tau": 0.0}, r"tau must lie in \(0, 1\], got 0.0"),
        ({"normalize_actions": False}, "keep normalize_actions=True"),
    ],
)
def test_bad_settings_are_refused_before_ray_naming_the_value(
    pendulum_dataset, hyperparameters, message
):
    with pytest.raises(SpecError, match=message):
        prepare(_spec(pendulum_dataset, **hyperparameters))


def test_a_dataset_of_states_alone_is_refused(minari_root):
    states_only = write_scripted_dataset(
        minari_root, "pend/states-v0", 2, "Pendulum-v1", "pendulum_swing_up", erase_actions=True
    )
    with pytest.raises(DatasetError, match=r"same action at every step"):
        prepare(_spec(states_only))


def test_the_dataset_gives_the_module_its_observation_statistics(pendulum_dataset):
    config = prepare(_spec(pendulum_dataset)).config
    statistics = config.model_config["dataset_statistics"]
    assert len(statistics["obs_mean"]) == 3 and min(statistics["obs_std"]) > 0.01
    raw = prepare(_spec(pendulum_dataset, standardize=False)).config
    assert raw.model_config["dataset_statistics"] is None


def test_the_defaults_are_the_papers_policy():
    config = DiffusionQLConfig()
    model = config.model_config
    assert (model["diffusion_steps"], model["beta_schedule"], model["activation"]) == (
        5,
        "vp",
        "mish",
    )
    assert config.num_candidate_actions == 50 and config.eta == 1.0 and config.twin_q


# ------------------------------------------------------------------------------------ losses


def test_the_actor_loss_clones_and_its_q_term_reaches_every_denoising_step():
    learner = _learner(eta=2.5)
    module = learner.module["default_policy"].unwrapped()
    noise_predictions: list[torch.Tensor] = []

    def keep_output(_, __, output):
        if output.requires_grad:  # the actor's chain, not the target's (no gradients)
            output.retain_grad()
            noise_predictions.append(output)

    module.policy.denoiser.register_forward_hook(keep_output)
    # Rows whose predicted clean action a0_hat is clipped to the bounds at a step pass no
    # gradient back through that step (at the noisiest step, most of them): enough rows that
    # every step has some that are not.
    batch = pendulum_transition_batch(256)
    torch.manual_seed(0)
    fwd_out = module.forward_train(batch)
    # One noise prediction per denoising step, each in the actor action's graph.
    assert len(noise_predictions) == module.policy.steps == 5
    chain = list(noise_predictions)
    torch.manual_seed(1)
    total = learner.compute_loss_for_module(
        module_id="default_policy", config=learner.config, batch=batch, fwd_out=fwd_out
    )
    torch.manual_seed(1)  # the same noise levels and noise for the cloning loss
    cloning = module.policy.loss(batch[Columns.ACTIONS], fwd_out[CONDITION])
    q_actor = fwd_out[Q_ACTOR]
    q_term = 2.5 * q_actor.mean() / q_actor.detach().abs().mean()
    td = learner._td_loss(learner.config, batch, fwd_out, alpha=None)
    torch.testing.assert_close(total, cloning - q_term + td)
    assert cloning.item() > 0 and q_term.abs().item() > 0

    # The Q term's gradient runs back through the whole reverse chain into the noise
    # predictor's weights; it leaves the critics alone.
    q_term.backward(retain_graph=True)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in chain)
    denoiser_weights = list(module.policy.denoiser.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in denoiser_weights)
    assert all(p.grad is None for p in module.critics.parameters())


def test_the_td_target_bootstraps_from_the_ema_policy_and_the_target_critics():
    learner = _learner(max_q_backup=True, num_backup_samples=4)
    module = learner.module["default_policy"].unwrapped()
    with torch.no_grad():  # target critics that differ from the critics
        for parameter in module._target_critics.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    drawn = []
    sample = module.sample_actions

    def record(diffusion, condition, grad=False):
        actions = sample(diffusion, condition, grad=grad)
        drawn.append((diffusion, condition, actions))
        return actions

    module.sample_actions = record
    batch = pendulum_transition_batch(8)
    fwd_out = module.forward_train(batch)
    diffusion, condition, actions = drawn[-1]
    assert diffusion is module.target_policy and condition.shape[0] == 8 * 4
    q = module.critic_values(module._target_critics, condition, actions).reshape(2, 8, 4)
    # Each target critic's max over the 4 draws, then the min over the twins.
    expected = q.max(dim=-1).values.min(dim=0).values
    torch.testing.assert_close(fwd_out[Q_TARGET_NEXT], expected)
    assert not fwd_out[Q_TARGET_NEXT].requires_grad
    assert fwd_out[Q_LOGGED].shape == (2, 8)


def test_targets_and_the_ema_policy_move_by_tau_after_every_update(monkeypatch):
    from rlscale.algorithms.value_based.sac import learner as sac  # its apply_gradients

    learner = _learner(tau=0.5)
    module = learner.module["default_policy"].unwrapped()
    pairs = module.get_target_network_pairs()
    assert [target for _, target in pairs] == [module._target_critics, module.target_policy]
    start = {id(t): [p.detach().clone() for p in t.parameters()] for _, t in pairs}
    main_after_each_step: dict[int, list] = {id(t): [] for _, t in pairs}
    polyak_step = sac.polyak_step

    def record_and_average(main_net, target_net, tau):
        main_after_each_step[id(target_net)].append(
            [p.detach().clone() for p in main_net.parameters()]
        )
        polyak_step(main_net, target_net, tau)

    monkeypatch.setattr(sac, "polyak_step", record_and_average)
    rows = 16
    columns = {
        key: value.repeat(3, *[1] * (value.dim() - 1))
        for key, value in pendulum_transition_batch(rows).items()
    }
    columns = {key: value.numpy() for key, value in columns.items()}
    columns[Columns.TRUNCATEDS] = np.zeros(3 * rows, dtype=bool)
    batch = MultiAgentBatch({"default_policy": SampleBatch(columns)}, env_steps=3 * rows)
    learner.update(batch=batch, minibatch_size=rows, num_epochs=1)

    for _, target in pairs:
        assert len(main_after_each_step[id(target)]) == 3
        expected = start[id(target)]
        for main_params in main_after_each_step[id(target)]:
            expected = [0.5 * t + 0.5 * m for t, m in zip(expected, main_params, strict=True)]
        for got, want in zip(target.parameters(), expected, strict=True):
            torch.testing.assert_close(got, want)


def test_gradient_norms_are_clipped_per_network():
    learner = _learner(actor_grad_clip=1e-3, critic_grad_clip=None, eta=1.0)
    module = learner.module["default_policy"].unwrapped()
    batch = pendulum_transition_batch(32)
    fwd_out = module.forward_train(batch)
    loss = learner.compute_loss_for_module(
        module_id="default_policy", config=learner.config, batch=batch, fwd_out=fwd_out
    )
    loss.backward()
    gradients = {ref: learner._params[ref].grad for ref in learner._params}
    critic_norm_before = torch.nn.utils.get_total_norm(
        [p.grad for p in module.critics.parameters()]
    )
    learner.postprocess_gradients_for_module(
        module_id="default_policy", config=learner.config, module_gradients_dict=gradients
    )
    actor_norm = torch.nn.utils.get_total_norm([p.grad for p in module.policy.parameters()])
    critic_norm = torch.nn.utils.get_total_norm([p.grad for p in module.critics.parameters()])
    assert actor_norm == pytest.approx(1e-3, rel=1e-3)
    assert critic_norm == critic_norm_before  # no bound on the critics


# ------------------------------------------------------------------------------------ acting


def test_acting_picks_in_bound_actions_among_the_candidates_by_q():
    torch.manual_seed(0)
    learner = _learner(num_candidate_actions=7)
    trained = learner.module["default_policy"].unwrapped()
    # The EnvRunner's copy: the EMA policy and the critics, with the Learner's weights.
    runner = DiffusionQLModule(
        observation_space=PENDULUM_OBSERVATIONS,
        action_space=PENDULUM_ACTIONS,
        inference_only=True,
        model_config=learner.config.model_config,
    )
    assert not hasattr(runner, "policy") and not hasattr(runner, "_target_critics")
    runner.set_state(trained.get_state(inference_only=True))
    drawn = []
    sample = runner.sample_actions

    def record(diffusion, condition, grad=False):
        actions = sample(diffusion, condition, grad=grad)
        drawn.append((diffusion, condition, actions))
        return actions

    runner.sample_actions = record
    observations = torch.as_tensor(
        np.stack([PENDULUM_OBSERVATIONS.sample() for _ in range(5)]), dtype=torch.float32
    )
    for forward in (runner.forward_inference, runner.forward_exploration):
        actions = forward({Columns.OBS: observations})[Columns.ACTIONS]
        diffusion, condition, candidates = drawn[-1]
        assert diffusion is runner.target_policy
        assert actions.shape == (5, 1) and actions.abs().max() <= 1.0  # normalized units
        candidates = candidates.reshape(5, 7, 1)
        picked = (candidates == actions.unsqueeze(1)).all(dim=-1)
        assert picked.any(dim=1).all()  # each action is one of its state's 7 candidates
        if forward == runner.forward_inference:
            q = runner.critic_values(runner.critics, condition, candidates.reshape(35, 1))
            best = q.min(dim=0).values.reshape(5, 7).argmax(dim=1)
            torch.testing.assert_close(actions, candidates[torch.arange(5), best])


def test_ddim_with_fewer_steps_trains_and_acts():
    learner = _learner(sampler="ddim", ddim_steps=2, ddim_eta=0.0, num_candidate_actions=3)
    module = learner.module["default_policy"].unwrapped()
    calls = []
    module.policy.denoiser.register_forward_hook(lambda *_: calls.append(1))
    fwd_out = module.forward_train(pendulum_transition_batch(8))
    assert len(calls) == 2 and fwd_out[Q_ACTOR].requires_grad  # two DDIM steps, with the graph
    actions = module.forward_inference({Columns.OBS: pendulum_transition_batch(4)[Columns.OBS]})[
        Columns.ACTIONS
    ]
    assert actions.shape == (4, 1) and actions.abs().max() <= 1.0


# ---------------------------------------------------------------------------------- learning


@pytest.mark.slow
def test_diffusion_ql_beats_the_noisy_policy_that_collected_its_pendulum_data(
    ray_local, minari_root, tmp_path
):
    """The dataset of cql's check (the swing-up controller with noise 1.0, 30 episodes,
    mean return about -510): diffusion_ql's defaults, 30 iterations of 100 updates."""
    collected = collect(
        CollectionRequest(
            env="Pendulum-v1",
            dataset_id="pend/noisy-v0",
            policy_factory=scripted_policy("pendulum_swing_up"),
            policy_name="pendulum_swing_up",
            episodes=30,
            workers=2,
            noise=1.0,
            seed=0,
            root=minari_root,
        ),
        make_env,
    )
    assert -800 <= collected.mean_return <= -300
    spec = ExperimentSpec(
        algorithm="diffusion_ql",
        env="Pendulum-v1",
        dataset="pend/noisy-v0",
        stop={"iterations": 30},
        seed=0,
        output=tmp_path / "runs",
        checkpoint={"every": 0},
    )
    result = rlscale.train(spec)
    evaluated = [m for m in result.history if m.has_return]
    final = evaluated[-1]
    assert final.return_mean > collected.mean_return + 100, [m.return_mean for m in evaluated]
