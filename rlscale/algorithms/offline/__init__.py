"""Offline family: BC, CQL (continuous, SAC-based) and discrete CQL, from Minari datasets."""

from rlscale.algorithms.offline.bc import RlscaleBCConfig
from rlscale.algorithms.offline.cql import RlscaleCQLConfig
from rlscale.algorithms.offline.discrete_cql import DiscreteCQLConfig
from rlscale.algorithms.registry import (
    AlgorithmEntry,
    continuous_actions_only,
    discrete_actions_only,
    register_algorithm,
    vector_observations_only,
)

register_algorithm(
    AlgorithmEntry(
        name="bc",
        family="offline",
        summary="Behavior cloning from a Minari dataset (RLlib BC); discrete or continuous",
        config_class=RlscaleBCConfig,
        space_checks=(vector_observations_only,),
        offline=True,
    )
)
register_algorithm(
    AlgorithmEntry(
        name="cql",
        family="offline",
        summary="Conservative Q-learning from a Minari dataset (SAC-style actor); Box actions",
        config_class=RlscaleCQLConfig,
        space_checks=(continuous_actions_only, vector_observations_only),
        offline=True,
    )
)
register_algorithm(
    AlgorithmEntry(
        name="cql_discrete",
        family="offline",
        summary="Discrete conservative Q-learning (DQN + CQL regularizer) from a Minari dataset",
        config_class=DiscreteCQLConfig,
        space_checks=(discrete_actions_only, vector_observations_only),
        offline=True,
    )
)
