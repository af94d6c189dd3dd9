"""PettingZoo environments: names, discovery, building, and wrapping for RLlib.

Naming convention: ``pettingzoo:<family>.<env>``, where ``<env>`` is the versioned module name
PettingZoo uses, e.g. ``pettingzoo:butterfly.pistonball_v6``, ``pettingzoo:sisl.multiwalker_v9``,
``pettingzoo:classic.rps_v2``. The MPE environments left PettingZoo for the ``mpe2`` package;
they are the family ``mpe2``: ``pettingzoo:mpe2.simple_spread_v3`` (``mpe`` is accepted for
``mpe2``). Also accepted: the bare env name when only one family has it
(``pettingzoo:simple_spread_v3``) and PettingZoo's registry spelling
(``pettingzoo:butterfly/pistonball-v6``).

Environments are discovered by listing module files, so nothing is imported until an
environment is built. Environments with a parallel API are built with
``module.parallel_env(**env_config)``; turn-based (AEC-only) ones with ``module.env(**env_config)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import gymnasium as gym

from rlscale.envs.construction import (
    accepted_keywords,
    build_failure_error,
    missing_dependency_error,
)
from rlscale.envs.info import PETTINGZOO, EnvInfo
from rlscale.errors import UnknownEnvironmentError

PREFIX = "pettingzoo:"

BUILTIN_FAMILIES = ("atari", "butterfly", "classic", "sisl")
"""Families that ship inside the ``pettingzoo`` package."""

EXTERNAL_FAMILIES = {"mpe2": "mpe2"}
"""Families that live in their own package: family -> importable package (also its pip name)."""

FAMILY_ALIASES = {"mpe": "mpe2"}

INSTALL_BY_FAMILY = {
    **{family: f"pettingzoo[{family}]" for family in BUILTIN_FAMILIES},
    **EXTERNAL_FAMILIES,
}
"""The pip requirement that brings each family's optional dependencies."""

_ENV_MODULE = re.compile(r"^[a-z][a-z0-9_]*_v\d+$")
_REGISTRY_SPELLING = re.compile(r"^(?P<family>\w+)/(?P<env>\w+)-v(?P<version>\d+)$")


@dataclass(frozen=True, order=True)
class PettingZooName:
    """One PettingZoo environment: its family and versioned module name."""

    family: str
    env: str

    @property
    def name(self) -> str:
        """The canonical rlscale name, ``pettingzoo:<family>.<env>``."""
        return f"{PREFIX}{self.family}.{self.env}"

    @property
    def module_path(self) -> str:
        if self.family in EXTERNAL_FAMILIES:
            return f"{EXTERNAL_FAMILIES[self.family]}.{self.env}"
        return f"pettingzoo.{self.family}.{self.env}"


def is_pettingzoo_name(name: str) -> bool:
    return name.startswith(PREFIX)


def known_names() -> list[PettingZooName]:
    """Every PettingZoo environment in this install (importable or not), sorted."""
    return sorted(_discover())


def lookup(name: str) -> PettingZooName | None:
    """The environment ``name`` (``pettingzoo:...``) refers to, or None if there is none.

    Raises:
        EnvDependencyError: ``name`` is in a family whose package is not installed (mpe2).
        UnknownEnvironmentError: a bare env name that more than one family has.
    """
    rest = _registry_spelling_to_dotted(name[len(PREFIX) :])
    family, _, env = rest.rpartition(".")
    family = FAMILY_ALIASES.get(family, family)
    if family in EXTERNAL_FAMILIES and _package_dir(EXTERNAL_FAMILIES[family]) is None:
        missing = ModuleNotFoundError(name=EXTERNAL_FAMILIES[family])
        raise missing_dependency_error(name, INSTALL_BY_FAMILY[family], missing)
    candidates = [known for known in _discover() if known.env == env]
    if family:
        candidates = [known for known in candidates if known.family == family]
    if len(candidates) > 1:
        spelled = ", ".join(candidate.name for candidate in sorted(candidates))
        raise UnknownEnvironmentError(
            f"Environment name {name!r} is ambiguous: it could be {spelled}. Use the full name."
        )
    return candidates[0] if candidates else None


def resolve(pz_name: PettingZooName, name: str, env_config: Mapping[str, Any]) -> EnvInfo:
    """Build the environment once (without Ray), read every agent's spaces, close it."""
    env, _ = build_raw(pz_name, name, env_config)
    try:
        agent_ids = tuple(env.possible_agents)
        return EnvInfo(
            name=name,
            kind=PETTINGZOO,
            observation_space=gym.spaces.Dict(
                {agent: env.observation_space(agent) for agent in agent_ids}
            ),
            action_space=gym.spaces.Dict({agent: env.action_space(agent) for agent in agent_ids}),
            agent_ids=agent_ids,
            family=pz_name.family,
        )
    finally:
        env.close()


def make(pz_name: PettingZooName, name: str, env_config: Mapping[str, Any]):
    """Build the environment as an RLlib ``MultiAgentEnv`` (imports Ray RLlib)."""
    env, is_parallel = build_raw(pz_name, name, env_config)
    from rlscale.envs.pettingzoo_adapters import AecToMultiAgentEnv, ParallelToMultiAgentEnv

    return ParallelToMultiAgentEnv(env) if is_parallel else AecToMultiAgentEnv(env)


def build_raw(pz_name: PettingZooName, name: str, env_config: Mapping[str, Any]):
    """The PettingZoo env itself, and whether it is a parallel-API env (else AEC)."""
    module = _import_env_module(pz_name, name)
    is_parallel = hasattr(module, "parallel_env")
    factory = module.parallel_env if is_parallel else module.env
    try:
        return factory(**env_config), is_parallel
    except ImportError as exc:  # e.g. hanabi imports open_spiel only when built
        raise missing_dependency_error(name, _install_hint(pz_name, exc), exc) from exc
    except Exception as exc:
        error = build_failure_error(
            name, env_config, exc, lambda: accepted_keywords(getattr(module, "raw_env", None))
        )
        if error is None:
            raise
        raise error from exc


def _import_env_module(pz_name: PettingZooName, name: str) -> ModuleType:
    # pygame greets on import unless told not to; PettingZoo sets this too, but only once
    # `pettingzoo` itself is imported, and mpe2 may import pygame first.
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "hide")
    try:
        return importlib.import_module(pz_name.module_path)
    except ImportError as exc:
        raise missing_dependency_error(name, _install_hint(pz_name, exc), exc) from exc


def _install_hint(pz_name: PettingZooName, cause: ImportError) -> str | None:
    """The family's pip requirement when a module is missing; None for other import failures,
    whose own message says what to do (hanabi's asks for open_spiel)."""
    return INSTALL_BY_FAMILY.get(pz_name.family) if isinstance(cause, ModuleNotFoundError) else None


def _registry_spelling_to_dotted(rest: str) -> str:
    match = _REGISTRY_SPELLING.match(rest)
    if match is None:
        return rest
    return f"{match['family']}.{match['env']}_v{match['version']}"


@cache
def _discover() -> frozenset[PettingZooName]:
    found: set[PettingZooName] = set()
    pettingzoo_dir = _package_dir("pettingzoo")
    if pettingzoo_dir is not None:
        for family in BUILTIN_FAMILIES:
            found.update(_env_modules_in(os.path.join(pettingzoo_dir, family), family))
    for family, package in EXTERNAL_FAMILIES.items():
        package_dir = _package_dir(package)
        if package_dir is not None:
            found.update(_env_modules_in(package_dir, family))
    return frozenset(found)


def _env_modules_in(directory: str, family: str) -> set[PettingZooName]:
    return {
        PettingZooName(family, info.name)
        for info in pkgutil.iter_modules([directory])
        if not info.ispkg and _ENV_MODULE.match(info.name)
    }


def _package_dir(package: str) -> str | None:
    """Where ``package`` is installed, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]
