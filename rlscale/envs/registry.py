"""Environment names -> spaces and environments: the one entry point for both families.

Gymnasium ids (``CartPole-v1``, ``Hopper-v5``) name single-agent environments; names starting
``pettingzoo:`` (``pettingzoo:mpe2.simple_spread_v3``) name multi-agent PettingZoo environments,
which :func:`make_env` returns as RLlib ``MultiAgentEnv``s. See :mod:`rlscale.envs.pettingzoo`
for the PettingZoo naming convention.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from rlscale.envs import gymnasium_envs, pettingzoo
from rlscale.envs.construction import EnvDependencyError, muted_mujoco_warnings
from rlscale.envs.info import GYMNASIUM, PETTINGZOO, RECORD_VIDEO_KEY, EnvInfo, EnvListing
from rlscale.errors import RlscaleError, UnknownEnvironmentError, did_you_mean

LIST_COMMAND = "rlscale envs"


def resolve_env(name: str, env_config: Mapping[str, Any] | None = None) -> EnvInfo:
    """Check ``name``, build the environment once to read its spaces, and close it.

    ``env_config`` holds keyword arguments for the environment; :data:`RECORD_VIDEO_KEY` is
    accepted (and checked) but takes no effect here.

    Raises:
        UnknownEnvironmentError: no environment has this name; the message lists close matches.
        RlscaleError: an optional dependency is missing (the message names the pip package),
            or ``env_config`` holds a key the environment does not take (the message names it).
    """
    config = _environment_kwargs(name, env_config)
    if pettingzoo.is_pettingzoo_name(name):
        return pettingzoo.resolve(_pettingzoo_name(name), name, config)
    _check_gymnasium_id(name)
    return gymnasium_envs.resolve(name, config)


def make_env(name: str, env_config: Mapping[str, Any] | None = None):
    """Build the environment ``name`` with ``env_config`` as keyword arguments.

    Gymnasium ids give ``gymnasium.make(name, **env_config)``; with :data:`RECORD_VIDEO_KEY` in
    ``env_config`` the env renders ``rgb_array`` frames and records every episode into that
    folder. PettingZoo names give an RLlib ``MultiAgentEnv``. Raises as :func:`resolve_env`.
    """
    if pettingzoo.is_pettingzoo_name(name):
        config = _environment_kwargs(name, env_config)
        return pettingzoo.make(_pettingzoo_name(name), name, config)
    _check_gymnasium_id(name)
    return gymnasium_envs.make(name, dict(env_config or {}))


def check_env_name(name: str) -> None:
    """Raise UnknownEnvironmentError (or a missing-package RlscaleError) unless ``name`` is known.

    Cheap: builds nothing.
    """
    if pettingzoo.is_pettingzoo_name(name):
        _pettingzoo_name(name)
    else:
        _check_gymnasium_id(name)


def known_env_names() -> list[str]:
    """Every environment name rlscale knows: Gymnasium ids, then PettingZoo names."""
    return gymnasium_envs.registered_ids() + [known.name for known in pettingzoo.known_names()]


def list_envs(include_spaces: bool = True, family: str | None = None) -> list[EnvInfo | EnvListing]:
    """Every known environment, for ``rlscale envs``.

    With ``include_spaces`` each environment is built once to read its spaces (about a second
    for all of them); an environment that cannot be built here is listed as an
    :class:`EnvListing` whose note says why (``needs: pip install "gymnasium[box2d]"``).
    Without it, every entry is an :class:`EnvListing`.

    ``family`` keeps one kind (``gymnasium``, ``pettingzoo``) or one family (``classic_control``,
    ``toy_text``, ``mujoco``, ``box2d``, ``butterfly``, ``mpe2``, ...).
    """
    every = list(_all_listings())
    listings = [
        listing
        for listing in every
        if family is None or family.lower() in (listing.family, listing.kind)
    ]
    if family is not None and not listings:
        known = sorted({n for listing in every for n in (listing.family, listing.kind) if n})
        raise UnknownEnvironmentError(
            f"no environment family or kind '{family}'.{did_you_mean(family, known)} "
            f"Known: {', '.join(known)}."
        )
    if not include_spaces:
        return listings
    with warnings.catch_warnings(), muted_mujoco_warnings():
        warnings.simplefilter("ignore")
        return [_with_spaces(listing) for listing in listings]


def unknown_environment_error(name: str) -> UnknownEnvironmentError:
    """The error for a name no environment has, with close matches and how to list them all."""
    return UnknownEnvironmentError(
        f"Unknown environment {name!r}.{did_you_mean(name, known_env_names())} "
        f"Run `{LIST_COMMAND}` to list the available environments."
    )


def _environment_kwargs(name: str, env_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``env_config`` as keyword arguments for the environment: reserved keys taken out."""
    config = dict(env_config or {})
    if RECORD_VIDEO_KEY in config and pettingzoo.is_pettingzoo_name(name):
        raise RlscaleError(
            f"Video recording ({RECORD_VIDEO_KEY!r}) works for single-agent Gymnasium "
            f"environments only, not for the multi-agent environment {name!r}."
        )
    config.pop(RECORD_VIDEO_KEY, None)
    return config


def _pettingzoo_name(name: str) -> pettingzoo.PettingZooName:
    found = pettingzoo.lookup(name)
    if found is None:
        raise unknown_environment_error(name)
    return found


def _check_gymnasium_id(name: str) -> None:
    if not gymnasium_envs.is_registered(name):
        raise unknown_environment_error(name)


def _all_listings() -> Iterator[EnvListing]:
    for env_id in gymnasium_envs.registered_ids():
        yield EnvListing(env_id, GYMNASIUM, gymnasium_envs.family_of(env_id))
    for known in pettingzoo.known_names():
        yield EnvListing(known.name, PETTINGZOO, known.family)


def _with_spaces(listing: EnvListing) -> EnvInfo | EnvListing:
    try:
        return resolve_env(listing.name)
    except EnvDependencyError as exc:
        return EnvListing(listing.name, listing.kind, listing.family, exc.note)
    except Exception as exc:  # one broken environment must not break the whole listing
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return EnvListing(listing.name, listing.kind, listing.family, f"unavailable: {reason}")
