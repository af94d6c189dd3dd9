"""BCQ and discrete BCQ: acting, the soft clipped double-Q target, the discrete threshold, which
parameters each loss moves, the configs' refusals, a checkpoint that evaluates, and learning
checks on noisy Pendulum and CartPole data."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.algorithms.dqn.dqn_learner import QF_NEXT_PREDS, QF_PREDS, QF_TARGET_NEXT_PREDS
from ray.rllib.core.columns import Columns

import rlscale
from rlscale.algorithms import get_algorithm
from rlscale.algorithms.generative import BCQConfig, BCQModule, DiscreteBCQModule, bcq_discrete
from rlscale.algorithms.generative.bcq import module as bcq_keys
from rlscale.errors import IncompatibleSpaceError, SpecError
from rlscale.platform.experiment import prepare
from tests.conftest import pendulum_transition_batch, write_scripted_dataset
from tests.test_offline import _collect, _last_evaluation, _train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PENDULUM_OBSERVATIONS = gym.spaces.Box(-8.0, 8.0, (3,), np.float32)
PENDULUM_ACTIONS = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
CARTPOLE_OBSERVATIONS = gym.spaces.Box(-5.0, 5.0, (4,), np.float32)
SMALL = {"hidden_sizes": [16, 16], "vae_hidden_sizes": [16, 16]}


def _bcq_module(normalize_actions: bool = True, **training) -> BCQModule:
    config = BCQConfig().training(**(SMALL | training))
    config.normalize_actions = normalize_actions
    module = BCQModule(
        observation_space=PENDULUM_OBSERVATIONS,
        action_space=PENDULUM_ACTIONS,
        model_config=config.model_config,
    )
    module.make_target_networks()
    return module


def _observations(rows: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(rows, 3, generator=generator) * 2 - 1


# ------------------------------------------------------------------------------- BCQ acting


@pytest.mark.parametrize(
    ("normalize_actions", "bound"), [(True, 1.0), (False, 2.0)], ids=["unit", "env_units"]
)
@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_bcq_acts_within_phi_of_a_vae_sample_and_inside_the_bounds(normalize_actions, bound, scale):
    torch.manual_seed(0)
    module = _bcq_module(normalize_actions, perturbation_scale=scale)
    obs = _observations(64)
    torch.manual_seed(1)
    with torch.no_grad():
        actions = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    # The same draws again: the n VAE samples each action was chosen among.
    torch.manual_seed(1)
    samples = module.num_sampled_actions
    with torch.no_grad():
        decoded = module.vae.decode(obs.repeat_interleave(samples, dim=0)).reshape(64, samples)
    assert actions.shape == (64, 1)
    assert actions.abs().max() <= bound
    distance = (decoded - actions).abs().min(dim=1).values
    # Φ times the half range (1 in [-1, 1] units, 2 on Pendulum's own ±2 bounds).
    assert distance.max() <= scale * bound + 1e-6
    assert module.forward_exploration({Columns.OBS: obs})[Columns.ACTIONS].shape == (64, 1)


def test_bcq_takes_the_sample_with_the_highest_first_critic():
    torch.manual_seed(0)
    module = _bcq_module()
    obs = _observations(8)
    torch.manual_seed(3)
    with torch.no_grad():
        chosen = module.select_actions(obs)
    torch.manual_seed(3)
    with torch.no_grad():
        repeated = obs.repeat_interleave(module.num_sampled_actions, dim=0)
        candidates = module.perturb(repeated, module.vae.decode(repeated))
        q_first = module._q_values(module.critics, repeated, candidates)[0].reshape(8, -1)
    best = candidates.reshape(8, -1)[torch.arange(8), q_first.argmax(dim=1)]
    torch.testing.assert_close(chosen[:, 0], best)


# ------------------------------------------------------------------------------- BCQ target


def _set_linear_critics(critics, slopes: list[float], offset: float = 5.0) -> None:
    """Critic j becomes Q_j(s, a) = slopes[j] * a (a one-dimensional action, input index 3):
    the first hidden unit carries a + offset (positive, through the ReLUs), the output takes
    slopes[j] times it minus slopes[j] * offset."""
    with torch.no_grad():
        for layer in critics.layers:
            layer.weight.zero_()
            layer.bias.zero_()
        first, *middle, last = critics.layers
        first.weight[:, 3, 0] = 1.0
        first.bias[:, 0, 0] = offset
        for layer in middle:
            layer.weight[:, 0, 0] = 1.0
        for member, slope in enumerate(slopes):
            last.weight[member, 0, 0] = slope
            last.bias[member, 0, 0] = -slope * offset


@pytest.mark.parametrize("weight", [0.75, 1.0, 0.0])
def test_the_target_mixes_min_and_max_of_the_twin_critics_and_takes_the_best_sample(weight):
    torch.manual_seed(0)
    module = _bcq_module(target_min_weight=weight)
    _set_linear_critics(module._target_critics, [1.0, 3.0])
    next_obs = _observations(16, seed=1)
    torch.manual_seed(5)
    target = module.soft_clipped_target(next_obs)
    torch.manual_seed(5)
    with torch.no_grad():
        repeated = next_obs.repeat_interleave(module.num_sampled_actions, dim=0)
        candidates = module.perturb(
            repeated, module.vae.decode(repeated), module._target_perturbation
        ).reshape(16, -1)
    q1, q2 = candidates, 3.0 * candidates
    mixed = weight * torch.minimum(q1, q2) + (1 - weight) * torch.maximum(q1, q2)
    torch.testing.assert_close(target, mixed.max(dim=1).values)
    # Candidates of both signs, so that min and max swap critics between samples.
    assert (candidates > 0).any() and (candidates < 0).any()


def test_the_target_perturbs_with_the_target_network_not_the_online_one():
    torch.manual_seed(0)
    module = _bcq_module(perturbation_scale=1.0)
    _set_linear_critics(module._target_critics, [1.0, 1.0])
    with torch.no_grad():
        for network in (module.perturbation, module._target_perturbation):
            network[-1].weight.zero_()
        module.perturbation[-1].bias.fill_(10.0)  # online ξ pushes every action to the top
        module._target_perturbation[-1].bias.fill_(-10.0)  # target ξ' to the bottom
    next_obs = _observations(4)
    torch.manual_seed(2)
    target = module.soft_clipped_target(next_obs)
    torch.manual_seed(2)
    with torch.no_grad():
        repeated = next_obs.repeat_interleave(module.num_sampled_actions, dim=0)
        decoded = module.vae.decode(repeated).reshape(4, -1)
    # Q = a; ξ' moves each sample down by Φ · max_action = 1 (ξ would move it up by 1).
    torch.testing.assert_close(target, (decoded - 1.0).clamp(-1.0, 1.0).max(dim=1).values)
    assert (target <= 0).all()


# ------------------------------------------------------------------------------- BCQ losses


def _bcq_learner(**training):
    config = get_algorithm("bcq").make_config().training(**(SMALL | training))
    return config.build_learner(
        spaces={"default_policy": (PENDULUM_OBSERVATIONS, PENDULUM_ACTIONS)}
    )


def _moved(loss: torch.Tensor, named: dict[str, torch.nn.Parameter]) -> set[str]:
    """The top-level networks whose trainable parameters get a nonzero gradient from ``loss``."""
    named = {name: p for name, p in named.items() if p.requires_grad}
    grads = torch.autograd.grad(loss, list(named.values()), retain_graph=True, allow_unused=True)
    return {
        name.split(".")[0]
        for name, grad in zip(named, grads, strict=True)
        if grad is not None and grad.abs().sum() > 0
    }


def test_each_bcq_loss_moves_only_its_own_network():
    torch.manual_seed(0)
    learner = _bcq_learner()
    module = learner.module["default_policy"].unwrapped()
    named = dict(module.named_parameters())
    batch = pendulum_transition_batch(32)
    fwd_out = module.forward_train(batch)
    target = batch[Columns.REWARDS] + 0.99 * fwd_out[bcq_keys.Q_TARGET_NEXT]
    critic_loss = (fwd_out[bcq_keys.Q_LOGGED] - target).pow(2).mean()
    assert _moved(fwd_out[bcq_keys.VAE_LOSS], named) == {"vae"}
    assert _moved(critic_loss, named) == {"critics"}
    assert _moved(-fwd_out[bcq_keys.Q_ACTOR].mean(), named) == {"perturbation"}
    assert not any(p.requires_grad for p in module._target_critics.parameters())
    assert not any(p.requires_grad for p in module._target_perturbation.parameters())
    # The Learner has one optimizer for each of those three networks.
    for name in ("vae", "perturbation", "critics"):
        optimizer = learner.get_optimizer("default_policy", name)
        stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
        assert stepped == {id(p) for p in getattr(module, name).parameters()}, name


def test_a_bcq_update_steps_every_network_and_moves_the_targets_by_tau():
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    torch.manual_seed(0)
    learner = _bcq_learner(tau=0.5)
    module = learner.module["default_policy"].unwrapped()
    before = {name: p.detach().clone() for name, p in module.state_dict().items()}
    columns = {key: value.numpy() for key, value in pendulum_transition_batch(16).items()}
    columns[Columns.TRUNCATEDS] = np.zeros(16, dtype=bool)
    batch = MultiAgentBatch({"default_policy": SampleBatch(columns)}, env_steps=16)
    learner.update(batch=batch, minibatch_size=16, num_epochs=1)
    after = module.state_dict()
    for prefix in (
        "vae.",
        "perturbation.",
        "critics.",
        "_target_critics.",
        "_target_perturbation.",
    ):
        changed = [not torch.equal(before[k], after[k]) for k in after if k.startswith(prefix)]
        assert any(changed), prefix
    # One step: target = 0.5 · old target + 0.5 · new online weights.
    for name in ("critics.layers.0.weight", "perturbation.0.weight"):
        target_name = f"_target_{name}"
        expected = 0.5 * before[target_name] + 0.5 * after[name]
        torch.testing.assert_close(after[target_name], expected)


# ---------------------------------------------------------------------------- discrete BCQ


def test_the_threshold_allows_actions_by_their_ratio_to_the_most_likely_one():
    probabilities = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.98, 0.01, 0.01]])
    logits = probabilities.log() + 7.0  # the normalizer cancels
    allowed = bcq_discrete.allowed_actions(logits, 0.3)
    # Ratios: [1, 0.5, 0.17], [0.33, 0.33, 1], [1, 0.01, 0.01].
    assert allowed.tolist() == [[True, True, False], [True, True, True], [True, False, False]]
    assert bcq_discrete.allowed_actions(logits, 0.0).all()
    assert bcq_discrete.allowed_actions(logits, 0.99).sum(dim=1).tolist() == [1, 1, 1]
    q_values = torch.tensor([[0.0, 1.0, 9.0], [5.0, 1.0, 2.0], [0.0, 3.0, 3.0]])
    assert bcq_discrete.masked_argmax(q_values, allowed).tolist() == [1, 0, 0]


def _discrete_module(**training) -> DiscreteBCQModule:
    config = get_algorithm("bcq_discrete").make_config().training(hidden_sizes=[16], **training)
    module = DiscreteBCQModule(
        observation_space=CARTPOLE_OBSERVATIONS,
        action_space=gym.spaces.Discrete(3),
        model_config=config.model_config,
    )
    module.make_target_networks()
    return module


def test_discrete_bcq_acts_greedily_over_the_allowed_actions_only():
    torch.manual_seed(0)
    module = _discrete_module()
    with torch.no_grad():
        for network in (module.q_network.advantage, module.imitation[-1]):
            network.weight.zero_()
        module.q_network.advantage.bias.copy_(torch.tensor([0.0, 1.0, 2.0]))  # Q prefers 2
        module.imitation[-1].bias.copy_(torch.tensor([0.0, 0.0, -3.0]))  # G rules 2 out
    obs = torch.rand(5, 4)
    for forward in (module.forward_inference, module.forward_exploration):
        assert forward({Columns.OBS: obs})[Columns.ACTIONS].tolist() == [1] * 5
    module.bcq_threshold = 0.0  # every action allowed: DQN's greedy action
    assert module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS].tolist() == [2] * 5


def _discrete_learner(**training):
    config = get_algorithm("bcq_discrete").make_config().training(hidden_sizes=[16], **training)
    spaces = (CARTPOLE_OBSERVATIONS, gym.spaces.Discrete(3))
    return config.build_learner(spaces={"default_policy": spaces})


def test_the_discrete_target_bootstraps_from_the_best_allowed_next_action():
    learner = _discrete_learner(imitation_logit_penalty=0.0)
    batch = {
        Columns.ACTIONS: torch.tensor([0, 1]),
        Columns.REWARDS: torch.tensor([1.0, 0.5]),
        Columns.TERMINATEDS: torch.tensor([False, True]),
    }
    gamma = learner.config.gamma
    # Row 0: the online Q's best next action (0) is not allowed; the best allowed one is 2,
    # whose target value is 4. Row 1 terminated: the target is its reward.
    fwd_out = {
        QF_PREDS: torch.tensor([[1.0 + gamma * 4.0, 0.0, 0.0], [0.0, 0.5, 0.0]]),
        QF_NEXT_PREDS: torch.tensor([[10.0, 1.0, 5.0], [0.0, 0.0, 0.0]]),
        QF_TARGET_NEXT_PREDS: torch.tensor([[100.0, 2.0, 4.0], [7.0, 7.0, 7.0]]),
        bcq_discrete.IMITATION_LOGITS: torch.zeros(2, 3),
        bcq_discrete.NEXT_ALLOWED: torch.tensor([[False, True, True], [True, True, True]]),
    }
    loss = learner.compute_loss_for_module(
        module_id="default_policy", config=learner.config, batch=batch, fwd_out=fwd_out
    )
    td_loss = learner.metrics.peek(("default_policy", bcq_discrete.TD_LOSS_KEY))
    assert td_loss == pytest.approx(0.0, abs=1e-6)
    # The rest is G's cross-entropy of uniform logits over 3 actions.
    assert float(loss) == pytest.approx(np.log(3.0), rel=1e-5)


def test_discrete_bcq_losses_move_q_and_g_separately_and_penalize_the_logits():
    torch.manual_seed(0)
    learner = _discrete_learner()
    module = learner.module["default_policy"].unwrapped()
    named = dict(module.named_parameters())
    generator = torch.Generator().manual_seed(0)
    batch = {
        Columns.OBS: torch.rand(32, 4, generator=generator),
        Columns.NEXT_OBS: torch.rand(32, 4, generator=generator),
        Columns.ACTIONS: torch.randint(0, 3, (32,), generator=generator),
        Columns.REWARDS: torch.ones(32),
        Columns.TERMINATEDS: torch.zeros(32, dtype=torch.bool),
    }
    fwd_out = module.forward_train(batch)
    q_data = fwd_out[QF_PREDS].gather(-1, batch[Columns.ACTIONS][:, None]).squeeze(-1)
    logits = fwd_out[bcq_discrete.IMITATION_LOGITS]
    cross_entropy = torch.nn.functional.cross_entropy(logits, batch[Columns.ACTIONS])
    assert _moved(q_data.sum(), named) == {"q_network"}
    assert _moved(cross_entropy, named) == {"imitation"}
    assert not any(p.requires_grad for p in module._target_q_network.parameters())
    total = learner.compute_loss_for_module(
        module_id="default_policy", config=learner.config, batch=batch, fwd_out=fwd_out
    )
    td_loss = learner.metrics.peek(("default_policy", bcq_discrete.TD_LOSS_KEY))
    expected = td_loss + cross_entropy + 0.01 * logits.pow(2).mean()
    torch.testing.assert_close(total, expected)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"perturbation_scale": 1.5}, r"perturbation_scale \(Φ\) must lie in \[0, 1\], got 1.5"),
        ({"perturbation_scale": -0.1}, r"perturbation_scale \(Φ\) must lie in \[0, 1\]"),
        ({"target_min_weight": 2}, r"target_min_weight \(λ\) must lie in \[0, 1\], got 2"),
        ({"num_sampled_actions": 0}, "num_sampled_actions must be a positive integer, got 0"),
        ({"num_sampled_actions": 2.5}, "num_sampled_actions must be a positive integer"),
        ({"vae_hidden_sizes": []}, "vae_hidden_sizes must be a non-empty list"),
        ({"vae_hidden_sizes": [64, 0]}, "vae_hidden_sizes must be a non-empty list"),
        ({"vae_beta": -1.0}, r"vae_beta \(the KL weight\) must be a number >= 0"),
        ({"vae_lr": 0.0}, "vae_lr must be a positive learning rate"),
        ({"critic_lr": -1e-3}, "critic_lr must be a positive learning rate"),
        ({"tau": 0.0}, r"tau must lie in \(0, 1\], got 0.0"),
    ],
)
def test_bad_bcq_settings_are_refused_with_what_to_do(training, message):
    config = get_algorithm("bcq").make_config().offline_data(input_="data")
    with pytest.raises(ValueError, match=message):
        config.training(**training).validate()


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"bcq_threshold": 1.0}, r"bcq_threshold \(τ\) must lie in \[0, 1\), got 1.0"),
        ({"bcq_threshold": -0.2}, r"bcq_threshold \(τ\) must lie in \[0, 1\)"),
        ({"imitation_logit_penalty": -1.0}, "imitation_logit_penalty must be a number >= 0"),
        ({"double_q": False}, "leave double_q=True"),
        ({"num_atoms": 51}, "leave num_atoms=1"),
    ],
)
def test_bad_discrete_bcq_settings_are_refused_with_what_to_do(training, message):
    config = get_algorithm("bcq_discrete").make_config().offline_data(input_="data")
    with pytest.raises(ValueError, match=message):
        config.training(**training).validate()


def test_a_bad_value_in_a_spec_is_refused_before_ray(minari_root):
    dataset = write_scripted_dataset(
        minari_root, "pend/expert-v0", 1, "Pendulum-v1", "pendulum_swing_up"
    )
    spec = rlscale.ExperimentSpec(
        algorithm="bcq",
        env="Pendulum-v1",
        dataset=dataset,
        hyperparameters={"perturbation_scale": 3},
    )
    with pytest.raises(SpecError, match=r"perturbation_scale \(Φ\) must lie in \[0, 1\], got 3"):
        prepare(spec)
    with pytest.raises(SpecError, match="num_sampled_actions must be a number"):
        prepare(spec.model_copy(update={"hyperparameters": {"num_sampled_actions": "ten"}}))


@pytest.mark.parametrize(
    ("algorithm", "env", "message"),
    [
        (
            "bcq",
            "CartPole-v1",
            r"needs a Box \(continuous\) action space.*Discrete\(2\).*bcq_discrete",
        ),
        ("bcq_discrete", "Pendulum-v1", r"needs a Discrete action space.*Box.*fit.*bcq\b"),
    ],
)
def test_the_wrong_kind_of_action_space_is_refused_naming_what_fits(algorithm, env, message):
    spec = rlscale.ExperimentSpec(algorithm=algorithm, env=env, dataset="some/data-v0")
    with pytest.raises(IncompatibleSpaceError, match=message):
        prepare(spec, attach_dataset=False)


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    ("algorithm", "env", "policy"),
    [
        ("bcq", "Pendulum-v1", "pendulum_swing_up"),
        ("bcq_discrete", "CartPole-v1", "cartpole_balance"),
    ],
)
def test_a_checkpoint_evaluates(ray_local, minari_root, tmp_path, algorithm, env, policy):
    _collect(minari_root, env, policy, "ckpt/data-v0", episodes=2, noise=0.0)
    result = _train(
        tmp_path,
        algorithm,
        env,
        "ckpt/data-v0",
        iterations=1,
        hidden_sizes=[16, 16],
        dataset_num_iters_per_learner=5,
    )
    report = rlscale.evaluate(result.checkpoint, episodes=1)
    assert report.episodes == 1 and np.isfinite(report.mean_return)


# ----------------------------------------------------------------------- learning checks


@pytest.mark.slow
def test_bcq_beats_the_noisy_policy_that_collected_its_pendulum_data(
    ray_local, minari_root, tmp_path
):
    collected = _collect(
        minari_root, "Pendulum-v1", "pendulum_swing_up", "pend/noisy-v0", episodes=30, noise=1.0
    )
    assert -800 <= collected.mean_return <= -300  # mediocre: random is about -1200, best -150
    result = _train(tmp_path, "bcq", "Pendulum-v1", "pend/noisy-v0", iterations=30)
    final = _last_evaluation(result)
    assert final.return_mean > collected.mean_return + 100


@pytest.mark.slow
def test_discrete_bcq_balances_cartpole_from_epsilon_half_data(ray_local, minari_root, tmp_path):
    collected = _collect(
        minari_root, "CartPole-v1", "cartpole_balance", "cart/noisy-v0", episodes=30, noise=0.5
    )
    assert 100 <= collected.mean_return <= 250
    result = _train(tmp_path, "bcq_discrete", "CartPole-v1", "cart/noisy-v0", iterations=20)
    final = _last_evaluation(result)
    assert final.return_mean >= 475
