"""Algorithm registry: names users type -> RLlib config classes that hold rlscale's defaults.

Each family package registers its algorithms on import; :func:`get_algorithm` and
:func:`list_algorithms` import them all first, so callers never depend on import order.

An entry also declares the inputs its algorithm takes (:class:`Input`: the environment to
sample, a dataset, an expert, or several), each required or optional; the platform prepares
each kind of input through one hook of its own and never imports a family.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from rlscale.errors import IncompatibleSpaceError, SpecError, UnknownAlgorithmError, did_you_mean

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

FAMILY_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "policy_gradient": ("a2c", "ppo", "trpo"),
    "value_based": ("dqn", "sac"),
    "tabular": ("q_learning", "sarsa"),
    "offline": ("bc", "cql", "cql_discrete"),
    "model_based": ("mbpo", "mpc", "pets", "sysid"),
    "imitation": ("bco", "dagger", "gail", "iq_learn", "state_only_il"),
    "generative": ("bcq", "bcq_discrete", "diffusion_bc", "diffusion_ql"),
    "world_model": ("dreamer", "latent_mpc"),
}
"""Each family package (``rlscale.algorithms.<family>``) and the algorithms it registers, known
without importing it: a name is checked, and its family alone imported, in a fraction of a
second rather than the seconds RLlib and torch take. A test keeps this in step with the
registry."""
FAMILY_PACKAGES = tuple(f"rlscale.algorithms.{family}" for family in FAMILY_ALGORITHMS)

SpaceCheck = Callable[[gym.Space, gym.Space], str | None]
"""(observation_space, action_space) -> None when the algorithm fits, else why it does not."""

EnvCheck = Callable[[str, gym.Space, gym.Space], str | None]
"""(Gymnasium id, observation_space, action_space) -> None when the algorithm can run on that
env, else why not (e.g. it needs an analytic model rlscale has only for some envs)."""

PolicyDescriber = Callable[[Any, gym.Env], str | None]
"""(restored RLModule, the environment) -> a text picture of the greedy policy, or None."""

DatasetAttacher = Callable[["AlgorithmConfig", Path], None]
"""(config, the checked dataset's ``data`` folder) -> None: makes the dataset the config's
training input (and sets what training from it changes, e.g. evaluation in the env)."""


class Input(str, Enum):
    """A kind of input an algorithm trains from; an entry lists the ones it takes."""

    ENVIRONMENT = "environment"
    """Samples the environment while training. Every algorithm acts in the environment to be
    evaluated; this input means it also learns from its own rollouts."""
    DATASET = "dataset"
    """Trains from a Minari dataset (the spec's ``dataset``, ``--dataset``)."""
    EXPERT = "expert"
    """Queries an expert policy (the spec's ``expert``: a scripted policy or a checkpoint)."""


@dataclass(frozen=True)
class AlgorithmEntry:
    name: str
    family: str
    summary: str
    config_class: Callable[[], AlgorithmConfig]
    space_checks: tuple[SpaceCheck, ...] = field(default_factory=tuple)
    env_checks: tuple[EnvCheck, ...] = field(default_factory=tuple)
    describe_policy: PolicyDescriber | None = None
    """Optional: `rlscale evaluate` prints what it returns (e.g. a grid of arrows)."""
    inputs: tuple[Input, ...] = (Input.ENVIRONMENT,)
    """What the algorithm trains from, every one required; the platform prepares each (see
    :class:`Input`)."""
    optional_inputs: tuple[Input, ...] = ()
    """Inputs the algorithm may also be given (e.g. a dataset to fit a model from instead of
    sampling); prepared like the required ones when given."""
    attach_dataset: DatasetAttacher | None = None
    """How a given dataset becomes the config's input; None: RLlib's offline input, streamed
    through Ray Data (``use_minari_dataset``)."""
    learns_from_dataset_actions: bool = True
    """The algorithm learns from the dataset's actions, so a dataset of states alone (every
    action the same) is refused; False for the state-only algorithms, which ignore them."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError(f"algorithm {self.name!r} declares no inputs")
        both = set(self.inputs) & set(self.optional_inputs)
        if both:
            names = ", ".join(sorted(kind.value for kind in both))
            raise ValueError(f"algorithm {self.name!r} declares {names} required and optional")
        if self.attach_dataset is not None and not self.takes(Input.DATASET):
            raise ValueError(
                f"algorithm {self.name!r} has attach_dataset but takes no dataset input"
            )

    def takes(self, kind: Input) -> bool:
        """The algorithm accepts ``kind`` of input (required or optional)."""
        return kind in self.inputs or kind in self.optional_inputs

    def requires(self, kind: Input) -> bool:
        """The algorithm cannot train without ``kind`` of input."""
        return kind in self.inputs

    @property
    def offline(self) -> bool:
        """Trains from a dataset alone, never from its own rollouts (a dataset is required)."""
        return self.requires(Input.DATASET) and not self.takes(Input.ENVIRONMENT)

    def make_config(self) -> AlgorithmConfig:
        """A fresh config carrying rlscale's defaults for this algorithm."""
        return self.config_class()

    def incompatibility(
        self, observation_space: gym.Space, action_space: gym.Space, env_id: str | None = None
    ) -> str | None:
        """Why the algorithm cannot run on these spaces (and on ``env_id``, when given), or None."""
        for check in self.space_checks:
            problem = check(observation_space, action_space)
            if problem:
                return problem
        for env_check in self.env_checks if env_id is not None else ():
            problem = env_check(env_id, observation_space, action_space)
            if problem:
                return problem
        return None


_REGISTRY: dict[str, AlgorithmEntry] = {}


def register_algorithm(entry: AlgorithmEntry) -> AlgorithmEntry:
    """Add (or replace) an algorithm under ``entry.name``."""
    _REGISTRY[entry.name] = entry
    return entry


def _load_families() -> None:
    for package in FAMILY_PACKAGES:
        importlib.import_module(package)


def list_algorithms() -> list[AlgorithmEntry]:
    _load_families()
    return sorted(_REGISTRY.values(), key=lambda entry: (entry.family, entry.name))


def algorithms_taking(kind: Input) -> list[str]:
    """Names of the registered algorithms that take ``kind`` of input, required or optional."""
    return [entry.name for entry in list_algorithms() if entry.takes(kind)]


def get_algorithm(name: str) -> AlgorithmEntry:
    """The entry of ``name``, importing its family only; an unknown name imports nothing.
    An entry registered outside the family packages (a plugin, a test) is found as well."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    family = next((f for f, names in FAMILY_ALGORITHMS.items() if name in names), None)
    if family is None:
        names = sorted({n for names in FAMILY_ALGORITHMS.values() for n in names} | set(_REGISTRY))
        raise UnknownAlgorithmError(
            f"unknown algorithm '{name}'.{did_you_mean(name, names)} "
            f"Registered algorithms: {', '.join(names)} (see `rlscale algos`)."
        )
    importlib.import_module(f"rlscale.algorithms.{family}")
    return _REGISTRY[name]


def check_spaces(
    entry: AlgorithmEntry,
    observation_space: gym.Space,
    action_space: gym.Space,
    env_name: str,
    env_id: str | None = None,
) -> None:
    """Raise a clear error, listing the algorithms that do fit, when ``entry`` cannot run here.

    ``env_id``: the Gymnasium id, for the entries' env checks (None skips them).
    """
    problem = entry.incompatibility(observation_space, action_space, env_id)
    if problem is None:
        return
    fitting = [
        other.name
        for other in list_algorithms()
        if other.incompatibility(observation_space, action_space, env_id) is None
    ]
    raise IncompatibleSpaceError(
        f"{entry.name} cannot run on {env_name}: {problem}. "
        f"Algorithms that fit this environment: {', '.join(fitting) or 'none registered'}."
    )


# Keys RLlib keeps behind a method rather than a settable attribute: key -> how to set it.
_SET_THROUGH_METHOD = {
    "model_config": lambda config, value: config.rl_module(model_config=value),
}


def apply_hyperparameters(
    config: AlgorithmConfig, hyperparameters: dict[str, Any], algorithm: str
) -> AlgorithmConfig:
    """Set ``hyperparameters`` on ``config``; an unknown key fails naming the nearest valid ones."""
    valid = valid_hyperparameters(config)
    for key in hyperparameters:
        if key not in valid:
            raise SpecError(
                f"unknown hyper-parameter '{key}' for algorithm '{algorithm}' "
                f"({type(config).__name__}).{did_you_mean(key, valid)} "
                "Hyper-parameters are the attributes of the algorithm's RLlib config class."
            )
    for key, value in hyperparameters.items():
        problem = value_type_problem(key, getattr(config, key, None), value)
        if problem:
            raise SpecError(f"bad hyper-parameter value for '{algorithm}': {problem}")
    hyperparameters = {
        key: _as_count(getattr(config, key, None), value) for key, value in hyperparameters.items()
    }
    plain = {k: v for k, v in hyperparameters.items() if k not in _SET_THROUGH_METHOD}
    try:
        config.update_from_dict(plain)
        for key, value in hyperparameters.items():
            if key in _SET_THROUGH_METHOD:
                _SET_THROUGH_METHOD[key](config, value)
    except (TypeError, ValueError, AttributeError) as exc:
        raise SpecError(f"bad hyper-parameter value for '{algorithm}': {exc}") from None
    return config


def value_type_problem(key: str, default: Any, value: Any) -> str | None:
    """Why ``value`` cannot stand where the config's ``default`` stands, or None.

    Only the kinds a typo produces are refused: text, a switch or a mapping where the default
    is a number, and a non-whole number where it is a count; a list stays allowed where a
    number is (RLlib takes schedules such as ``lr: [[0, 1e-3], [10000, 1e-4]]``). Defaults of
    None or of other types say nothing about the type, so any value passes here and the
    config's own ``validate()`` judges it.
    """
    if isinstance(default, bool):
        if isinstance(value, bool):
            return None
        return f"{key} must be true or false, got {value!r}"
    if not isinstance(default, int | float):
        return None
    if isinstance(value, str | bool | dict) or value is None:
        return f"{key} must be a number (its default is {default!r}), got {value!r}"
    if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
        return f"{key} must be a whole number (its default is {default!r}), got {value!r}"
    return None


def _as_count(default: Any, value: Any) -> Any:
    """A whole float (``2.0``, as YAML or a sweep may give it) as an int where a count goes."""
    whole_float = isinstance(value, float) and value.is_integer()
    if isinstance(default, int) and not isinstance(default, bool) and whole_float:
        return int(value)
    return value


def valid_hyperparameters(config: AlgorithmConfig) -> set[str]:
    """The config's public attributes, plus the settable properties over its private ones."""
    keys = set(config.to_dict())
    public = {key for key in keys if not key.startswith("_")}
    # to_dict() spells `lambda_` as `lambda`; accept both spellings.
    public |= {key + "_" for key in public if hasattr(config, key + "_")}
    public |= {
        key[1:] for key in keys if key.startswith("_") and _has_setter(type(config), key[1:])
    }
    return public | set(_SET_THROUGH_METHOD)


def _has_setter(cls: type, name: str) -> bool:
    attribute = getattr(cls, name, None)
    return isinstance(attribute, property) and attribute.fset is not None


def discrete_actions_only(_: gym.Space, action_space: gym.Space) -> str | None:
    if isinstance(action_space, gym.spaces.Discrete):
        return None
    return f"it needs a Discrete action space, and the action space is {action_space}"


def continuous_actions_only(_: gym.Space, action_space: gym.Space) -> str | None:
    if isinstance(action_space, gym.spaces.Box):
        return None
    return f"it needs a Box (continuous) action space, and the action space is {action_space}"


def discrete_observations_only(observation_space: gym.Space, _: gym.Space) -> str | None:
    if isinstance(observation_space, gym.spaces.Discrete):
        return None
    return (
        "it needs a Discrete observation space (a table row per state), and the observation "
        f"space is {observation_space}"
    )


def vector_observations_only(observation_space: gym.Space, _: gym.Space) -> str | None:
    if isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 3:
        # An MLP on raw frames trains, but at minutes per iteration and with checkpoints of
        # hundreds of MB: refuse it rather than let it run.
        return (
            "its networks are MLPs over a vector, and the observations are images "
            f"{observation_space}; it has no convolutional encoder, so use an env with vector "
            "observations"
        )
    if isinstance(observation_space, gym.spaces.Box):
        return None
    return (
        "it needs a Box (vector) observation space, and the observation space is "
        f"{observation_space}"
    )
