"""RLlib's CQL RLModule with the regularizer's Q values as the paper defines them.

CQL(H) (Kumar, Zhou, Tucker, Levine 2020, https://arxiv.org/abs/2006.04779, eq. 4 and its
importance-sampled estimate in appendix F) pushes Q(s, ·) down by a logsumexp over actions at
each logged state s: uniformly random actions, actions from the policy at s, and actions from
the policy at the next state s'. Three changes from RLlib's ``DefaultCQLTorchRLModule``:

- The policy's actions for s' are scored at s, Q(s, a'), as in the paper's estimator. RLlib
  scores them at s', Q(s', a'), which regularizes a different state than the logsumexp's other
  terms and than the data term Q(s, a_data) it is weighed against.
- The random actions are drawn in the range the policy acts in. RLlib draws them between the
  env's bounds, but with ``normalize_actions`` (the default) the policy and the logged actions
  live in [-1, 1] and the loss weighs the samples by the uniform density on [-1, 1]; on Pendulum
  (bounds ±2) half of them fell outside the actions Q is ever asked about.
- The greedy action is the squashed mean. RLlib's ``TorchSquashedGaussian.to_deterministic()``
  returns the Gaussian's mean *before* the tanh, so a greedy (``explore=False``) policy acted
  with atanh-space values that RLlib's unsquashing clipped to the bounds: a bang-bang
  controller, whatever the policy learned.
"""

from __future__ import annotations

import torch
from ray.rllib.algorithms.cql.torch.default_cql_torch_rl_module import DefaultCQLTorchRLModule
from ray.rllib.algorithms.sac.sac_learner import QF_PREDS, QF_TWIN_PREDS
from ray.rllib.algorithms.sac.torch.default_sac_torch_rl_module import DefaultSACTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchDeterministic,
    TorchSquashedGaussian,
)
from ray.rllib.core.models.base import ENCODER_OUT


class SquashedGaussian(TorchSquashedGaussian):
    """Tanh-squashed Gaussian whose deterministic action is tanh(mean), scaled to the bounds."""

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=self._squash(self.loc))


class RlscaleCQLModule(DefaultCQLTorchRLModule):
    """RLlib's CQL module (twin Q, target nets) with the paper's regularizer inputs."""

    def get_inference_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

    def get_exploration_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

    def get_train_action_dist_cls(self) -> type[SquashedGaussian]:
        return SquashedGaussian

    def _forward_train(self, batch: dict) -> dict:
        # SAC's outputs: Q of the logged actions, the actor's resampled actions, target Q.
        fwd_out = DefaultSACTorchRLModule._forward_train(self, batch)
        obs, next_obs = batch[Columns.OBS], batch[Columns.NEXT_OBS]
        rows, samples = obs.shape[0], self.model_config["num_actions"]
        # The regularizer trains Q only: the policy's samples carry no gradient to the policy.
        with torch.no_grad():
            curr_actions, curr_logps = self._sample_repeated(obs)
            next_actions, next_logps = self._sample_repeated(next_obs)
        random_actions = self._random_actions(rows * samples, obs.device)
        for name, actions in (("rand", random_actions), ("curr", curr_actions)):
            repeated = self._repeat_actions(obs, actions)
            fwd_out[f"actions_{name}_repeat"] = actions
            fwd_out[f"q_{name}_repeat"] = repeated[QF_PREDS]
            if self.twin_q:
                fwd_out[f"q_twin_{name}_repeat"] = repeated[QF_TWIN_PREDS]
        at_current_state = self._repeat_actions(obs, next_actions)  # Q(s, a'), a' ~ pi(s')
        fwd_out["actions_next_repeat"] = next_actions
        fwd_out["q_next_repeat"] = at_current_state[QF_PREDS]
        if self.twin_q:
            fwd_out["q_twin_next_repeat"] = at_current_state[QF_TWIN_PREDS]
        fwd_out["logps_curr_repeat"] = curr_logps.view(rows, samples, 1)
        fwd_out["logps_next_repeat"] = next_logps.view(rows, samples, 1)
        return fwd_out

    def _sample_repeated(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_actions`` policy samples per row (row-major) and their log-likelihoods."""
        repeated = torch.repeat_interleave(obs, self.model_config["num_actions"], dim=0)
        logits = self.pi(self.pi_encoder({Columns.OBS: repeated})[ENCODER_OUT])
        return self.get_train_action_dist_cls().from_logits(logits).rsample_and_logp()

    def _random_actions(self, count: int, device: torch.device) -> torch.Tensor:
        """Uniform actions in the policy's range: [-1, 1], or the bounds without normalizing."""
        if self.model_config.get("normalize_actions", False):
            low = -torch.ones(self.action_space.shape, device=device)
            high = torch.ones(self.action_space.shape, device=device)
        else:
            low = torch.as_tensor(self.action_space.low, device=device)
            high = torch.as_tensor(self.action_space.high, device=device)
        return low + (high - low) * torch.rand((count, *low.shape), device=device)
