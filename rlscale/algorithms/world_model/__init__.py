"""World-model family: a latent state-space model (rlscale.modules.world_models) learned from
replayed sequences, online or from a Minari dataset, and used to plan (``latent_mpc``) or to
learn a policy in imagination (``dreamer``)."""

from rlscale.algorithms.common.offline import attach_in_memory_dataset
from rlscale.algorithms.registry import (
    AlgorithmEntry,
    Input,
    continuous_actions_only,
    register_algorithm,
)
from rlscale.algorithms.world_model.dreamer import DreamerConfig
from rlscale.algorithms.world_model.dreamer.config import (
    attach_dataset,
    vector_or_image_observations,
)
from rlscale.algorithms.world_model.latent_mpc import LatentMPC, LatentMPCConfig

__all__ = ["DreamerConfig", "LatentMPC", "LatentMPCConfig"]

# --- latent_mpc (PlaNet) ----------------------------------------------------------------------

register_algorithm(
    AlgorithmEntry(
        name="latent_mpc",
        family="world_model",
        summary="PlaNet: CEM planning in a latent world model fitted online or from a dataset",
        config_class=LatentMPCConfig,
        space_checks=(continuous_actions_only, vector_or_image_observations),
        optional_inputs=(Input.DATASET,),
        attach_dataset=attach_in_memory_dataset,
    )
)

# --- dreamer ----------------------------------------------------------------------------------

register_algorithm(
    AlgorithmEntry(
        name="dreamer",
        family="world_model",
        summary="Dreamer: an RSSM world model and an actor-critic learned in its imagination",
        config_class=DreamerConfig,
        space_checks=(continuous_actions_only, vector_or_image_observations),
        optional_inputs=(Input.DATASET,),
        attach_dataset=attach_dataset,
    )
)
