"""CQL for continuous actions: config and algorithm, Learner, RLModule."""

from rlscale.algorithms.offline.cql.config import CQL, CQLConfig
from rlscale.algorithms.offline.cql.learner import CQLLearner
from rlscale.algorithms.offline.cql.module import CQLModule

__all__ = ["CQL", "CQLConfig", "CQLLearner", "CQLModule"]
