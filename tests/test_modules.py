"""Shared torch building blocks: the critic ensemble and the squashed Gaussian."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from rlscale.modules.distributions.squashed_gaussian import (
    SquashedGaussian,
    SquashedGaussianPolicy,
)
from rlscale.modules.networks.ensemble import EnsembleMLP


def _member_as_sequential(ensemble: EnsembleMLP, member: int) -> torch.nn.Sequential:
    """Member ``member`` of the ensemble rebuilt as plain nn.Linear layers."""
    layers = []
    for index, layer in enumerate(ensemble.layers):
        linear = torch.nn.Linear(*layer.weight.shape[1:])
        with torch.no_grad():
            linear.weight.copy_(layer.weight[member].T)
            linear.bias.copy_(layer.bias[member, 0])
        layers.append(linear)
        if index < len(ensemble.layers) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def test_ensemble_members_are_independent_mlps_evaluated_together():
    torch.manual_seed(0)
    ensemble = EnsembleMLP(members=3, input_dim=5, hidden_sizes=[16, 8], output_dim=2)
    inputs = torch.randn(7, 5)
    out = ensemble(inputs)
    assert out.shape == (3, 7, 2)
    for member in range(3):
        torch.testing.assert_close(out[member], _member_as_sequential(ensemble, member)(inputs))
    # Members start from different weights, so they disagree.
    assert not torch.allclose(out[0], out[1])
    # Per-member inputs: member m sees inputs[m].
    per_member = torch.randn(3, 7, 5)
    torch.testing.assert_close(
        ensemble(per_member)[2], _member_as_sequential(ensemble, 2)(per_member[2])
    )


def test_ensemble_with_detached_weights_passes_gradients_to_its_inputs_only():
    ensemble = EnsembleMLP(members=2, input_dim=4, hidden_sizes=[8], output_dim=1)
    inputs = torch.randn(6, 4, requires_grad=True)
    ensemble(inputs, detach_weights=True).sum().backward()
    assert inputs.grad is not None and inputs.grad.abs().sum() > 0
    assert all(p.grad is None for p in ensemble.parameters())


def test_ensemble_refuses_a_bad_shape():
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleMLP(members=0, input_dim=4, hidden_sizes=[8], output_dim=1)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        EnsembleMLP(members=2, input_dim=4, hidden_sizes=[8], output_dim=1, activation="swish")


def test_squashed_gaussian_log_likelihood_matches_torch_tanh_transform():
    torch.manual_seed(0)
    policy = SquashedGaussianPolicy(observation_dim=4, action_dim=3, hidden_sizes=[16])
    observations = torch.randn(10, 4)
    distribution = policy(observations)
    actions, logps = distribution.rsample_and_logp(sample_shape=(5,))
    assert actions.shape == (5, 10, 3) and logps.shape == (5, 10)
    assert actions.abs().max() < 1.0
    reference = TransformedDistribution(
        Normal(distribution.mean, distribution.log_std.exp()), [TanhTransform()]
    )
    torch.testing.assert_close(logps, reference.log_prob(actions).sum(-1), rtol=1e-4, atol=1e-4)
    # logp of given actions agrees with the sampler's (the behavior-cloning path).
    torch.testing.assert_close(distribution.logp(actions[0]), logps[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(distribution.greedy(), torch.tanh(distribution.mean))


def test_squashed_gaussian_stays_finite_on_saturated_and_boundary_actions():
    policy = SquashedGaussianPolicy(observation_dim=2, action_dim=1, hidden_sizes=[4])
    with torch.no_grad():
        policy.mean.bias.fill_(30.0)  # tanh(30) == 1.0 in float32
    distribution = policy(torch.zeros(3, 2))
    _, logps = distribution.rsample_and_logp(sample_shape=(4,))
    assert torch.isfinite(logps).all()
    # Logged actions exactly on the bounds (clipped PPO actions) keep a finite likelihood.
    assert torch.isfinite(distribution.logp(torch.tensor([[1.0], [-1.0], [0.0]]))).all()


def test_one_squashed_gaussian_serves_the_learner_and_the_env_runner():
    logits = torch.tensor([[3.0, 0.0], [-0.5, 0.0]])  # pre-tanh mean, log-std
    distribution = SquashedGaussian.from_logits(logits)
    # The EnvRunner's greedy action (RLlib's to_deterministic) is the learner's tanh(mean).
    torch.testing.assert_close(distribution.to_deterministic().sample(), distribution.greedy())
    # Exploration samples lie inside the bounds and have a finite likelihood.
    sampled = distribution.sample()
    assert sampled.shape == (2, 1) and sampled.abs().max() <= 1.0
    assert torch.isfinite(distribution.logp(sampled)).all()
