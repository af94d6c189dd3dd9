"""What the vector path handles: the spaces, connector pipelines, callbacks and modules it
takes the place of RLlib's runner for, decided at config time (``vector_sampling_problem``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.bc.torch.default_bc_torch_rl_module import DefaultBCTorchRLModule
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.connectors.env_to_module import (
    AddObservationsFromEpisodesToBatch,
    AddStatesFromEpisodesToBatch,
    AddTimeDimToBatchAndZeroPad,
    BatchIndividualItems,
    MeanStdFilter,
    NumpyToTensor,
)
from ray.rllib.connectors.module_to_env import (
    GetActions,
    ListifyDataForVectorEnv,
    NormalizeAndClipActions,
    RemoveSingleTsTimeRankFromBatch,
    TensorToNumpy,
    UnBatchToIndividualItems,
)
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.env import INPUT_ENV_SINGLE_SPACES

RLLIB_RUNNER = "RLlib's SingleAgentEnvRunner"
VECTOR_RUNNER = "rlscale's VectorEnvRunner"

DEFAULT_ENV_TO_MODULE = (
    AddObservationsFromEpisodesToBatch,
    AddTimeDimToBatchAndZeroPad,
    AddStatesFromEpisodesToBatch,
    BatchIndividualItems,
    NumpyToTensor,
)
"""RLlib's default env-to-module pieces (single agent): for a stateless module they amount to
"the latest observation of every env, batched, as a tensor"."""
DEFAULT_MODULE_TO_ENV = (
    GetActions,
    TensorToNumpy,
    UnBatchToIndividualItems,
    RemoveSingleTsTimeRankFromBatch,
    NormalizeAndClipActions,
    ListifyDataForVectorEnv,
)
"""RLlib's default module-to-env pieces (single agent)."""
EPISODE_HOOKS = ("on_episode_created", "on_episode_start", "on_episode_step", "on_episode_end")
"""Callbacks that need an episode object per step; the vector path builds them once per call."""
MAX_LOOKBACK = 1
"""Largest ``episode_lookback_horizon`` handled (RLlib's default is 1)."""


# --- what the vector path handles -------------------------------------------------------


def spaces_problem(observation_space: gym.Space, action_space: gym.Space) -> str | None:
    """Why these single-agent spaces are not for the vector path, or None."""
    if not isinstance(observation_space, gym.spaces.Box | gym.spaces.Discrete):
        return f"its observation space is {observation_space} (Box or Discrete only)"
    if isinstance(action_space, gym.spaces.Box):
        if not np.issubdtype(action_space.dtype, np.floating):
            return f"its Box action space has dtype {action_space.dtype} (float only)"
    elif not isinstance(action_space, gym.spaces.Discrete):
        return f"its action space is {action_space} (Box or Discrete only)"
    return None


def pipelines_problem(env_to_module: Any, module_to_env: Any) -> str | None:
    """Why these connector pipelines hold a piece the vector path does not reproduce, or None.

    Known: RLlib's default pieces, and one ``MeanStdFilter`` in front of them.
    """
    pieces = list(getattr(env_to_module, "connectors", []))
    if pieces and type(pieces[0]) is MeanStdFilter:
        pieces = pieces[1:]
    unknown = [p for p in pieces if type(p) not in DEFAULT_ENV_TO_MODULE]
    unknown += [
        p for p in getattr(module_to_env, "connectors", []) if type(p) not in DEFAULT_MODULE_TO_ENV
    ]
    if unknown:
        names = ", ".join(sorted({type(p).__name__ for p in unknown}))
        return f"its connector pipelines hold pieces it does not know ({names})"
    if not any(type(p) is AddObservationsFromEpisodesToBatch for p in pieces):
        return "its env-to-module pipeline has no default pieces"
    if not any(type(p) is GetActions for p in module_to_env.connectors):
        return "its module-to-env pipeline has no default pieces"
    return None


def callbacks_problem(config: Any) -> str | None:
    """Why the config's callbacks need RLlib's per-step episodes, or None."""
    classes = config.callbacks_class
    for klass in classes if isinstance(classes, list | tuple) else [classes]:
        for hook in EPISODE_HOOKS:
            if getattr(klass, hook, None) is not getattr(RLlibCallback, hook):
                return f"its callbacks ({klass.__name__}) implement {hook}"
    for hook in EPISODE_HOOKS:
        if getattr(config, f"callbacks_{hook}", None):
            return f"the config sets callbacks_{hook}"
    return None


def vector_sampling_problem(config: Any, spaces: tuple[gym.Space, gym.Space] | None) -> str | None:
    """Why ``config`` keeps RLlib's runner (None: the vector path applies).

    ``spaces``: the env's single-agent (observation, action) spaces when known; the connector
    pipelines are then built and checked too. What only the runner can know (the env's autoreset
    mode, a module that turns out stateful) is checked again when it starts.
    """
    if not getattr(config, "vector_sampling", False):
        return "vector_sampling is off"
    if config.is_multi_agent:
        return "it is multi-agent"
    if not config.enable_env_runner_and_connector_v2:
        return "it runs on RLlib's old API stack"
    if config.output:
        return "it records its samples (config.output): RLlib's offline runner does that"
    if config.remote_worker_envs:
        return "its sub-environments run as remote actors"
    if config._env_to_module_connector is not None or config._module_to_env_connector is not None:
        return "it adds its own env-to-module or module-to-env connectors"
    if config.episode_lookback_horizon > MAX_LOOKBACK:
        return f"its episode_lookback_horizon is {config.episode_lookback_horizon} (at most 1)"
    if not config.episodes_to_numpy:
        return "it keeps episodes as lists (episodes_to_numpy=False)"
    if config.model_config.get("use_lstm") or config.model_config.get("use_attention"):
        return "its module is recurrent"
    module_class = _module_class(config)
    if (
        module_class is not None
        and _overrides(module_class, "get_initial_state")
        and not getattr(module_class, "STATELESS", False)
    ):
        # Building the module to ask is_stateful() costs more than a config should; the runner
        # asks once it has its module, and this errs on RLlib's side. A module class whose
        # get_initial_state only returns no state says so with STATELESS = True.
        return f"its module ({module_class.__name__}) defines get_initial_state (may be stateful)"
    problem = callbacks_problem(config)
    if problem or spaces is None:
        return problem
    problem = spaces_problem(*spaces)
    if problem:
        return problem
    built = {INPUT_ENV_SINGLE_SPACES: spaces}
    return pipelines_problem(
        config.build_env_to_module_connector(env=None, spaces=built, device=None),
        config.build_module_to_env_connector(env=None, spaces=built),
    )


def _module_class(config: Any) -> type | None:
    try:
        return config.rl_module_spec.module_class
    except Exception:  # noqa: BLE001 - a spec RLlib cannot build yet: the runner checks later
        return None


STATE_FROM_CATALOG_ENCODER = (DefaultBCTorchRLModule,)
"""RLlib modules whose ``get_initial_state`` only passes on their catalog-built encoder's, which
is recurrent only with ``use_lstm`` / ``use_attention`` (refused before the module is asked)."""


def _overrides(klass: type, method: str) -> bool:
    """Whether ``klass`` has its own ``method`` (not RLModule's, nor one of the catalog
    modules')."""
    own = getattr(klass, method, None)
    inherited = (RLModule, *STATE_FROM_CATALOG_ENCODER)
    return all(own is not getattr(base, method) for base in inherited)
