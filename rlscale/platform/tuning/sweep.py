"""Sweep files: an experiment spec plus a ``tune:`` section, validated before any trial starts.

A sweep file is an ordinary experiment spec (see :mod:`rlscale.platform.spec`) with one more
top-level key, ``tune:``, that says what to search (``param_space``: dotted paths into the spec,
each with one Ray Tune distribution), how (``search``, ``scheduler``), what to optimize
(``metric``, ``mode``) and how much (``num_samples``, ``max_concurrent_trials``). Every problem
is reported with the file's line number, all at once, before Ray starts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
)

from rlscale.errors import SpecError, did_you_mean
from rlscale.platform.outputs import IterationMetrics
from rlscale.platform.spec import (
    SPEC_FIELDS,
    SWEEP_KEY,
    ExperimentSpec,
    StrictModel,
    deep_merge,
    field_problem,
    read_spec_file,
)

if TYPE_CHECKING:
    from rlscale.platform.experiment import PreparedExperiment

TUNE_KEY = SWEEP_KEY
DEFAULT_ASHA_MAX_T = 100
METRICS = tuple(field.name for field in fields(IterationMetrics))
"""What every trial reports each iteration: the columns of a run's metrics.csv."""

# name -> (required args, optional args); the arguments of the ray.tune function of that name.
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "grid": (("values",), ()),
    "choice": (("values",), ()),
    "uniform": (("lower", "upper"), ()),
    "quniform": (("lower", "upper", "q"), ()),
    "loguniform": (("lower", "upper"), ("base",)),
    "qloguniform": (("lower", "upper", "q"), ("base",)),
    "randint": (("lower", "upper"), ()),
    "qrandint": (("lower", "upper", "q"), ()),
    "randn": ((), ("mean", "sd")),
    "qrandn": (("mean", "sd", "q"), ()),
}
LIST_DISTRIBUTIONS = ("grid", "choice")
INTEGER_DISTRIBUTIONS = ("randint", "qrandint")
NOT_TUNABLE = ("name", "output", "resources")
"""Spec fields a trial cannot vary: the run folder is Tune's, and resources fix the trial's
placement group, which is the same for every trial."""


SPEC_ONLY_PATHS = ("stop", "checkpoint", "seed", "multi_agent")
"""Spec fields whose values the spec's own validation judges entirely (no env or config)."""


class SweepError(SpecError):
    """A sweep file is malformed; the message names each problem with its line."""


@dataclass(frozen=True)
class Distribution:
    """One Ray Tune distribution, as written in the file: ``{loguniform: [1e-4, 1e-2]}``."""

    kind: str
    args: tuple[Any, ...]

    def representative(self) -> Any:
        """A value the distribution can produce, used to check the spec it lands in."""
        if self.kind in LIST_DISTRIBUTIONS:
            return self.args[0]
        if self.kind in ("randn", "qrandn"):
            return self.args[0] if self.args else 0.0
        return self.args[0]

    def candidates(self) -> tuple[Any, ...]:
        """The values that bound what the distribution can produce: every value of a list,
        both ends of a range (``randint``'s upper end is exclusive), the mean of a normal."""
        if self.kind in LIST_DISTRIBUTIONS:
            return self.args
        if self.kind in ("randn", "qrandn"):
            return (self.representative(),)
        lower, upper = self.args[0], self.args[1]
        return (lower, upper - 1) if self.kind == "randint" else (lower, upper)

    def to_yaml(self) -> dict[str, list[Any]]:
        return {self.kind: list(self.args)}


class AshaOptions(StrictModel):
    """Asynchronous successive halving (Li et al., 2020, arXiv:1810.05934), in iterations."""

    type: Literal["asha"]
    grace_period: PositiveInt = 1
    reduction_factor: float = Field(3.0, gt=1)
    max_t: PositiveInt | None = Field(
        None, description="iterations; default: stop.iterations, else 100"
    )
    brackets: PositiveInt = 1


class PbtOptions(StrictModel):
    """Population-based training (Jaderberg et al., 2017, arXiv:1711.09846), in iterations."""

    type: Literal["pbt"]
    perturbation_interval: PositiveInt = 5
    hyperparam_mutations: dict[str, Any] = Field(min_length=1)
    quantile_fraction: float = Field(0.25, ge=0, le=0.5)
    resample_probability: float = Field(0.25, ge=0, le=1)


class FifoOptions(StrictModel):
    type: Literal["fifo"]


SCHEDULERS: dict[str, type[StrictModel]] = {
    "fifo": FifoOptions,
    "asha": AshaOptions,
    "pbt": PbtOptions,
}


class TrialResources(StrictModel):
    cpus: PositiveFloat = Field(1.0, description="CPUs of each trial's own (driver) process")


class TuneSection(StrictModel):
    """The ``tune:`` section. Defaults live here and nowhere else."""

    metric: str = "return_mean"
    mode: Literal["max", "min"] = "max"
    num_samples: PositiveInt = 1
    max_concurrent_trials: PositiveInt | None = None
    search: Literal["random", "grid", "optuna"] = "random"
    scheduler: dict[str, Any] = Field(default_factory=lambda: {"type": "fifo"})
    param_space: dict[str, Any] = Field(default_factory=dict)
    resources_per_trial: TrialResources = Field(default_factory=TrialResources)
    max_failures: NonNegativeInt = Field(0, description="retries of a trial that errors")


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: the base spec every trial starts from, and how to vary it."""

    source: str
    base: dict[str, Any]
    """The spec part of the file as a plain mapping (no ``tune:`` key)."""
    tune: TuneSection
    scheduler: FifoOptions | AshaOptions | PbtOptions
    param_space: dict[str, Distribution]
    mutations: dict[str, Distribution]

    def base_spec(self) -> ExperimentSpec:
        return ExperimentSpec.model_validate(self.base)

    def spec_for(self, values: dict[str, Any]) -> ExperimentSpec:
        """The spec of one trial: the base with each sampled dotted path set."""
        return ExperimentSpec.model_validate(apply_dotted(self.base, values))


def apply_dotted(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``{"hyperparameters.lr": 0.1}``-style paths set."""
    override: dict[str, Any] = {}
    for path, value in values.items():
        node = override
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return deep_merge(base, override)


def is_sweep_file(data: dict[str, Any]) -> bool:
    return TUNE_KEY in data


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file; every problem is reported with its line, at once."""
    path = Path(path)
    data = read_spec_file(path)
    lines = _line_index(path)
    problems = _Problems(str(path), lines)
    if TUNE_KEY not in data:
        raise SweepError(
            f"{path} has no `tune:` section, so it is a plain experiment spec: run it with "
            "`rlscale train --config`, or add a `tune:` section (see tune_configs/)."
        )
    raw_tune = data[TUNE_KEY]
    base = {key: value for key, value in data.items() if key != TUNE_KEY}
    if not isinstance(raw_tune, dict):
        problems.add((TUNE_KEY,), "`tune:` must be a mapping (metric:, param_space:, ...).")
        problems.raise_if_any()
    tune = _validate_tune(raw_tune, problems)
    spec = _validate_base(base, problems)
    stop_iterations = spec.stop.iterations if spec is not None else None
    scheduler = _validate_scheduler(
        raw_tune.get("scheduler", {"type": "fifo"}), stop_iterations, problems
    )
    param_space = _validate_space(raw_tune.get("param_space") or {}, ("param_space",), problems)
    mutations: dict[str, Distribution] = {}
    if isinstance(scheduler, PbtOptions):
        mutations = _validate_space(
            scheduler.hyperparam_mutations, ("scheduler", "hyperparam_mutations"), problems
        )
    _check_metric(tune.metric, problems)
    problems.raise_if_any()
    _check_against_algorithm(spec, base, {**param_space, **mutations}, tune, problems)
    _check_search(tune, scheduler, param_space, problems)
    problems.raise_if_any()
    return Sweep(
        source=str(path),
        base=base,
        tune=tune,
        scheduler=scheduler,
        param_space=param_space,
        mutations=mutations,
    )


class _Problems:
    """Collects ``FILE line N: message`` lines; raises them together."""

    def __init__(self, source: str, lines: dict[tuple[str, ...], int]):
        self.source = source
        self.lines = lines
        self.messages: list[str] = []

    def add(self, location: tuple[Any, ...], message: str, in_tune: bool = True) -> None:
        path = ((TUNE_KEY,) if in_tune else ()) + tuple(str(part) for part in location)
        self.messages.append(f"{self.source} line {self._line(path)}: {message}")

    def _line(self, path: tuple[str, ...]) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def raise_if_any(self) -> None:
        if self.messages:
            count = len(self.messages)
            head = f"sweep file has {count} problem{'s' if count > 1 else ''}:"
            raise SweepError("\n".join([head, *(f"  - {m}" for m in self.messages)]))


def _line_index(path: Path) -> dict[tuple[str, ...], int]:
    """Path of keys -> 1-based line of that key, from the YAML node tree."""
    index: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*prefix, str(key_node.value))
                index[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(node, yaml.SequenceNode):
            for position, item in enumerate(node.value):
                key = (*prefix, str(position))
                index[key] = item.start_mark.line + 1
                walk(item, key)

    root = yaml.compose(path.read_text())
    if root is not None:
        walk(root, ())
    return index


def _validate_tune(raw: dict[str, Any], problems: _Problems) -> TuneSection:
    try:
        return TuneSection.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            _add_pydantic_error(error, (), TuneSection, problems)
        # Go on with the keys that were valid so that the rest of the file is checked too.
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        valid = {k: v for k, v in raw.items() if k in TuneSection.model_fields and k not in bad}
        return TuneSection.model_validate(valid)


def _validate_base(base: dict[str, Any], problems: _Problems) -> ExperimentSpec | None:
    try:
        return ExperimentSpec.model_validate(base)
    except ValidationError as exc:
        for error in exc.errors():
            message = field_problem(error, ExperimentSpec, extra_keys=(TUNE_KEY,))
            problems.add(error["loc"], message, in_tune=False)
        return None


def _validate_scheduler(
    raw: Any, stop_iterations: int | None, problems: _Problems
) -> FifoOptions | AshaOptions | PbtOptions:
    if not isinstance(raw, dict):
        problems.add(("scheduler",), "`scheduler:` must be a mapping such as {type: asha}.")
        return FifoOptions(type="fifo")
    kind = raw.get("type", "fifo")
    model = SCHEDULERS.get(str(kind))
    if model is None:
        problems.add(
            ("scheduler", "type"),
            f"unknown scheduler '{kind}'.{did_you_mean(str(kind), SCHEDULERS)} "
            f"Schedulers: {', '.join(SCHEDULERS)}.",
        )
        return FifoOptions(type="fifo")
    try:
        options = model.model_validate({**raw, "type": kind})
    except ValidationError as exc:
        for error in exc.errors():
            _add_pydantic_error(error, ("scheduler",), model, problems)
        return FifoOptions(type="fifo")
    if isinstance(options, AshaOptions):
        max_t = asha_max_t(options, stop_iterations)
        if options.grace_period > max_t:
            problems.add(
                ("scheduler", "grace_period"),
                f"grace_period {options.grace_period} is longer than max_t {max_t} iterations "
                "(max_t defaults to stop.iterations); lower it or raise max_t.",
            )
    return options


def asha_max_t(options: AshaOptions, stop_iterations: int | None) -> int:
    """ASHA's horizon in iterations: ``max_t``, else the spec's stop.iterations, else 100."""
    return options.max_t or stop_iterations or DEFAULT_ASHA_MAX_T


def _validate_space(
    raw: Any, location: tuple[str, ...], problems: _Problems
) -> dict[str, Distribution]:
    if not isinstance(raw, dict):
        problems.add(location, "must map dotted spec paths to distributions.")
        return {}
    space: dict[str, Distribution] = {}
    for path, value in raw.items():
        where = (*location, str(path))
        problem = _path_problem(str(path))
        if problem:
            problems.add(where, problem)
            continue
        distribution = _parse_distribution(value, str(path), where, problems)
        if distribution is not None:
            space[str(path)] = distribution
    return space


def _path_problem(path: str) -> str | None:
    head = path.split(".")[0]
    tunable = [f for f in SPEC_FIELDS if f not in NOT_TUNABLE]
    if head in NOT_TUNABLE:
        return (
            f"'{path}' cannot vary between trials ({head} is the same for every trial). "
            f"Tunable paths start with: {', '.join(tunable)}."
        )
    if head not in SPEC_FIELDS:
        return (
            f"'{path}' is not a path into the spec.{did_you_mean(head, tunable)} Paths start "
            f"with a spec key ({', '.join(tunable)}), e.g. hyperparameters.lr."
        )
    if head in ("hyperparameters", "env_config", "stop", "checkpoint") and "." not in path:
        return f"'{path}' names a whole section; name one key in it, e.g. {head}.<key>."
    return None


def _parse_distribution(
    value: Any, path: str, where: tuple[str, ...], problems: _Problems
) -> Distribution | None:
    names = ", ".join(DISTRIBUTIONS)
    if not (isinstance(value, dict) and len(value) == 1):
        problems.add(
            where,
            f"'{path}' must be one distribution written as a one-key mapping, e.g. "
            f"{{loguniform: [1.0e-4, 1.0e-2]}} or {{choice: [a, b]}}; got {value!r}. "
            f"Distributions: {names}.",
        )
        return None
    ((kind, args),) = value.items()
    kind = str(kind)
    at = (*where, kind)
    if kind not in DISTRIBUTIONS:
        problems.add(
            at,
            f"unknown distribution '{kind}'.{did_you_mean(kind, DISTRIBUTIONS)} "
            f"Distributions: {names}.",
        )
        return None
    if kind in LIST_DISTRIBUTIONS:
        if not isinstance(args, list) or not args:
            problems.add(at, f"'{kind}' takes a non-empty list of values; got {args!r}.")
            return None
        return Distribution(kind, tuple(args))
    required, optional = DISTRIBUTIONS[kind]
    signature = ", ".join([*required, *(f"[{o}]" for o in optional)])
    most = len(required) + len(optional)
    if not isinstance(args, list) or not len(required) <= len(args) <= most:
        problems.add(at, f"'{kind}' takes a list [{signature}]; got {args!r}.")
        return None
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        problems.add(at, f"'{kind}' takes numbers [{signature}]; got {args!r}.")
        return None
    problem = _bounds_problem(kind, args)
    if problem:
        problems.add(at, f"'{kind}' {problem}; got {args!r}.")
        return None
    return Distribution(kind, tuple(args))


def _bounds_problem(kind: str, args: list[float]) -> str | None:
    if kind in ("randn", "qrandn"):
        return "needs sd > 0" if len(args) >= 2 and args[1] <= 0 else None
    lower, upper = args[0], args[1]
    if not lower < upper:
        return "needs lower < upper"
    if kind in ("loguniform", "qloguniform") and lower <= 0:
        return "needs lower > 0 (a log scale)"
    if kind in INTEGER_DISTRIBUTIONS and not all(float(a).is_integer() for a in args):
        return "takes integers"
    if kind.startswith("q") and args[2] <= 0:
        return "needs q > 0"
    return None


def _check_metric(metric: str, problems: _Problems) -> None:
    if metric not in METRICS:
        problems.add(
            ("metric",),
            f"metric '{metric}' is not reported by rlscale trials.{did_you_mean(metric, METRICS)} "
            f"Every trial reports the columns of metrics.csv: {', '.join(METRICS)}.",
        )


def _check_against_algorithm(
    spec: ExperimentSpec | None,
    base: dict[str, Any],
    space: dict[str, Distribution],
    tune: TuneSection,
    problems: _Problems,
) -> None:
    """Names that need the registries: algorithm, env, hyper-parameters, the metric."""
    from rlscale.algorithms import get_algorithm
    from rlscale.algorithms.registry import valid_hyperparameters
    from rlscale.platform.experiment import prepare

    if spec is None:
        return
    try:
        entry = get_algorithm(spec.algorithm)
    except SpecError as exc:
        problems.add(("algorithm",), str(exc), in_tune=False)
        return
    valid = valid_hyperparameters(entry.make_config())
    for key in spec.hyperparameters:
        if key not in valid:
            problems.add(("hyperparameters", key), _unknown_hyperparameter(key, spec, valid), False)
    for path in space:
        parts = path.split(".")
        if parts[0] == "hyperparameters" and parts[1] not in valid:
            where = (
                ("param_space", path)
                if path in (tune.param_space or {})
                else ("scheduler", "hyperparam_mutations", path)
            )
            problems.add(where, _unknown_hyperparameter(parts[1], spec, valid))
    if problems.messages:
        return
    values = {path: distribution.representative() for path, distribution in space.items()}
    try:
        trial_spec = ExperimentSpec.model_validate(apply_dotted(base, values))
    except ValidationError as exc:
        for error in exc.errors():
            path = _dotted(error["loc"])
            where = ("param_space", path) if path in tune.param_space else ("param_space",)
            problems.add(where, f"values of '{path}' do not fit the spec: {error['msg']}.")
        return
    try:
        prepared = prepare(trial_spec)
    except SpecError as exc:
        problems.add(("env",), str(exc), in_tune=False)
        return
    _check_every_value(base, space, values, prepared, tune, problems)


def _check_every_value(
    base: dict[str, Any],
    space: dict[str, Distribution],
    values: dict[str, Any],
    prepared: PreparedExperiment,
    tune: TuneSection,
    problems: _Problems,
) -> None:
    """Each value a trial may draw must reach the algorithm, not only the first one checked
    above: ``{grid: [0.1, abc]}`` or ``{uniform: [0.9, 1.5]}`` for a discount would otherwise
    fail (or train nonsense) in the middle of the sweep."""
    for path, distribution in space.items():
        for value in distribution.candidates():
            problem = _value_problem(base, {**values, path: value}, path, value, prepared)
            if problem:
                where = (
                    ("param_space", path)
                    if path in tune.param_space
                    else ("scheduler", "hyperparam_mutations", path)
                )
                problems.add(where, f"the value {value!r} of '{path}' cannot run: {problem}")
                break


def _value_problem(
    base: dict[str, Any],
    values: dict[str, Any],
    path: str,
    value: Any,
    prepared: PreparedExperiment,
) -> str | None:
    from rlscale.algorithms import apply_hyperparameters
    from rlscale.platform.experiment import _validate_before_ray, prepare

    try:
        trial_spec = ExperimentSpec.model_validate(apply_dotted(base, values))
    except ValidationError as exc:
        return "; ".join(error["msg"] for error in exc.errors())
    parts = path.split(".")
    if parts[0] in SPEC_ONLY_PATHS:
        return None  # the spec's own rules, checked above, are all there is to check
    try:
        if parts[0] == "hyperparameters" and len(parts) == 2:
            # One key on a copy of the checked config: no env or dataset is read again.
            config = prepared.config.copy(copy_frozen=False)
            apply_hyperparameters(config, {parts[1]: value}, trial_spec.algorithm)
            _validate_before_ray(config, trial_spec.algorithm)
        else:
            prepare(trial_spec)
    except SpecError as exc:
        return str(exc)
    return None


def _unknown_hyperparameter(key: str, spec: ExperimentSpec, valid: set[str]) -> str:
    return (
        f"unknown hyper-parameter '{key}' for algorithm '{spec.algorithm}'."
        f"{did_you_mean(key, valid)} Hyper-parameters are the attributes of the algorithm's "
        "RLlib config class."
    )


def _check_search(
    tune: TuneSection,
    scheduler: FifoOptions | AshaOptions | PbtOptions,
    space: dict[str, Distribution],
    problems: _Problems,
) -> None:
    if tune.search == "grid":
        for path, distribution in space.items():
            if distribution.kind not in LIST_DISTRIBUTIONS:
                problems.add(
                    ("param_space", path),
                    f"search: grid needs a list of values for every path; '{path}' is "
                    f"{distribution.kind}. Use grid/choice, or search: random.",
                )
    if tune.search == "optuna":
        _check_optuna(space, problems)
    if isinstance(scheduler, PbtOptions) and tune.search == "optuna":
        problems.add(("search",), "PBT mutates trials itself; use search: random with pbt.")


def _check_optuna(space: dict[str, Distribution], problems: _Problems) -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        problems.add(
            ("search",),
            "search: optuna needs the optuna package, which is not installed "
            "(pip install optuna), or use search: random.",
        )
        return
    for path, distribution in space.items():
        if distribution.kind == "grid":
            problems.add(
                ("param_space", path),
                "search: optuna cannot take grid values; use choice, or search: random.",
            )


def _add_pydantic_error(
    error: dict[str, Any], prefix: tuple[str, ...], model: type[BaseModel], problems: _Problems
) -> None:
    location = (*prefix, *(str(part) for part in error["loc"]))
    problems.add(location, field_problem(error, model, prefix=(TUNE_KEY, *prefix)))


def _dotted(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"
