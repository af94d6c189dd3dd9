"""DQN: RLlib's own DQN (double Q, dueling) with rlscale's defaults for small vector tasks."""

from __future__ import annotations

from ray.rllib.algorithms.dqn import DQNConfig


class RlscaleDQNConfig(DQNConfig):
    """DQNConfig whose defaults are rlscale's."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class)
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 1
        self.lr = 5e-4
        self.n_step = 3
        self.epsilon = [(0, 1.0), (10_000, 0.02)]
        self.target_network_update_freq = 500
        self.train_batch_size_per_learner = 64
