"""A learned (or identified) dynamics model taken from a ``pets`` or ``sysid`` checkpoint.

``mpc`` can plan with such a model instead of the env's analytic one (``model_checkpoint``):
its RLModule is built with the checkpoint's model settings and RLlib loads the checkpoint's
module state into it (``RLModuleSpec.load_state_path``) before syncing it to the EnvRunners.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.rllib.core.rl_module.rl_module import RLModule

MODEL_SOURCES = ("pets", "sysid")
"""Algorithms whose checkpoints hold a model ``mpc`` can plan with."""
MARKER = "rlscale.json"
"""The marker every complete rlscale checkpoint holds (written by ``rlscale.platform.outputs``)."""
MODULE_PATH = Path("learner_group") / "learner" / "rl_module" / "default_policy"
"""Where an rlscale checkpoint keeps its (single-agent) RLModule."""


@dataclass(frozen=True)
class LearnedModel:
    module_dir: Path
    model_config: dict[str, Any]
    """The checkpoint's PlanningModule settings; ``model`` and ``ensemble`` describe the model."""


def learned_model(checkpoint: str | Path, env_id: str) -> LearnedModel:
    """The model of a ``pets`` / ``sysid`` checkpoint trained on ``env_id``; a ValueError names
    what is wrong with any other path."""
    path = Path(checkpoint).expanduser()
    marker = path / MARKER
    if not marker.is_file():
        raise ValueError(
            f"model_checkpoint {path} is not a complete rlscale checkpoint (no {MARKER}); pass "
            "the checkpoint_final (or checkpoints/iter_*) folder of a pets or sysid run"
        )
    try:
        trained = json.loads(marker.read_text())
        algorithm, trained_env = trained["algorithm"], trained["env"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{marker} is unreadable ({exc}); the checkpoint is damaged") from None
    if algorithm not in MODEL_SOURCES:
        raise ValueError(
            f"model_checkpoint {path} is a {algorithm} checkpoint; mpc plans with the model of "
            f"a {' or '.join(MODEL_SOURCES)} checkpoint"
        )
    if trained_env != env_id:
        raise ValueError(
            f"model_checkpoint {path} modelled {trained_env}, not {env_id}; pass a "
            f"{algorithm} checkpoint trained on {env_id}"
        )
    module_dir = path / MODULE_PATH
    return LearnedModel(module_dir, dict(RLModule.from_checkpoint(module_dir).model_config))
