"""The Algorithms of the policy-gradient family.

All three keep RLlib PPO's ``training_step``: sample ``train_batch_size_per_learner`` env steps,
run the Learner's update over them (``num_epochs`` × minibatches; A2C and TRPO: the whole batch
once), then sync the weights to the EnvRunners. What differs is the Learner (the update) and
the defaults, both chosen by the config.
"""

from __future__ import annotations

from ray.rllib.algorithms.ppo import PPO as RLlibPPO

from rlscale.algorithms.policy_gradient.config import A2CConfig, RlscalePPOConfig, TRPOConfig


class A2C(RLlibPPO):
    @classmethod
    def get_default_config(cls) -> A2CConfig:
        return A2CConfig()


class TRPO(RLlibPPO):
    @classmethod
    def get_default_config(cls) -> TRPOConfig:
        return TRPOConfig()


class PPO(RLlibPPO):
    @classmethod
    def get_default_config(cls) -> RlscalePPOConfig:
        return RlscalePPOConfig()
