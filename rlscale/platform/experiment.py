"""Spec -> RLlib AlgorithmConfig, in two steps.

:func:`prepare` checks every name in the spec (algorithm, environment, hyper-parameters, spaces)
and builds the config without Ray, so bad input fails before anything starts.
:func:`place_on_cluster` then fits the config to the connected cluster (GPUs, CPU demand).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ray.rllib.callbacks.callbacks import RLlibCallback

from rlscale.algorithms import (
    AlgorithmEntry,
    Input,
    algorithms_taking,
    apply_hyperparameters,
    check_spaces,
    get_algorithm,
)
from rlscale.algorithms.common.offline import evaluation_only
from rlscale.algorithms.common.offline_data import use_minari_dataset
from rlscale.datasets.store import DatasetSummary, normalized_score, summarize
from rlscale.datasets.validate import validate_dataset
from rlscale.envs import EnvInfo, multi_agent_policies, register_with_rllib, resolve_env
from rlscale.errors import DatasetError, SpecError
from rlscale.platform.episode_stats import EpisodeTotals
from rlscale.platform.experts import resolve_policy
from rlscale.platform.runtime import check_cpu_demand, resolve_gpus_per_learner
from rlscale.platform.spec import ExperimentSpec

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig


@dataclass
class PreparedExperiment:
    spec: ExperimentSpec
    """The spec as run: a missing seed is filled in, so the saved spec reproduces the run."""
    algorithm: AlgorithmEntry
    env: EnvInfo
    config: AlgorithmConfig
    dataset: DatasetSummary | None = None
    """The dataset the algorithm trains from (an offline algorithm, or one that may take one);
    returns are then those of its evaluations in the env."""

    def normalized_return(self, raw_return: float) -> float | None:
        """D4RL-style score against the dataset's random and collecting-policy references."""
        if self.dataset is None:
            return None
        return normalized_score(raw_return, self.dataset.ref_min_score, self.dataset.ref_max_score)

    @property
    def offline_without_evaluation(self) -> bool:
        """An offline algorithm with evaluation switched off (``evaluation_interval: 0``): it
        builds no EnvRunner at all, so RLlib needs the env's spaces given and its checkpoints
        hold no EnvRunner state (nor any filter state to lose: offline training never updates
        an EnvRunner's filters)."""
        return self.algorithm.offline and not self.config.evaluation_interval


def prepare(spec: ExperimentSpec, attach_dataset: bool = True) -> PreparedExperiment:
    """Check the spec against the registries and build its AlgorithmConfig; needs no Ray.

    ``attach_dataset=False`` builds an algorithm given a dataset without it (to evaluate a
    checkpoint in the environment, where the data is not needed).
    """
    if spec.seed is None:
        spec = spec.model_copy(update={"seed": random.SystemRandom().randrange(2**31)})
    entry = get_algorithm(spec.algorithm)
    env_info = resolve_env(spec.env, spec.env_config)
    _check_agent_spaces(entry, env_info)
    _check_inputs_given(entry, spec)

    config = entry.make_config()
    apply_hyperparameters(config, spec.hyperparameters, spec.algorithm)
    # The config applies its own defaults for the env's action space here (never over the
    # hyper-parameters just set), exactly as `XConfig().environment(env)` does in Python.
    config.environment(env=register_with_rllib(spec.env), env_config=dict(spec.env_config))
    config.debugging(seed=spec.seed)
    _apply_resources(config, spec)
    _track_episodes(config)
    if env_info.is_multi_agent:
        policies, mapping_fn = multi_agent_policies(env_info, spec.multi_agent.policies)
        config.multi_agent(policies=policies, policy_mapping_fn=mapping_fn)
    prepared = PreparedExperiment(spec=spec, algorithm=entry, env=env_info, config=config)
    if spec.dataset is not None:
        _prepare_dataset(prepared, attach_dataset)
    if spec.expert is not None:
        _prepare_expert(prepared)
    if attach_dataset:  # a config prepared only to evaluate is checked when it is built
        _validate_before_ray(config, spec.algorithm)
    return prepared


@dataclass(frozen=True)
class _InputField:
    """Where the spec gives one kind of input, and how a user gives or drops it."""

    field: str
    article: str
    how_to_give: str
    how_to_drop: str


_INPUT_FIELDS = {
    Input.DATASET: _InputField(
        "dataset",
        "a",
        "pass --dataset NAME_OR_PATH (a Minari dataset id or folder; `rlscale datasets list` "
        "shows the local ones)",
        "drop --dataset",
    ),
    Input.EXPERT: _InputField(
        "expert",
        "an",
        "pass --expert NAME_OR_CHECKPOINT (a scripted policy such as cartpole_balance, or a "
        "checkpoint folder; `expert:` in a spec)",
        "drop --expert (`expert:` in a spec)",
    ),
}


def _check_inputs_given(entry: AlgorithmEntry, spec: ExperimentSpec) -> None:
    """Every input the algorithm requires is given, and nothing it does not take."""
    for kind, where in _INPUT_FIELDS.items():
        given = getattr(spec, where.field) is not None
        if entry.requires(kind) and not given:
            raise SpecError(
                f"{entry.name} needs {where.article} {kind.value}: {where.how_to_give}."
            )
        if given and not entry.takes(kind):
            takers = algorithms_taking(kind)
            raise SpecError(
                f"{entry.name} takes no {kind.value}; {where.how_to_drop}, or use an algorithm "
                f"that takes one: {', '.join(takers) or 'none is registered yet'}."
            )


def _prepare_dataset(prepared: PreparedExperiment, attach: bool) -> None:
    """The dataset input: check it fits the env and holds sane data, make it the config's input
    (the entry's ``attach_dataset``, else RLlib's offline input through Ray Data).

    Without ``attach`` (evaluating a checkpoint) an algorithm that trains from a dataset alone is
    rebuilt to act in the environment without it; one that may take a dataset is built as
    without one.
    """
    spec, config = prepared.spec, prepared.config
    if not attach:
        if prepared.algorithm.offline:
            evaluation_only(config)
        return
    env_info = prepared.env
    report = validate_dataset(
        spec.dataset, env_spaces=(env_info.observation_space, env_info.action_space)
    )
    if not report.ok:
        problems = "\n".join(f"  - {problem}" for problem in report.problems)
        raise DatasetError(
            f"dataset {spec.dataset} cannot train on {spec.env}:\n{problems}\n"
            "Fix or re-collect the dataset (`rlscale datasets validate` shows the same list)."
        )
    if prepared.algorithm.learns_from_dataset_actions and not report.actions_vary:
        raise DatasetError(
            f"dataset {spec.dataset} records the same action at every step: it holds states "
            f"without actions, and {spec.algorithm} learns from actions. Give a dataset with "
            "the demonstrator's actions, or learn from the states alone with bco or "
            "state_only_il."
        )
    prepared.dataset = summarize(spec.dataset)
    attach_dataset = prepared.algorithm.attach_dataset or use_minari_dataset
    attach_dataset(config, prepared.dataset.data_dir)
    if prepared.offline_without_evaluation:
        config.environment(
            observation_space=env_info.observation_space, action_space=env_info.action_space
        )


def _prepare_expert(prepared: PreparedExperiment) -> None:
    """The expert input: check the expert exists and acts in this env, hand its name on.

    The algorithm builds the expert where it queries it (on its EnvRunners), from the name.
    """
    expert = prepared.spec.expert
    # Fails on an unknown name, an incomplete checkpoint, one without a single-agent policy, or
    # one trained on another env or env_config.
    resolve_policy(
        expert,
        prepared.env.name,
        other_env_hint="Train with --env {trained_on}",
        env_config=prepared.spec.env_config,
    )
    prepared.config.expert = expert


def place_on_cluster(
    config: AlgorithmConfig, spec: ExperimentSpec, cluster_cpus: float, cluster_gpus: float
) -> AlgorithmConfig:
    """Resolve ``gpus_per_learner: auto`` and check the run's actors fit the cluster."""
    gpus = resolve_gpus_per_learner(spec.resources.gpus_per_learner, cluster_gpus)
    config.learners(num_gpus_per_learner=gpus)
    check_cpu_demand(cpu_demand(config), cluster_cpus)
    return config


def cpu_demand(config: AlgorithmConfig) -> float:
    """CPUs the EnvRunner and Learner actors reserve (the driver itself reserves none)."""
    runner_cpus = config.num_env_runners * float(config.num_cpus_per_env_runner)
    return runner_cpus + config.num_learners * learner_cpus(config)


def learner_cpus(config: AlgorithmConfig) -> float:
    """CPUs one Learner reserves; RLlib's ``auto`` is 0 beside a GPU and 1 without one."""
    cpus = config.num_cpus_per_learner
    if cpus == "auto":
        return 0.0 if config.num_gpus_per_learner > 0 else 1.0
    return float(cpus)


def _track_episodes(config: AlgorithmConfig) -> None:
    """Add rlscale's whole-episode tracker after any callbacks the config already has."""
    existing = config.callbacks_class
    classes = list(existing) if isinstance(existing, (list, tuple)) else [existing]
    config.callbacks(
        callbacks_class=[c for c in classes if c is not RLlibCallback] + [EpisodeTotals]
    )


def _apply_resources(config: AlgorithmConfig, spec: ExperimentSpec) -> None:
    resources = spec.resources
    runner_overrides = {
        key: value
        for key, value in {
            "num_env_runners": resources.num_env_runners,
            "num_envs_per_env_runner": resources.num_envs_per_env_runner,
            "num_cpus_per_env_runner": resources.num_cpus_per_env_runner,
        }.items()
        if value is not None
    }
    config.env_runners(**runner_overrides)
    if resources.num_learners is not None:
        config.learners(num_learners=resources.num_learners)


def _validate_before_ray(config: AlgorithmConfig, algorithm: str) -> None:
    """RLlib's and the algorithm's ``validate()``: refused before Ray starts or a folder is made.

    ``build_algo()`` validates again, with the cluster's resources known. RLlib's validate()
    fills in some settings as it checks; it runs on a copy, so the config stays as prepared.
    """
    # RLlib logs a note about its new API stack from validate(); that note is noise here.
    rllib_config_logger = logging.getLogger("ray.rllib.algorithms.algorithm_config")
    level = rllib_config_logger.level
    rllib_config_logger.setLevel(logging.ERROR)
    try:
        config.copy(copy_frozen=False).validate()
    except ValueError as exc:
        reason = str(exc).split("\nTo suppress all validation errors")[0]
        raise SpecError(f"the configuration of '{algorithm}' is not valid: {reason}") from None
    finally:
        rllib_config_logger.setLevel(level)


def _check_agent_spaces(entry: AlgorithmEntry, env_info: EnvInfo) -> None:
    if not env_info.is_multi_agent:
        check_spaces(
            entry,
            env_info.observation_space,
            env_info.action_space,
            env_info.name,
            env_id=env_info.name,
        )
        return
    for agent in env_info.agent_ids:
        check_spaces(
            entry,
            env_info.observation_space[agent],
            env_info.action_space[agent],
            f"{env_info.name} (agent {agent})",
        )
