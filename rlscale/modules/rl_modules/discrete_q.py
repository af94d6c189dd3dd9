"""The discrete-action Q RLModule of DQN and discrete CQL, on rlscale's
:class:`~rlscale.modules.networks.q_network.QNetwork`.

It extends RLlib's ``DefaultDQNTorchRLModule``, so RLlib's ε-greedy exploration, its
``_forward_train`` (Q at s, the online net's Q at s' for double Q, the target net's Q at s') and
its DQN Learner (n-step targets, prioritized-replay TD errors, target-network updates) work
unchanged; only the network is rlscale's. The target network is a frozen copy of the whole
Q-network.

``model_config`` keys: ``hidden_sizes``, ``activation`` and RLlib's DQN keys ``dueling``,
``double_q``, ``epsilon``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.utils.schedules.scheduler import Scheduler

from rlscale.modules.networks.q_network import QNetwork
from rlscale.modules.networks.target import frozen_copy


class DiscreteQModule(DefaultDQNTorchRLModule):
    STATELESS = True
    """No recurrent state: the vectorized sampler may run it (see ``get_initial_state``)."""

    def setup(self) -> None:
        config = self.model_config
        self.uses_dueling = bool(config["dueling"])
        self.uses_double_q = bool(config["double_q"])
        self.num_atoms = 1
        self.epsilon_schedule = Scheduler(
            fixed_value_or_schedule=config["epsilon"], framework=self.framework
        )
        self.q_network = QNetwork(
            observation_dim=int(np.prod(self.observation_space.shape)),
            n_actions=int(self.action_space.n),
            hidden_sizes=tuple(config["hidden_sizes"]),
            dueling=self.uses_dueling,
            activation=config["activation"],
        )

    def get_non_inference_attributes(self) -> list[str]:
        return ["_target_q_network"]

    def make_target_networks(self) -> None:
        self._target_q_network = frozen_copy(self.q_network)

    def get_target_network_pairs(self) -> list[tuple[Any, Any]]:
        return [(self.q_network, self._target_q_network)]

    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {QF_PREDS: self.q_network(self._flat_observations(batch))}

    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {QF_PREDS: self._target_q_network(self._flat_observations(batch))}

    def get_initial_state(self) -> dict:
        # RLlib's DQN module would ask its catalog encoder, which this module does not build.
        return {}

    @staticmethod
    def _flat_observations(batch: dict[str, Any]) -> torch.Tensor:
        observations = batch[Columns.OBS]
        return observations.reshape(observations.shape[0], -1).float()
