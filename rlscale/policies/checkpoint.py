"""The greedy policy saved in an rlscale checkpoint, with its connectors, as an expert.

This package cannot read the checkpoint's marker (that is the platform's format, with the
experiment spec inside): the caller checks the checkpoint and hands over its folder. Here only
RLlib's own layout inside that folder is read. Ray and torch load when a policy is built, not on
import, so that importing ``rlscale.policies`` stays cheap for processes that never restore one.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlscale.errors import PolicyError
from rlscale.policies.base import Policy

MODULE_PATH = Path("learner_group") / "learner" / "rl_module" / "default_policy"
"""Where an rlscale (RLlib) checkpoint keeps the single-agent policy's RLModule."""
ENV_RUNNER_PATHS = (Path("env_runner"), Path("eval_env_runner"))
"""Where a checkpoint keeps the EnvRunner that acts in the env: the sampling one of online
algorithms, the evaluation one of offline algorithms (which sample nothing else)."""


@dataclass(frozen=True)
class CheckpointPolicy:
    """Greedy actions of the policy saved in an rlscale checkpoint (a factory, built per worker).

    ``checkpoint`` is the checkpoint folder, already checked by the caller (the platform's
    ``read_checkpoint``). Observations and actions go through the checkpoint's own EnvRunner
    connector pipelines, as in ``rlscale evaluate``: a policy trained on filtered observations
    (``MeanStdFilter``) sees them filtered with the saved statistics, and actions of a policy
    acting in [-1, 1] (``normalize_actions``) are mapped onto the env's bounds.
    """

    checkpoint: str | Path
    adjust_module: Callable[[Any], None] | None = None
    """Called with the restored RLModule before it acts: for example, to sample a diffusion
    policy with another sampler than the one it was trained to act with."""

    def __call__(self, observation_space: gym.Space, action_space: gym.Space) -> Policy:
        import torch
        from ray.rllib.core.columns import Columns
        from ray.rllib.env.single_agent_episode import SingleAgentEpisode

        module, env_to_module, module_to_env = _restore_policy(Path(self.checkpoint))
        if self.adjust_module is not None:
            self.adjust_module(module)

        def act(observation: Any, rng: np.random.Generator) -> Any:
            # A one-step episode: the pipelines read the newest observation from episodes.
            episode = SingleAgentEpisode(
                observations=[observation],
                observation_space=observation_space,
                action_space=action_space,
            )
            shared_data: dict = {}  # carries the episode order from one pipeline to the other
            with torch.no_grad():
                batch = env_to_module(
                    rl_module=module,
                    batch={},
                    episodes=[episode],
                    explore=False,
                    shared_data=shared_data,
                )
                batch = module_to_env(
                    rl_module=module,
                    batch=module.forward_inference(batch),
                    episodes=[episode],
                    explore=False,
                    shared_data=shared_data,
                )
            action = batch.get(Columns.ACTIONS_FOR_ENV, batch[Columns.ACTIONS])[0]
            if isinstance(action_space, gym.spaces.Discrete):
                return int(action)
            # A policy trained without RLlib's action clipping may still step past the bounds.
            return np.clip(action, action_space.low, action_space.high).astype(action_space.dtype)

        return act


def policy_runner_folder(checkpoint: Path) -> Path:
    """The folder of the EnvRunner whose connectors the checkpoint's policy acts through.

    Cheap (no Ray, no torch): callers check a checkpoint with it before anything starts.

    Raises:
        PolicyError: the checkpoint holds no single-agent RLModule or no EnvRunner state.
    """
    runner = next((checkpoint / p for p in ENV_RUNNER_PATHS if (checkpoint / p).is_dir()), None)
    if not (checkpoint / MODULE_PATH).is_dir() or runner is None:
        raise PolicyError(
            f"{checkpoint} holds no single-agent policy (its RLModule or EnvRunner is "
            "missing); pass a checkpoint folder written by `rlscale train` on a single-agent env."
        )
    return runner


MODULE_STATE_FILE = "module_state.pkl"
DAMAGED_STATE_ERRORS = (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError)
"""What unpickling a truncated, emptied or foreign saved state raises."""


def check_module_state(checkpoint: Path) -> None:
    """Unpickle the policy's saved weights (NumPy arrays: no torch, a fraction of a second), so
    that a truncated or emptied file is refused before Ray starts rather than in a worker.

    Raises:
        PolicyError: the weights file is missing or does not load.
    """
    state_file = checkpoint / MODULE_PATH / MODULE_STATE_FILE
    try:
        with state_file.open("rb") as file:
            pickle.load(file)  # noqa: S301 - rlscale's own checkpoint, which RLlib unpickles too
    except (OSError, *DAMAGED_STATE_ERRORS) as exc:
        raise PolicyError(
            f"checkpoint {checkpoint} is damaged: its policy weights ({state_file}) do not load "
            f"({type(exc).__name__}: {exc}). Use another of the run's checkpoints "
            "(checkpoints/iter_*) or train again."
        ) from None


def _restore_policy(checkpoint: Path):
    """(RLModule, env-to-module pipeline, module-to-env pipeline) saved in ``checkpoint``."""
    from ray.rllib.connectors.env_to_module import EnvToModulePipeline, MeanStdFilter
    from ray.rllib.connectors.module_to_env import ModuleToEnvPipeline
    from ray.rllib.core.rl_module.rl_module import RLModule

    runner = policy_runner_folder(checkpoint)
    try:
        module = RLModule.from_checkpoint(str(checkpoint / MODULE_PATH))
        env_to_module = EnvToModulePipeline.from_checkpoint(str(runner / "env_to_module_connector"))
        module_to_env = ModuleToEnvPipeline.from_checkpoint(str(runner / "module_to_env_connector"))
    except DAMAGED_STATE_ERRORS as exc:
        raise PolicyError(
            f"checkpoint {checkpoint} is damaged: a saved state does not load "
            f"({type(exc).__name__}: {exc}). Use another of the run's checkpoints "
            "(checkpoints/iter_*) or train again."
        ) from None
    module.eval()
    for piece in env_to_module.connectors:
        if isinstance(piece, MeanStdFilter):
            # Act with the saved statistics; RLlib has no public switch after building.
            piece._update_stats = False
    return module, env_to_module, module_to_env
