"""Wiring environments into RLlib: env registration and multi-agent policy mapping.

Ray's env registry (``ray.tune.registry.register_env``) keeps creators in the Ray cluster's
key-value store under the current job's id. Called before ``ray.init`` a registration waits in
the driver and is written when Ray starts; called after, it is written at once. Either way only
the running job sees it, so :func:`register_with_rllib` registers again on every call (cheap) and
stays correct across ``ray.shutdown()`` / ``ray.init()`` in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from rlscale.envs.info import EnvInfo
from rlscale.envs.registry import check_env_name, make_env
from rlscale.errors import SpecError, did_you_mean

RLLIB_ENV_PREFIX = "rlscale:"

SHARED_POLICY = "shared"
MULTI_AGENT_MODES = ("shared", "per_agent")
"""``shared``: every agent acts with one policy; ``per_agent``: each agent has its own."""


def rllib_env_id(name: str) -> str:
    """The id :func:`register_with_rllib` registers ``name`` under."""
    return RLLIB_ENV_PREFIX + name


def env_name_of(config_env: Any) -> str | None:
    """The env name behind a config's ``env`` (:func:`rllib_env_id`'s inverse); None when the
    config holds no registered name (an env class, or nothing yet)."""
    if not isinstance(config_env, str):
        return None
    return config_env.removeprefix(RLLIB_ENV_PREFIX)


def register_with_rllib(name: str) -> str:
    """Register an env creator for ``name`` with Ray and return its id for ``config.environment``.

    The creator is ``make_env(name, env_config)``; RLlib passes the ``env_config`` set in the
    algorithm config. It pickles by reference (``functools.partial`` of a module-level function),
    so remote EnvRunners rebuild it by importing ``rlscale``.
    """
    from ray.tune.registry import register_env

    check_env_name(name)
    env_id = rllib_env_id(name)
    _refresh_stale_registry_prefix()
    register_env(env_id, partial(make_env, name))
    return env_id


def multi_agent_policies(info: EnvInfo, mode: str) -> tuple[set[str], Callable[..., str]]:
    """Policy ids and ``policy_mapping_fn`` for ``config.multi_agent(...)``.

    ``shared`` gives ``{"shared"}`` and maps every agent to it; ``per_agent`` gives one policy
    per agent, named after the agent id. RLlib infers each policy's spaces from the agents
    mapped to it, so agents with different spaces need ``per_agent``; asking ``shared`` for
    them raises SpecError.
    """
    if not info.is_multi_agent:
        raise SpecError(
            f"Environment {info.name!r} is single-agent; multi-agent policies do not apply."
        )
    if mode == "shared":
        _check_agents_share_spaces(info)
        return {SHARED_POLICY}, map_to_shared_policy
    if mode == "per_agent":
        return set(info.agent_ids), map_to_own_policy
    raise SpecError(
        f"Unknown multi-agent policy mode {mode!r}.{did_you_mean(mode, MULTI_AGENT_MODES)} "
        f"Choose one of: {', '.join(MULTI_AGENT_MODES)}."
    )


def _check_agents_share_spaces(info: EnvInfo) -> None:
    first, *others = info.agent_ids
    space_dicts = (("observation", info.observation_space), ("action", info.action_space))
    for agent in others:
        for kind, spaces in space_dicts:
            if spaces[agent] != spaces[first]:
                raise SpecError(
                    f"Agents {first!r} and {agent!r} of {info.name!r} have different {kind} "
                    f"spaces ({spaces[first]} vs {spaces[agent]}), so they cannot share one "
                    "policy. Use the multi-agent policy mode 'per_agent'."
                )


def map_to_shared_policy(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
    """``policy_mapping_fn`` for ``shared``: every agent acts with the one shared policy."""
    return SHARED_POLICY


def map_to_own_policy(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
    """``policy_mapping_fn`` for ``per_agent``: each agent acts with the policy named after it."""
    return str(agent_id)


def _refresh_stale_registry_prefix() -> None:
    """Work around Ray caching the first job's id as its env registry's key prefix.

    Ray's ``_global_registry`` keeps the job id it first saw. After ``ray.shutdown()`` and a
    ``ray.init()`` that starts a different job (a second run against the same cluster, say), the
    driver would keep writing creators under the old id while EnvRunner actors read under the
    new one, and remote EnvRunners would fail to build the env. Forgetting the cached id makes
    Ray recompute it: at once when Ray is running, else when ``ray.init`` flushes the pending
    registrations.
    """
    import ray
    from ray.tune.registry import _global_registry

    cached = getattr(_global_registry, "_prefix", None)
    if cached is None:
        return
    if not ray.is_initialized() or cached != ray.get_runtime_context().get_job_id():
        _global_registry._prefix = None
