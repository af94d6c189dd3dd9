"""A policy named on the command line or in a spec, turned into a policy factory.

``random``, a scripted controller's name, or an rlscale checkpoint folder: the one place that
resolves them, for dataset collection today and for an algorithm's expert input (DAgger). A
checkpoint is checked here, with the platform's ``read_checkpoint``, because
``rlscale.policies`` must not read the platform's checkpoint format; the policy package gets the
checked folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rlscale.envs import resolve_env
from rlscale.errors import PolicyError
from rlscale.platform.outputs import read_checkpoint
from rlscale.policies import SCRIPTED, CheckpointPolicy, PolicyFactory, scripted_policy
from rlscale.policies.checkpoint import check_module_state, policy_runner_folder


def resolve_policy(
    policy: str,
    env: str,
    other_env_hint: str = "Collect with --env {trained_on}",
    env_config: Mapping[str, Any] | None = None,
) -> tuple[PolicyFactory, str]:
    """(factory, name recorded in a dataset's metadata) for a policy acting in ``env``.

    ``other_env_hint`` ends the message for a checkpoint trained on another env
    (``{trained_on}`` names that env): collection and an algorithm's expert offer different fixes.

    A checkpoint must hold a single-agent policy, checked now from its files (not when an
    EnvRunner first builds it), and have been trained on ``env`` with ``env_config`` (an env of
    the same name built with other settings may have other spaces or dynamics).

    Raises:
        PolicyError: an unknown name (the message lists the scripted ones), a checkpoint
            trained on another environment or env_config, or one that holds no
            single-agent policy.
        CheckpointError: a path that is not a complete rlscale checkpoint.
    """
    if policy in SCRIPTED:
        factory = scripted_policy(policy)
        _check_acts_in(factory, policy, env, env_config)
        return factory, policy
    path = Path(policy).expanduser()
    if path.exists() or "/" in policy:
        info = read_checkpoint(path)
        if info.spec.env != env:
            raise PolicyError(
                f"the checkpoint {path} was trained on {info.spec.env}, not on {env}. "
                f"{other_env_hint.format(trained_on=info.spec.env)}, or pass a checkpoint "
                f"trained on {env}."
            )
        env_config = dict(env_config or {})
        if dict(info.spec.env_config) != env_config:
            raise PolicyError(
                f"the checkpoint {path} was trained on {env} with env_config "
                f"{dict(info.spec.env_config)}, not {env_config}; pass the same env_config, "
                "or a checkpoint trained with this one."
            )
        policy_runner_folder(info.path)
        check_module_state(info.path)
        return CheckpointPolicy(str(info.path)), f"checkpoint:{info.path}"
    return scripted_policy(policy), policy  # raises, naming the known policies


def _check_acts_in(
    factory: PolicyFactory, name: str, env: str, env_config: Mapping[str, Any] | None
) -> None:
    """Act once on an observation drawn from the env's space: a scripted controller written
    for another env fails here, before Ray starts, rather than on the first step of a rollout.

    Raises:
        PolicyError: the policy raises, or returns an action outside the action space.
    """
    info = resolve_env(env, dict(env_config or {}))
    if info.is_multi_agent:
        return  # single-agent policies only; the callers refuse multi-agent envs themselves
    observation_space, action_space = info.observation_space, info.action_space
    observation_space.seed(0)
    hint = f"use a policy made for {env}: a checkpoint trained on it, or 'random'"
    try:
        action = factory(observation_space, action_space)(
            observation_space.sample(), np.random.default_rng(0)
        )
    except Exception as exc:  # a controller's own arithmetic on the wrong observation
        raise PolicyError(
            f"the scripted policy '{name}' cannot act in {env} ({observation_space}): "
            f"{type(exc).__name__}: {exc}. It is made for another env; {hint}."
        ) from None
    if not action_space.contains(action):
        raise PolicyError(
            f"the scripted policy '{name}' returned {action!r}, outside {env}'s action space "
            f"{action_space}. It is made for another env; {hint}."
        )
