"""SAC: soft actor-critic for Box actions: RLlib's SAC algorithm and config, with rlscale's
SAC-style module, a flat transition replay, and this file's training step and Learner.

Haarnoja, Zhou, Hartikainen, Tucker, Ha, Tan, Kumar, Zhu, Gupta, Abbeel, Levine 2018, "Soft
Actor-Critic Algorithms and Applications", https://arxiv.org/abs/1812.05905. With twin critics
Q_1, Q_2, their Polyak-averaged targets Q'_i, a tanh-squashed Gaussian policy π and a temperature
α, each minibatch of replayed transitions (s, a, r, s', d) gives

    y      = r + γ (1 − d) (min_i Q'_i(s', a') − α log π(a'|s')),   a' ~ π(s')
    L(Q)   = Σ_i E[(Q_i(s, a) − y)²]
    L(π)   = E[α log π(ã|s) − min_i Q_i(s, ã)],                     ã ~ π(s) (reparameterized)
    L(α)   = E[−log α (log π(ã|s) + H̄)],                            H̄ = −|A| (target entropy)
    Q'_i  <- (1 − τ) Q'_i + τ Q_i                                    after every gradient step

The three losses are summed for one backward pass: the module detaches what each must not move
(the critics' weights in L(π), the policy in L(α)), and each of three Adam optimizers steps its
own parameters at its own learning rate (``actor_lr``, ``critic_lr``, ``alpha_lr``).

Each ``training_step`` samples ``rollout_fragment_length`` env steps into a uniform replay of
flat transitions, then, once ``num_steps_sampled_before_learning_starts`` env steps were
sampled, runs as many updates as ``training_intensity`` asks (replayed transitions per sampled
one: 256 = one update of 256 per env step). Until then the EnvRunners act uniformly at random
in the action bounds, as RL-Zoo's SAC does. Evaluation (``explore=False``) acts with the
policy's mean, tanh(mean).

:class:`SACLearner` is also the base of CQL's (``rlscale.algorithms.offline.cql``): the actor
and temperature losses, the TD target, the optimizers and the Polyak update are written here
once; CQL adds its conservative term and a behavior-cloning warm-up.
"""

from rlscale.algorithms.value_based.sac.config import (
    SAC,
    UNIFORM_REPLAY,
    SACConfig,
    soft_actor_critic_model_config,
)
from rlscale.algorithms.value_based.sac.learner import ALPHA_KEY, TD_LOSS_KEY, SACLearner
from rlscale.algorithms.value_based.sac.module import (
    LOGP_ACTOR,
    LOGP_NEXT,
    Q_ACTOR,
    Q_LOGGED,
    Q_TARGET_NEXT,
    SACTrainModule,
)

__all__ = [
    "ALPHA_KEY",
    "LOGP_ACTOR",
    "LOGP_NEXT",
    "Q_ACTOR",
    "Q_LOGGED",
    "Q_TARGET_NEXT",
    "SAC",
    "TD_LOSS_KEY",
    "UNIFORM_REPLAY",
    "SACConfig",
    "SACLearner",
    "SACTrainModule",
    "soft_actor_critic_model_config",
]
