"""A fitted world model taken from an earlier run's checkpoint (``model_checkpoint``).

``latent_mpc`` can start from the world model of a ``latent_mpc`` checkpoint: its RLModule is
built with the checkpoint's ``world_model`` sizes and RLlib loads the checkpoint's module state
into it (``RLModuleSpec.load_state_path``). A world model only fits the observation and action
spaces it was trained on, so a checkpoint of another env, or of the same env with other spaces
(pixels instead of vectors, another image size), is refused naming both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.algorithms.common.model_sources import MODULE_PATH, model_source

MODEL_SOURCES = ("latent_mpc",)
"""Algorithms whose checkpoints hold a world model ``latent_mpc`` can start from."""


@dataclass(frozen=True)
class WorldModelSource:
    module_dir: Path
    world_model: dict[str, Any]
    """The checkpoint's ``world_model`` overrides (its sizes)."""
    observation_shape: tuple[int, ...]
    action_shape: tuple[int, ...]


def world_model_source(checkpoint: str | Path, env_id: str | None) -> WorldModelSource:
    """The world model of a ``latent_mpc`` checkpoint trained on ``env_id``; a ValueError
    names what is wrong with any other path."""
    path = model_source(checkpoint, MODEL_SOURCES, "world model", env_id)
    module_dir = path / MODULE_PATH
    metadata = _module_metadata(module_dir)
    return WorldModelSource(module_dir, *metadata)


def _module_metadata(module_dir: Path) -> tuple[dict[str, Any], tuple[int, ...], tuple[int, ...]]:
    from ray.rllib.core.rl_module.rl_module import RLModule

    try:
        module = RLModule.from_checkpoint(module_dir)
    except Exception as exc:  # a truncated or missing module state: RLlib raises many kinds
        raise ValueError(
            f"cannot read the world model in {module_dir}: {type(exc).__name__}: {exc}; the "
            "checkpoint is damaged"
        ) from None
    world_model = dict(module.model_config.get("world_model", {}))
    observation_shape = tuple(int(n) for n in module.observation_space.shape)
    action_shape = tuple(int(n) for n in np.atleast_1d(module.action_space.shape))
    return world_model, observation_shape, action_shape


def space_mismatch(
    source: WorldModelSource, observation_shape: tuple[int, ...], action_shape: tuple[int, ...]
) -> str | None:
    """Why the checkpoint's world model cannot act on these spaces, or None."""
    if source.observation_shape != tuple(observation_shape):
        return (
            f"its world model was trained on observations of shape {source.observation_shape}, "
            f"and this env's are {tuple(observation_shape)}"
        )
    if source.action_shape != tuple(action_shape):
        return (
            f"its world model was trained on actions of shape {source.action_shape}, and this "
            f"env's are {tuple(action_shape)}"
        )
    return None
