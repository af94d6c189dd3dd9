"""Latent world models: the recurrent state-space model (RSSM) of PlaNet and Dreamer.

- ``rssm``: ``WorldModelSpec`` (sizes, latent kind, loss weights), ``WorldModel`` (``observe``
  filters real sequences, ``imagine`` / ``imagine_actions`` roll out in latent space, ``loss``
  trains it), ``LatentState``, ``ImaginedRollout``, ``WorldModelLoss``;
- ``encoders``: the MLP and conv encoders/decoders for vector and image observations, symlog.
"""

from rlscale.modules.world_models.encoders import symexp, symlog
from rlscale.modules.world_models.rssm import (
    LATENT_KINDS,
    ImaginedRollout,
    LatentState,
    WorldModel,
    WorldModelLoss,
    WorldModelSpec,
)

__all__ = [
    "LATENT_KINDS",
    "ImaginedRollout",
    "LatentState",
    "WorldModel",
    "WorldModelLoss",
    "WorldModelSpec",
    "symexp",
    "symlog",
]
