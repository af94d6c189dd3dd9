"""What every rlscale algorithm config shares: its own keys, action-space defaults, network width.

Every config class puts :class:`RlscaleConfigMixin` first among its bases, before the RLlib
config it extends (``class PPOConfig(RlscaleConfigMixin, RLlibPPOConfig)``). The mixin gives
three guarantees, so that ``XConfig()`` in Python, ``rlscale train x`` and a sweep run the same
thing:

- **rlscale's own keys are accepted by** ``.training()``. A config names them in
  ``RLSCALE_KEYS`` (e.g. TRPO's ``max_kl``); ``XConfig().training(max_kl=0.05)`` sets them like
  RLlib's own keys.
- **Defaults that depend on the action space are applied by the config itself**, when it learns
  its action space from ``.environment(...)``. ``__init__`` holds every default once;
  ``DISCRETE_DEFAULTS`` / ``CONTINUOUS_DEFAULTS`` hold only the values that differ for that kind
  of action space. They never replace a key the user set (through ``.training()``,
  ``update_from_dict`` or by assigning it a value other than its default).
- **One name for network width**: ``hidden_sizes`` (layer widths) and ``activation``, config
  attributes of every algorithm with an MLP, handed to the RLModule in ``model_config``.
  RLlib's own names, ``model_config={"fcnet_hiddens": [...], "fcnet_activation": ...}``, still
  work: given explicitly they win, as any explicit ``model_config`` key does.

It also picks the EnvRunner: rlscale's vectorized one
(:class:`rlscale.algorithms.common.vector_env_runner.VectorEnvRunner`) wherever it applies
(``vector_sampling``, on by default: a single-agent env with Box or Discrete observations and
actions, RLlib's default connectors with at most an observation filter, a stateless module),
RLlib's ``SingleAgentEnvRunner`` otherwise, and any runner class the config names itself.
``config.sampling_runner()`` says which and why.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any, ClassVar

import gymnasium as gym
from ray.rllib.algorithms.algorithm_config import NotProvided

from rlscale.envs import EnvInfo, resolve_env
from rlscale.envs.rllib import RLLIB_ENV_PREFIX
from rlscale.errors import UnknownEnvironmentError

NETWORK_KEYS = ("hidden_sizes", "activation")
"""Config attributes that shape the MLPs; every algorithm with a network has both."""
RLLIB_NETWORK_KEYS = {"fcnet_hiddens": "hidden_sizes", "fcnet_activation": "activation"}
"""RLlib's ``model_config`` names for the same facts -> rlscale's names."""


_WHICH_ENV_KEYS = {"env_config", "observation_space", "action_space"}
"""``environment()`` arguments that say which env it is, not how to act in it."""


def hidden_sizes_problem(hidden_sizes: Any) -> str | None:
    """Why ``hidden_sizes`` is not a list of positive layer widths, or None."""
    if isinstance(hidden_sizes, list | tuple) and all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in hidden_sizes
    ):
        return None
    return (
        f"hidden_sizes must be a list of positive layer widths, such as [64, 64], got "
        f"{hidden_sizes!r}"
    )


COUNT_KEYS = ("train_batch_size_per_learner", "minibatch_size", "num_epochs")
"""RLlib keys that count something (rows, passes) and must be at least 1 when set."""


def common_range_problem(config: Any) -> str | None:
    """Why one of the keys most algorithms share is out of range, or None: a learning rate
    (when a number, not a schedule) must be finite and positive, the discount lie in [0, 1],
    and the counts of :data:`COUNT_KEYS` be at least 1. RLlib accepts all of these silently
    and fails, or trains nothing, much later."""
    lr = getattr(config, "lr", None)
    if _is_number(lr) and not (math.isfinite(lr) and lr > 0):
        return f"lr must be a positive learning rate, such as 3e-4, got {lr!r}"
    gamma = getattr(config, "gamma", None)
    if _is_number(gamma) and not 0 <= gamma <= 1:
        return f"gamma must be a discount in [0, 1], such as 0.99, got {gamma!r}"
    for key in COUNT_KEYS:
        value = getattr(config, key, None)
        if _is_number(value) and value < 1:
            return f"{key} must be at least 1, got {value!r}"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RlscaleConfigMixin:
    """Put first among a config's bases; see the module docstring."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = ("vector_sampling",)
    """rlscale's own config attributes on this class (RLlib's are accepted anyway; the network
    keys, ``NETWORK_KEYS``, are added wherever the config has them)."""
    DISCRETE_DEFAULTS: ClassVar[dict[str, Any]] = {}
    """Values that differ from ``__init__``'s for a Discrete action space."""
    CONTINUOUS_DEFAULTS: ClassVar[dict[str, Any]] = {}
    """Values that differ from ``__init__``'s for a Box action space."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Keys the user set explicitly, and keys last set by the action-space defaults; sorted
        # tuples, so that RLlib's copy(), pickling and a JSON dump of to_dict() carry them.
        self._rlscale_user_keys: tuple[str, ...] = ()
        self._rlscale_space_keys: tuple[str, ...] = ()
        # Sample with rlscale's VectorEnvRunner wherever it applies (see sampling_runner()).
        self.vector_sampling = True

    @property
    def env_runner_cls(self) -> type | None:
        """RLlib's key: the EnvRunner class. One the config names wins; else rlscale's
        VectorEnvRunner where it applies, else None (RLlib's own choice)."""
        named = self.__dict__.get("_rlscale_env_runner_cls")
        if named is not None or self.vector_sampling_problem() is not None:
            return named
        from rlscale.algorithms.common.vector_env_runner import VectorEnvRunner

        return VectorEnvRunner

    @env_runner_cls.setter
    def env_runner_cls(self, value: type | None) -> None:
        self._rlscale_env_runner_cls = value

    def vector_sampling_problem(self) -> str | None:
        """Why this config samples with RLlib's runner instead of the vectorized one, or None."""
        from rlscale.algorithms.common.vector_env_runner import vector_sampling_problem

        return vector_sampling_problem(self, self._single_agent_spaces())

    def sampling_runner(self) -> str:
        """Which EnvRunner samples, in words (``rlscale train --verbose`` prints it)."""
        from rlscale.algorithms.common.vector_env_runner import RLLIB_RUNNER, VECTOR_RUNNER

        named = self.__dict__.get("_rlscale_env_runner_cls")
        if named is not None:
            return f"{named.__name__} (named by the config)"
        problem = self.vector_sampling_problem()
        if problem is None:
            return f"{VECTOR_RUNNER} (one batched forward pass per vector-env step)"
        return f"{RLLIB_RUNNER}, because {problem}"

    def _single_agent_spaces(self) -> tuple[gym.Space, gym.Space] | None:
        """(observation, action) spaces of one agent, when the config knows them up front."""
        spaces = (getattr(self, "observation_space", None), getattr(self, "action_space", None))
        if all(space is not None for space in spaces):
            return spaces
        return _spaces_of(self.env, self.env_config)

    def rlscale_keys(self) -> tuple[str, ...]:
        """Every rlscale key of this config: its bases' too, and the network keys it has."""
        keys: list[str] = [key for key in NETWORK_KEYS if hasattr(self, key)]
        for klass in reversed(type(self).__mro__):
            for key in getattr(klass, "RLSCALE_KEYS", ()):
                if key not in keys:
                    keys.append(key)
        return tuple(keys)

    def training(self, **kwargs: Any):
        """RLlib's ``training()``, plus rlscale's keys (``rlscale_keys()``)."""
        own = {key: kwargs.pop(key) for key in list(kwargs) if key in self.rlscale_keys()}
        super().training(**kwargs)
        for key, value in own.items():
            if value is not NotProvided:
                setattr(self, key, value)
        self._mark_user_keys(
            key for key, value in {**kwargs, **own}.items() if value is not NotProvided
        )
        return self

    def validate(self) -> None:
        """The network keys' types and the common ranges first (before any algorithm's own
        checks read them), then RLlib's and the algorithm's checks."""
        problem = hidden_sizes_problem(self.hidden_sizes) if hasattr(self, "hidden_sizes") else None
        problem = problem or common_range_problem(self)
        if problem:
            self._value_error(problem)
        super().validate()

    def update_from_dict(self, config_dict: dict[str, Any]):
        super().update_from_dict(config_dict)
        # RLlib also passes a whole AlgorithmConfig here (its resource requests): it has keys()
        # but iterates differently from a dict.
        given = config_dict.keys()
        self._mark_user_keys(self._translate_special_keys(key, False) for key in given)
        return self

    def env_runners(self, **kwargs: Any):
        super().env_runners(**kwargs)
        self._mark_user_keys(key for key, value in kwargs.items() if value is not NotProvided)
        return self

    def environment(self, env: Any = NotProvided, **kwargs: Any):
        """RLlib's ``environment()``; then this algorithm's defaults for the env's action space."""
        super().environment(env, **kwargs)
        self._mark_user_keys(
            key
            for key, value in kwargs.items()
            if value is not NotProvided and key not in _WHICH_ENV_KEYS
        )
        action_space = kwargs.get("action_space", NotProvided)
        if action_space is NotProvided or action_space is None:
            action_space = _action_space_of(self.env, self.env_config)
        if action_space is not None:
            self.apply_action_space_defaults(action_space)
        return self

    def apply_action_space_defaults(self, action_space: gym.Space):
        """Set the defaults for ``action_space``'s kind on every key the user did not set."""
        bare = type(self)()
        user_keys = self.user_set_keys(bare)
        kind_defaults = (
            self.DISCRETE_DEFAULTS
            if isinstance(action_space, gym.spaces.Discrete)
            else self.CONTINUOUS_DEFAULTS
        )
        # Back to __init__'s values first, so that a second env of the other kind starts clean.
        values = {key: getattr(bare, key) for key in self._space_keys()}
        values.update(kind_defaults)
        for key, value in values.items():
            if key not in user_keys:
                setattr(self, key, value)
        self._rlscale_space_keys = tuple(sorted(set(kind_defaults) - user_keys))
        return self

    def user_set_keys(self, bare: RlscaleConfigMixin | None = None) -> set[str]:
        """Keys set through ``training``, ``environment``, ``env_runners``, ``update_from_dict``,
        or assigned a value other than ``__init__``'s (``bare``: a fresh config to compare with).
        """
        explicit = set(self._rlscale_user_keys)
        bare = bare if bare is not None else type(self)()
        for key in self._space_keys():
            if key not in self._rlscale_space_keys and getattr(self, key) != getattr(bare, key):
                explicit.add(key)
        return explicit

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        includes = super()._model_config_auto_includes
        if all(hasattr(self, key) for key in NETWORK_KEYS):
            includes = includes | {
                "hidden_sizes": list(self.hidden_sizes),
                "activation": self.activation,
            }
        return includes

    @property
    def model_config(self) -> dict[str, Any]:
        merged = dict(super().model_config)
        user = self._model_config if isinstance(self._model_config, dict) else {}
        for rllib_key, key in RLLIB_NETWORK_KEYS.items():
            if rllib_key in user and key not in user:
                merged[key] = user[rllib_key]
        return merged

    def _space_keys(self) -> set[str]:
        return set(self.DISCRETE_DEFAULTS) | set(self.CONTINUOUS_DEFAULTS)

    def _mark_user_keys(self, keys) -> None:
        self._rlscale_user_keys = tuple(sorted(set(self._rlscale_user_keys) | set(keys)))


def _action_space_of(env: Any, env_config: dict[str, Any] | None) -> gym.Space | None:
    """The action space of an rlscale env name (or its RLlib id); None for anything else.

    Multi-agent envs give the first agent's space (every agent of one env shares its kind).
    """
    info = _env_info(env, env_config)
    if info is None:
        return None
    if info.is_multi_agent:
        return info.action_space[info.agent_ids[0]]
    return info.action_space


def _spaces_of(env: Any, env_config: dict[str, Any] | None) -> tuple[gym.Space, gym.Space] | None:
    """The (observation, action) spaces of a single-agent rlscale env name; None otherwise."""
    info = _env_info(env, env_config)
    if info is None or info.is_multi_agent:
        return None
    return info.observation_space, info.action_space


def _env_info(env: Any, env_config: dict[str, Any] | None) -> EnvInfo | None:
    """``resolve_env``'s answer for an rlscale env name (or its RLlib id); None otherwise."""
    if not isinstance(env, str):
        return None
    name = env.removeprefix(RLLIB_ENV_PREFIX)
    try:
        key = json.dumps(dict(env_config or {}), sort_keys=True)
    except TypeError:  # values JSON cannot hold: resolve without the cache
        return _resolve_env_info(name, dict(env_config or {}))
    return _cached_env_info(name, key)


@lru_cache(maxsize=64)
def _cached_env_info(name: str, env_config_json: str) -> EnvInfo | None:
    """Resolving builds the env once; a config's env is set several times while it is built."""
    return _resolve_env_info(name, json.loads(env_config_json))


def _resolve_env_info(name: str, env_config: dict[str, Any]) -> EnvInfo | None:
    try:
        return resolve_env(name, env_config)
    except UnknownEnvironmentError:
        return None
