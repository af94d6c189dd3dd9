"""Offline family: BC, CQL (continuous, SAC-based) and discrete CQL, from Minari datasets."""

from rlscale.algorithms.offline.bc import BC, BCConfig, attach_bc_dataset
from rlscale.algorithms.offline.cql import CQL, CQLConfig, CQLLearner, CQLModule
from rlscale.algorithms.offline.cql_discrete import (
    DiscreteCQL,
    DiscreteCQLConfig,
    DiscreteCQLLearner,
)
from rlscale.algorithms.registry import (
    AlgorithmEntry,
    Input,
    continuous_actions_only,
    discrete_actions_only,
    register_algorithm,
    vector_observations_only,
)

__all__ = [
    "BC",
    "CQL",
    "BCConfig",
    "CQLConfig",
    "CQLLearner",
    "CQLModule",
    "DiscreteCQL",
    "DiscreteCQLConfig",
    "DiscreteCQLLearner",
]

register_algorithm(
    AlgorithmEntry(
        name="bc",
        family="offline",
        summary="Behavior cloning from a Minari dataset (RLlib BC); discrete or continuous",
        config_class=BCConfig,
        space_checks=(vector_observations_only,),
        inputs=(Input.DATASET,),
        attach_dataset=attach_bc_dataset,
    )
)
register_algorithm(
    AlgorithmEntry(
        name="cql",
        family="offline",
        summary="Conservative Q-learning from a Minari dataset (SAC-style actor); Box actions",
        config_class=CQLConfig,
        space_checks=(continuous_actions_only, vector_observations_only),
        inputs=(Input.DATASET,),
    )
)
register_algorithm(
    AlgorithmEntry(
        name="cql_discrete",
        family="offline",
        summary="Discrete conservative Q-learning (DQN + CQL regularizer) from a Minari dataset",
        config_class=DiscreteCQLConfig,
        space_checks=(discrete_actions_only, vector_observations_only),
        inputs=(Input.DATASET,),
    )
)
