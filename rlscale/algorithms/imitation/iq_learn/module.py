"""Continuous IQ-Learn's RLModule: the shared SAC-style module (squashed-Gaussian actor, twin
critics, ``log_alpha``) with the training pass IQ-Learn's losses need. Acting is SACModule's."""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns

from rlscale.modules.rl_modules.sac import SACModule

LOGGED_Q = "logged_q"
"""Each critic's Q(s, a) of the logged action (expert's or replayed): ``[critics, rows]``."""
POLICY_Q = "policy_q"
"""Each critic's Q(s, a~) of a policy sample a~ ~ pi(s), held fixed: ``[critics, rows]``."""
NEXT_POLICY_Q = "next_policy_q"
"""Each critic's Q(s', a~') of a policy sample at s', held fixed: ``[critics, rows]`` (from the
target critics with the model config's ``next_value_from_target``)."""
POLICY_LOGP = "policy_logp"
"""log pi(a~|s), detached: ``[rows]``."""
NEXT_POLICY_LOGP = "next_policy_logp"
"""log pi(a~'|s'), detached: ``[rows]``."""
ACTOR_Q = "actor_q"
"""min_i Q_i(s, a~), the critics' weights held fixed (the actor's loss): ``[rows]``."""
ACTOR_LOGP = "actor_logp"
"""log pi(a~|s) with its gradient (the actor's and the temperature's losses): ``[rows]``."""


class IQLearnActorCriticModule(SACModule):
    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = self._observations(batch, Columns.OBS)
        next_obs = self._observations(batch, Columns.NEXT_OBS)
        rows = obs.shape[0]
        both = torch.cat([obs, next_obs])
        # One reparameterized policy sample per state, at s and s' in one pass.
        actions, logps = self.policy(both).rsample_and_logp(sample_shape=(1,))
        logged = batch[Columns.ACTIONS].reshape(rows, self.action_dim).float()
        logged_q = self._critic_values(self.critics, obs, logged.unsqueeze(0))[:, 0]
        # The value estimates train the critics only: the samples are held fixed there.
        next_critics = (
            self._target_critics
            if self.model_config.get("next_value_from_target")
            else self.critics
        )
        policy_q = self._critic_values(self.critics, obs, actions[:, :rows].detach())[:, 0]
        next_policy_q = self._critic_values(next_critics, next_obs, actions[:, rows:].detach())
        actor_q = self._critic_values(self.critics, obs, actions[:, :rows], detach_weights=True)
        return {
            LOGGED_Q: logged_q,
            POLICY_Q: policy_q,
            NEXT_POLICY_Q: next_policy_q[:, 0],
            POLICY_LOGP: logps[0, :rows].detach(),
            NEXT_POLICY_LOGP: logps[0, rows:].detach(),
            ACTOR_Q: actor_q[:, 0].min(dim=0).values,
            ACTOR_LOGP: logps[0, :rows],
        }
