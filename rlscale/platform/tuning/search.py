"""A validated sweep -> Ray Tune objects: the param space, the search algorithm, the scheduler."""

from __future__ import annotations

from typing import Any

from ray import tune

from rlscale.platform.tuning.sweep import (
    AshaOptions,
    Distribution,
    PbtOptions,
    Sweep,
    asha_max_t,
)

ITERATION_ATTR = "training_iteration"
"""Schedulers count in training iterations, the unit of the spec's stop.iterations."""


def to_domain(distribution: Distribution, grid_as_choice: bool = False) -> Any:
    """``{loguniform: [1e-4, 1e-2]}`` -> ``tune.loguniform(1e-4, 1e-2)``."""
    kind, args = distribution.kind, list(distribution.args)
    if kind == "grid":
        return tune.choice(args) if grid_as_choice else tune.grid_search(args)
    if kind == "choice":
        return tune.choice(args)
    if kind in ("randint", "qrandint"):
        args = [int(a) for a in args]
    return getattr(tune, kind)(*args)


def param_space(sweep: Sweep) -> dict[str, Any]:
    """The flat Tune param space, keyed by dotted spec path.

    ``search: grid`` turns choices into grid axes, so the grid is the cross product of all lists.
    """
    space: dict[str, Any] = {}
    for path, distribution in sweep.param_space.items():
        if sweep.tune.search == "grid" and distribution.kind == "choice":
            distribution = Distribution("grid", distribution.args)
        space[path] = to_domain(distribution)
    for path, distribution in sweep.mutations.items():
        # PBT's mutated paths start from a sample of their own mutation distribution.
        space.setdefault(path, to_domain(distribution, grid_as_choice=True))
    return space


def expected_trials(sweep: Sweep) -> int:
    """How many trials the sweep runs: ``num_samples`` times the size of the grid (Tune
    repeats the whole grid for each sample; Optuna takes no grid)."""
    trials = sweep.tune.num_samples
    for value in param_space(sweep).values():
        if isinstance(value, dict) and "grid_search" in value:
            trials *= len(value["grid_search"])
    return trials


def search_algorithm(sweep: Sweep, seed: int | None):
    """None (Tune's own random/grid variant generator) or an Optuna searcher."""
    if sweep.tune.search != "optuna":
        return None
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=sweep.tune.metric, mode=sweep.tune.mode, seed=seed)


def scheduler(sweep: Sweep):
    options = sweep.scheduler
    tune_section = sweep.tune
    if isinstance(options, AshaOptions):
        return tune.schedulers.ASHAScheduler(
            time_attr=ITERATION_ATTR,
            metric=tune_section.metric,
            mode=tune_section.mode,
            max_t=asha_max_t(options, sweep.base_spec().stop.iterations),
            grace_period=options.grace_period,
            reduction_factor=options.reduction_factor,
            brackets=options.brackets,
        )
    if isinstance(options, PbtOptions):
        return tune.schedulers.PopulationBasedTraining(
            time_attr=ITERATION_ATTR,
            metric=tune_section.metric,
            mode=tune_section.mode,
            perturbation_interval=options.perturbation_interval,
            hyperparam_mutations={
                path: to_domain(distribution, grid_as_choice=True)
                for path, distribution in sweep.mutations.items()
            },
            quantile_fraction=options.quantile_fraction,
            resample_probability=options.resample_probability,
        )
    return tune.schedulers.FIFOScheduler()
