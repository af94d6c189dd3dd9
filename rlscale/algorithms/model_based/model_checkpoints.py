"""A learned (or identified) dynamics model taken from a ``pets`` or ``sysid`` checkpoint.

``mpc`` can plan with such a model instead of the env's analytic one (``model_checkpoint``):
its RLModule is built with the checkpoint's model settings and RLlib loads the checkpoint's
module state into it (``RLModuleSpec.load_state_path``) before syncing it to the EnvRunners.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.rllib.core.rl_module.rl_module import RLModule

from rlscale.algorithms.common.model_sources import MODULE_PATH, model_source

MODEL_SOURCES = ("pets", "sysid")
"""Algorithms whose checkpoints hold a model ``mpc`` can plan with."""


@dataclass(frozen=True)
class LearnedModel:
    module_dir: Path
    model_config: dict[str, Any]
    """The checkpoint's PlanningModule settings; ``model`` and ``ensemble`` describe the model."""


def learned_model(checkpoint: str | Path, env_id: str) -> LearnedModel:
    """The model of a ``pets`` / ``sysid`` checkpoint trained on ``env_id``; a ValueError names
    what is wrong with any other path."""
    path = model_source(checkpoint, MODEL_SOURCES, "dynamics model", env_id)
    module_dir = path / MODULE_PATH
    return LearnedModel(module_dir, dict(RLModule.from_checkpoint(module_dir).model_config))
