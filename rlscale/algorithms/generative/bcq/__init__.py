"""BCQ for continuous actions: config and algorithm, Learner, RLModule."""

from rlscale.algorithms.generative.bcq.config import BCQ, BCQConfig
from rlscale.algorithms.generative.bcq.learner import BCQLearner
from rlscale.algorithms.generative.bcq.module import BCQModule

__all__ = ["BCQ", "BCQConfig", "BCQLearner", "BCQModule"]
