"""DAgger's RLModule: BC's standardized network that, on EnvRunners, mixes in and asks the
expert."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns

from rlscale.algorithms.offline.bc import StandardizedBCModule
from rlscale.policies import named_policy

EXPERT_ACTIONS = "expert_actions"
"""The expert's label of each visited state: an extra model output of the exploration pass."""


class DAggerModule(StandardizedBCModule):
    """BC's network, standardized with the aggregate's statistics (``standardize``; the
    algorithm sets them every round); on EnvRunners, the exploration pass mixes in and asks
    the expert.

    ``_forward_exploration`` returns the action taken (the expert's with probability
    ``beta``, else the learner's greedy one) and, under ``EXPERT_ACTIONS``, the expert's
    action in every row. The expert is built on first use, so a module that never explores
    (the Learner's, or one restored to evaluate) never loads it.
    """

    def setup(self) -> None:
        super().setup()
        self.beta = 1.0
        self._expert = None
        self._rng = np.random.default_rng(self.model_config.get("mixing_seed"))

    def set_beta(self, beta: float) -> None:
        self.beta = float(beta)

    def seed_mixing(self, seed: int | None, runner_index: int) -> None:
        """Give this EnvRunner's copy its own stream of expert-or-learner draws: every copy
        starts from the same ``mixing_seed``, so without this all runners would make the same
        choices at the same steps."""
        self._rng = np.random.default_rng(None if seed is None else [seed, runner_index])

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        output = self._forward(batch)
        learner_actions = self._greedy_actions(output[Columns.ACTION_DIST_INPUTS])
        expert_actions = self._expert_actions(batch[Columns.OBS])
        expert_acts = torch.as_tensor(self._rng.random(len(expert_actions)) < self.beta)
        expert_actions = expert_actions.to(learner_actions)
        mask = expert_acts.reshape(-1, *(1,) * (learner_actions.dim() - 1))
        output[Columns.ACTIONS] = torch.where(mask, expert_actions, learner_actions)
        output[EXPERT_ACTIONS] = expert_actions
        return output

    def _greedy_actions(self, action_dist_inputs: torch.Tensor) -> torch.Tensor:
        distribution = self.get_inference_action_dist_cls().from_logits(action_dist_inputs)
        return distribution.to_deterministic().sample()

    def _expert_actions(self, observations: torch.Tensor) -> torch.Tensor:
        if self._expert is None:
            expert = self.model_config.get("expert")
            if not expert:
                raise ValueError("this DAgger module has no expert to explore with")
            self._expert = named_policy(expert)(self.observation_space, self.action_space)
        rows = observations.detach().cpu().numpy()
        return torch.as_tensor(np.stack([np.asarray(self._expert(row, self._rng)) for row in rows]))
