"""The experiment spec: one validated description drives training, evaluation and (later) tuning.

A spec comes from a YAML file, from command-line flags, or from both (flags override the file);
every path goes through :func:`spec_from_dict`, so they produce the same ``ExperimentSpec``.
Structural problems (unknown keys, wrong types) fail here; names that need the registries
(algorithm, environment, hyper-parameters) are checked by :mod:`rlscale.platform.experiment` before
Ray starts.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rlscale.errors import SpecError, did_you_mean

DEFAULT_STOP_ITERATIONS = 100
"""Used when a spec gives no stop rule at all, so that a bare `rlscale train` ends."""
MAX_SEED = 2**32 - 1
"""The largest seed NumPy's generators take (RLlib seeds them from the spec's seed)."""
MULTI_AGENT_PREFIX = "pettingzoo:"
"""Multi-agent environments are named ``pettingzoo:...`` (see rlscale.envs.pettingzoo)."""
REQUIRED_HINTS = {
    "algorithm": "give one: `rlscale train ALGO` or `algorithm:` in a spec (`rlscale algos` "
    "lists them)",
    "env": "give one: --env NAME or `env:` in a spec (`rlscale envs` lists them)",
}
"""How to give a required spec key that is missing."""


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo never passes silently); assignments are validated too;
    no number may be NaN or infinite (a ``reward: nan`` stop rule would never hold).

    The base of every section of the spec, and of a sweep file's ``tune:`` section.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class StopRules(StrictModel):
    """Training stops as soon as any rule that is set holds."""

    iterations: PositiveInt | None = Field(None, description="training iterations")
    timesteps: PositiveInt | None = Field(None, description="env steps sampled")
    time_s: PositiveFloat | None = Field(None, description="wall-clock seconds of training")
    reward: float | None = Field(None, description="target mean episode return")

    @model_validator(mode="after")
    def _default_when_empty(self) -> StopRules:
        if self.is_empty():
            # Bypass validate_assignment, which would re-enter this validator.
            self.__dict__["iterations"] = DEFAULT_STOP_ITERATIONS
        return self

    def is_empty(self) -> bool:
        return all(v is None for v in (self.iterations, self.timesteps, self.time_s, self.reward))


class Resources(StrictModel):
    """Where the work runs. ``None`` keeps the algorithm's own default."""

    num_env_runners: NonNegativeInt | None = Field(
        None, description="EnvRunner actors; 0 samples in the driver process"
    )
    num_envs_per_env_runner: PositiveInt | None = Field(
        None, description="vectorized envs stepped by each EnvRunner"
    )
    num_cpus_per_env_runner: PositiveFloat | None = None
    num_learners: NonNegativeInt | None = Field(
        None, description="Learner actors; 0 updates in the driver process"
    )
    gpus_per_learner: Literal["auto"] | NonNegativeFloat = Field(
        "auto", description="'auto' = 1 when the cluster has a GPU, else 0"
    )


class MultiAgent(StrictModel):
    """How agents of a multi-agent (PettingZoo) environment map onto policies."""

    policies: Literal["shared", "per_agent"] = "shared"


class CheckpointSchedule(StrictModel):
    every: NonNegativeInt = Field(10, description="iterations between checkpoints; 0 = final only")
    keep: PositiveInt = Field(3, description="periodic checkpoints kept (the final one always is)")


class ExperimentSpec(StrictModel):
    """Everything one training run needs. Serializes back to the YAML it was loaded from."""

    algorithm: str = Field(description="registered algorithm name, see `rlscale algos`")
    env: str = Field(description="environment name, see `rlscale envs`")
    env_config: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = Field(
        None,
        description="Minari dataset id or folder to train from (offline algorithms; pets and "
        "sysid fit their model from it)",
    )
    expert: str | None = Field(
        None,
        description="expert policy, for algorithms that query one: a scripted policy name "
        "(see rlscale.policies) or a checkpoint",
    )
    stop: StopRules = Field(default_factory=StopRules)
    resources: Resources = Field(default_factory=Resources)
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="keys of the algorithm's RLlib config class"
    )
    multi_agent: MultiAgent = Field(default_factory=MultiAgent)
    checkpoint: CheckpointSchedule = Field(default_factory=CheckpointSchedule)
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="None picks one and records it in the run; NumPy takes 0 to 2**32 - 1",
    )
    output: Path = Field(Path("runs"), description="root under which the run's folder is made")
    name: str | None = Field(None, description="run folder name; default <algo>-<env>-<time>")

    @field_validator("name")
    @classmethod
    def _name_stays_under_output(cls, name: str | None) -> str | None:
        problem = None if name is None else folder_name_problem(name, "run")
        if problem:
            raise ValueError(problem)
        return name

    @field_validator("multi_agent")
    @classmethod
    def _multi_agent_needs_agents(cls, multi_agent: MultiAgent, info: ValidationInfo) -> MultiAgent:
        """``policies: per_agent`` on a single-agent env would be silently ignored."""
        env = info.data.get("env")
        default = MultiAgent.model_fields["policies"].default
        if env and multi_agent.policies != default and not env.startswith(MULTI_AGENT_PREFIX):
            raise ValueError(
                f"multi_agent.policies={multi_agent.policies} applies to multi-agent "
                f"environments, and {env} is single-agent. Drop the `multi_agent` setting, "
                "or train on a multi-agent env (`rlscale envs --family pettingzoo`)"
            )
        return multi_agent

    def run_name(self) -> str:
        """The run folder's name: ``name`` or ``<algorithm>-<env>-<timestamp>``."""
        if self.name:
            return self.name
        env = re.sub(r"[^A-Za-z0-9._-]+", "_", self.env)
        return f"{self.algorithm}-{env}-{datetime.now():%Y%m%d-%H%M%S}"

    def to_yaml(self) -> str:
        # Only algorithms that query an expert have one: other runs' files do not name it.
        exclude = {"expert"} if self.expert is None else None
        return yaml.safe_dump(self.model_dump(mode="json", exclude=exclude), sort_keys=False)


def folder_name_problem(name: str, what: str) -> str | None:
    """Why ``name`` cannot name a run's (or sweep's) folder under the output folder, or None.

    A name may hold sub-folders (``sweep1/run3``) but not climb out of the output folder or
    start anew from the root."""
    parts = Path(name).parts
    if not name.strip() or Path(name).is_absolute() or ".." in parts:
        return (
            f"the {what} name {name!r} must be a folder name under the output folder (no "
            "'..', not absolute); choose where it goes with --output (`output:` in a spec)"
        )
    return None


SPEC_FIELDS = tuple(ExperimentSpec.model_fields)
SWEEP_KEY = "tune"
"""The section that makes a spec file a sweep for `rlscale tune` (see platform.tuning.sweep)."""


def spec_from_dict(data: dict[str, Any], source: str = "spec") -> ExperimentSpec:
    """Validate a plain mapping into a spec; errors name every bad key and the nearest valid one."""
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_describe_validation_error(exc, source)) from None


def load_spec(path: str | Path | None, overrides: dict[str, Any] | None = None) -> ExperimentSpec:
    """Load a YAML spec (or none) and apply ``overrides`` on top, e.g. from command-line flags."""
    data: dict[str, Any] = read_spec_file(path) if path is not None else {}
    if SWEEP_KEY in data:
        raise SpecError(
            f"{path} is a sweep file (it has a `{SWEEP_KEY}:` section): run it with "
            f"`rlscale tune {path}`, or remove the section to train one configuration."
        )
    merged = deep_merge(data, overrides or {})
    return spec_from_dict(merged, source=str(path) if path is not None else "command line")


class _SpecYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``3e-4`` as the float it means and refusing a key given
    twice in one mapping.

    YAML 1.1 (PyYAML's dialect) only takes exponents after a dot (``3.0e-4``): ``lr: 3e-4``
    reached RLlib as the string '3e-4', which it rejects as a learning-rate schedule. PyYAML
    keeps the last of two equal keys, so ``algorithm: ppo`` then ``algorithm: dqn`` silently
    trained DQN.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if isinstance(key, Hashable) and key in first_lines:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"the key {key!r} is given twice (first on line {first_lines[key]}); "
                        "keep one",
                        key_node.start_mark,
                    )
                if isinstance(key, Hashable):
                    first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


_SpecYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """Parse spec YAML (a file's text or a ``--set`` value)."""
    return yaml.load(text, Loader=_SpecYamlLoader)  # noqa: S506 - a SafeLoader subclass


def read_spec_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"spec file {path} is a folder; give the path of a YAML spec file.")
    if not path.is_file():
        raise SpecError(f"spec file {path} does not exist; check its path.")
    try:
        data = load_yaml(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(
            f"spec file {path} is not valid YAML{where}: {exc.problem}. Fix the file and retry."
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpecError(f"spec file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(
            f"spec file {path} must hold a mapping of keys (algorithm:, env:, ...), "
            f"not a {type(data).__name__}."
        )
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it; nested mappings merge key by key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """Turn ``--set key=value`` strings into an override mapping.

    A dotted key whose first part is a spec field sets that field (``resources.num_env_runners=2``,
    ``env_config.max_episode_steps=200``); any other key is an algorithm hyper-parameter
    (``lr=0.001``, ``hidden_sizes=[64,64]``). Values are parsed as YAML, so numbers,
    booleans and lists keep their types.
    """
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw_value = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"--set expects key=value, got {assignment!r}.")
        try:
            value = load_yaml(raw_value) if raw_value.strip() else ""
        except yaml.YAMLError:
            value = raw_value
        parts = key.split(".")
        if parts[0] not in SPEC_FIELDS:
            parts = ["hyperparameters", *parts]
        if len(parts) == 1:
            overrides[parts[0]] = value
            continue
        node = overrides
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError(f"--set {key}: '{part}' is set both as a value and as a section.")
        node[parts[-1]] = value
    return overrides


def _describe_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid experiment spec ({source}):"]
    lines.extend(f"  - {field_problem(error, ExperimentSpec)}" for error in exc.errors())
    return "\n".join(lines)


def field_problem(
    error: Mapping[str, Any],
    model: type[BaseModel],
    prefix: tuple[Any, ...] = (),
    extra_keys: Sequence[str] = (),
) -> str:
    """One pydantic error of ``model`` as a user reads it: the dotted key and what is wrong.

    An unknown key names the nearest valid ones. ``prefix`` is where ``model`` sits in the file
    (``("tune",)`` for a sweep's section); ``extra_keys`` are further valid top-level keys.
    """
    location = error["loc"]
    where = ".".join(str(part) for part in (*prefix, *location)) or "(top level)"
    if error["type"] == "extra_forbidden":
        valid = valid_keys_at(location[:-1], model)
        if len(location) == 1:
            valid = [*valid, *extra_keys]
        hint = did_you_mean(str(location[-1]), valid)
        return f"unknown key '{where}'.{hint} Valid keys here: {', '.join(valid)}."
    if error["type"] == "missing":
        hint = REQUIRED_HINTS.get(where, f"add `{location[-1]}:` to the file")
        return f"'{where}' is required; {hint}."
    return f"'{where}': {error['msg']} (got {error.get('input')!r})."


def valid_keys_at(location: tuple[Any, ...], model: type[BaseModel] = ExperimentSpec) -> list[str]:
    """The keys ``model`` accepts at ``location`` (a path of nested sections), or none."""
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
