"""Generative family: policies built on the shared generative modules (diffusion BC), trained
from Minari datasets like the offline family."""

from rlscale.algorithms.generative.diffusion_bc import (
    DiffusionBC,
    DiffusionBCConfig,
    DiffusionBCLearner,
    DiffusionBCModule,
)
from rlscale.algorithms.offline.bc import attach_bc_dataset
from rlscale.algorithms.registry import (
    AlgorithmEntry,
    Input,
    continuous_actions_only,
    register_algorithm,
    vector_observations_only,
)

__all__ = ["DiffusionBC", "DiffusionBCConfig", "DiffusionBCLearner", "DiffusionBCModule"]

register_algorithm(
    AlgorithmEntry(
        name="diffusion_bc",
        family="generative",
        summary="Behaviour cloning with a diffusion policy (DDPM training, DDIM sampling); "
        "Box actions",
        config_class=DiffusionBCConfig,
        space_checks=(continuous_actions_only, vector_observations_only),
        inputs=(Input.DATASET,),
        attach_dataset=attach_bc_dataset,
    )
)
