"""Generative family: policies built on the shared generative modules (diffusion BC,
Diffusion-QL, BCQ and discrete BCQ), trained from Minari datasets like the offline family."""

from rlscale.algorithms.generative.bcq import BCQ, BCQConfig, BCQLearner, BCQModule
from rlscale.algorithms.generative.bcq_discrete import (
    DiscreteBCQ,
    DiscreteBCQConfig,
    DiscreteBCQLearner,
    DiscreteBCQModule,
)
from rlscale.algorithms.generative.diffusion_bc import (
    DiffusionBC,
    DiffusionBCConfig,
    DiffusionBCLearner,
    DiffusionBCModule,
)
from rlscale.algorithms.generative.diffusion_ql import (
    DiffusionQL,
    DiffusionQLConfig,
    DiffusionQLLearner,
    DiffusionQLModule,
)
from rlscale.algorithms.offline.bc import attach_standardized_dataset
from rlscale.algorithms.registry import (
    AlgorithmEntry,
    Input,
    continuous_actions_only,
    discrete_actions_only,
    register_algorithm,
    vector_observations_only,
)

__all__ = [
    "BCQ",
    "BCQConfig",
    "BCQLearner",
    "BCQModule",
    "DiffusionBC",
    "DiffusionBCConfig",
    "DiffusionBCLearner",
    "DiffusionBCModule",
    "DiffusionQL",
    "DiffusionQLConfig",
    "DiffusionQLLearner",
    "DiffusionQLModule",
    "DiscreteBCQ",
    "DiscreteBCQConfig",
    "DiscreteBCQLearner",
    "DiscreteBCQModule",
]

register_algorithm(
    AlgorithmEntry(
        name="diffusion_bc",
        family="generative",
        summary="Behaviour cloning with a diffusion policy (DDPM training, DDIM sampling); "
        "Box actions",
        config_class=DiffusionBCConfig,
        space_checks=(continuous_actions_only, vector_observations_only),
        inputs=(Input.DATASET,),
        attach_dataset=attach_standardized_dataset,
    )
)

# Diffusion-QL: RLlib's offline input (the dataset streamed through Ray Data), as cql, plus the
# dataset's observation statistics (``standardize``), which attach_standardized_dataset computes.
register_algorithm(
    AlgorithmEntry(
        name="diffusion_ql",
        family="generative",
        summary="Diffusion-QL: a diffusion policy trained by cloning plus a Q term through its "
        "reverse chain, twin critics; Box actions",
        config_class=DiffusionQLConfig,
        space_checks=(continuous_actions_only, vector_observations_only),
        inputs=(Input.DATASET,),
        attach_dataset=attach_standardized_dataset,
    )
)

# BCQ and discrete BCQ: RLlib's offline input (the dataset streamed through Ray Data), as cql.
register_algorithm(
    AlgorithmEntry(
        name="bcq",
        family="generative",
        summary="Batch-constrained Q-learning: VAE action proposals, bounded perturbation, "
        "twin critics; Box actions",
        config_class=BCQConfig,
        space_checks=(continuous_actions_only, vector_observations_only),
        inputs=(Input.DATASET,),
    )
)
register_algorithm(
    AlgorithmEntry(
        name="bcq_discrete",
        family="generative",
        summary="Discrete batch-constrained Q-learning: DQN over the actions a behaviour-cloning "
        "model allows (threshold τ); Discrete actions",
        config_class=DiscreteBCQConfig,
        space_checks=(discrete_actions_only, vector_observations_only),
        inputs=(Input.DATASET,),
    )
)
