"""DAgger: dataset aggregation with an expert in the sampling loop (Ross, Gordon & Bagnell 2011,
"A Reduction of Imitation Learning and Structured Prediction to No-Regret Online Learning",
AISTATS, https://arxiv.org/abs/1011.0686, Algorithm 3.1).

Behaviour cloning trains on the states the expert visits and then acts in the states its own
mistakes lead to, where it has no data; errors compound over the horizon. DAgger collects
labels where the learner goes:

1. round ``i`` rolls out the mixture ``pi_i = beta_i pi* + (1 - beta_i) pi_hat_i``: at every
   step, with probability ``beta_i`` the expert ``pi*`` acts, otherwise the learner's current
   greedy policy ``pi_hat_i`` does. ``beta_1 = 1`` (the first round is the expert's own
   rollouts) and, by default, ``beta`` decays linearly to 0 over ``beta_decay_iterations``
   rounds (``beta_schedule="linear"``; ``"exponential"`` is ``beta_i = p^(i-1)``, the paper's
   other example);
2. the expert labels *every* visited state with its action, whoever acted;
3. the labelled states join the aggregate data set, which only grows (``aggregate_capacity``
   bounds it, dropping the oldest rows, for very long runs);
4. the Learner trains the policy by maximum likelihood of the expert's labels on minibatches of
   the whole aggregate (behaviour cloning on ``D = D_1 u ... u D_i``).

On RLlib: the EnvRunners' inference-only :class:`DAggerModule` carries the expert (built on the
EnvRunner from its name: a scripted controller or a checkpoint) and does steps 1-2 in its
exploration forward pass, returning the expert's label beside the action it takes; RLlib stores
the label in the episode's extra model outputs. The driver's training step sets ``beta`` on the
EnvRunners, samples, moves the labels into the aggregate and runs the Learner on it. Greedy
evaluation (``rlscale evaluate``) is the learner's policy alone.
"""

from rlscale.algorithms.imitation.dagger.aggregate import AGGREGATE_COLUMNS, LabelledStates
from rlscale.algorithms.imitation.dagger.algorithm import (
    AGGREGATE_SIZE,
    AGGREGATE_STATE,
    BETA,
    EXPERT_LABELS,
    EXPERT_LABELS_LIFETIME,
    DAgger,
)
from rlscale.algorithms.imitation.dagger.config import BETA_SCHEDULES, DAggerConfig
from rlscale.algorithms.imitation.dagger.module import EXPERT_ACTIONS, DAggerModule

__all__ = [
    "AGGREGATE_COLUMNS",
    "AGGREGATE_SIZE",
    "AGGREGATE_STATE",
    "BETA",
    "BETA_SCHEDULES",
    "EXPERT_ACTIONS",
    "EXPERT_LABELS",
    "EXPERT_LABELS_LIFETIME",
    "DAgger",
    "DAggerConfig",
    "DAggerModule",
    "LabelledStates",
]
