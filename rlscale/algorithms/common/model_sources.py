"""The checkpoint an algorithm takes a fitted model from (its ``model_checkpoint`` key).

``mpc`` plans with the dynamics model of a ``pets`` or ``sysid`` checkpoint and ``latent_mpc``
starts from the world model of a ``latent_mpc`` checkpoint; both check the checkpoint's marker
the same way before RLlib loads the module state it names (``RLModuleSpec.load_state_path``).
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "rlscale.json"
"""The marker every complete rlscale checkpoint holds (written by ``rlscale.platform.outputs``)."""
MODULE_PATH = Path("learner_group") / "learner" / "rl_module" / "default_policy"
"""Where an rlscale checkpoint keeps its (single-agent) RLModule."""


def model_source(
    checkpoint: str | Path, sources: tuple[str, ...], model: str, env_id: str | None
) -> Path:
    """The folder of a complete checkpoint of one of ``sources`` that fitted its ``model`` (the
    word for it in messages) on ``env_id`` (any env when None); a ValueError names what is
    wrong with any other path."""
    path = Path(checkpoint).expanduser()
    runs = " or ".join(sources)
    marker = path / MARKER
    if not marker.is_file():
        raise ValueError(
            f"model_checkpoint {path} is not a complete rlscale checkpoint (no {MARKER}); pass "
            f"the checkpoint_final (or checkpoints/iter_*) folder of a {runs} run"
        )
    try:
        trained = json.loads(marker.read_text())
        algorithm, trained_env = trained["algorithm"], trained["env"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{marker} is unreadable ({exc}); the checkpoint is damaged") from None
    if algorithm not in sources:
        raise ValueError(
            f"model_checkpoint {path} is a {algorithm} checkpoint; the {model} comes from a "
            f"{runs} checkpoint"
        )
    if env_id is not None and trained_env != env_id:
        raise ValueError(
            f"model_checkpoint {path} holds a {model} of {trained_env}, not of {env_id}; pass a "
            f"{algorithm} checkpoint trained on {env_id}, or train on {trained_env}"
        )
    return path
