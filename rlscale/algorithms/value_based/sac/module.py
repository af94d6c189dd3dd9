"""SAC's RLModule: the shared SAC-style module, with SAC's training pass and uniform warm-up
exploration (see the package docstring for the losses)."""

from __future__ import annotations

import math
from typing import Any

import torch
from ray.rllib.core.columns import Columns

from rlscale.modules.rl_modules.sac import SACModule

# What a soft actor-critic module's ``forward_train`` returns for SACLearner's losses.
Q_LOGGED = "q_logged"
"""Each critic's Q(s, a) of the replayed (or logged) action: ``[critics, rows]``."""
Q_ACTOR = "q_actor"
"""Min over critics of Q(s, ã), ã ~ π(s), critics held fixed: ``[rows]``."""
LOGP_ACTOR = "logp_actor"
"""log π(ã | s) of the actor's action: ``[rows]``."""
Q_TARGET_NEXT = "q_target_next"
"""Min over target critics of Q'(s', a'): ``[rows]``."""
LOGP_NEXT = "logp_next"
"""log π(a' | s') of the next action (the soft backup's entropy term), detached: ``[rows]``."""


def set_uniform_exploration(module, on: bool) -> None:
    """Switch an EnvRunner's SAC module between uniform random and policy exploration."""
    if isinstance(module.unwrapped(), SACTrainModule):
        module.unwrapped().act_uniformly = on


class SACTrainModule(SACModule):
    """The SAC-style module with SAC's training pass and its uniform warm-up exploration."""

    act_uniformly = False
    """Explore with actions drawn uniformly from [-1, 1] (set by :class:`SAC` on its
    EnvRunners until learning starts); acting greedily is unaffected."""

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out = self._forward(batch)
        if not self.act_uniformly:
            return out
        inputs = out[Columns.ACTION_DIST_INPUTS]
        rows = inputs.shape[0]
        # The same columns as the policy's steps (an episode's chunks must match when they
        # are joined in the replay buffer): its inputs, and the uniform action's log density.
        uniform = torch.rand(rows, self.action_dim, dtype=inputs.dtype, device=inputs.device)
        out[Columns.ACTIONS] = 2.0 * uniform - 1.0
        out[Columns.ACTION_LOGP] = inputs.new_full((rows,), -self.action_dim * math.log(2.0))
        return out

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = self._observations(batch, Columns.OBS)
        next_obs = self._observations(batch, Columns.NEXT_OBS)
        rows = obs.shape[0]
        distribution = self.policy(torch.cat([obs, next_obs]))  # one policy pass for s and s'
        actions, logps = distribution.rsample_and_logp(sample_shape=(1,))  # [1, 2 * rows, ...]
        replayed = batch[Columns.ACTIONS].reshape(rows, self.action_dim).float()
        q_replayed = self._critic_values(self.critics, obs, replayed.unsqueeze(0))[:, 0]
        return {
            Q_LOGGED: q_replayed,
            **self._actor_and_target_outputs(obs, next_obs, actions, logps, actions[0, rows:]),
        }

    def _actor_and_target_outputs(
        self,
        obs: torch.Tensor,
        next_obs: torch.Tensor,
        actions: torch.Tensor,
        logps: torch.Tensor,
        next_action: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """What SACLearner's actor, temperature and TD-target terms need.

        ``actions [k, 2 * rows, action_dim]`` and ``logps [k, 2 * rows]`` are reparameterized
        policy samples at s (first ``rows``) and s' (last ``rows``); the first sample serves
        the actor. ``next_action [rows, action_dim]`` is the a' the target bootstraps from.
        """
        rows = obs.shape[0]
        with torch.no_grad():
            q_target_next = self._critic_values(
                self._target_critics, next_obs, next_action.detach().unsqueeze(0)
            )[:, 0]
        # The critics held fixed: the actor's gradient reaches the policy through ã only.
        q_actor = self._critic_values(self.critics, obs, actions[:1, :rows], detach_weights=True)
        return {
            Q_ACTOR: q_actor[:, 0].min(dim=0).values,
            LOGP_ACTOR: logps[0, :rows],
            Q_TARGET_NEXT: q_target_next.min(dim=0).values,
            LOGP_NEXT: logps[0, rows:].detach(),
        }
