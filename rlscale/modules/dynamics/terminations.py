"""Known termination rules on observations, for rollouts through a learned model.

A model rollout must end where the real episode would: a branch that ran past a fall would
teach the critic that falling pays. MBPO (Janner et al. 2019) gives its rollouts each env's
termination rule as a known function of the predicted observation, as here, rather than
learning it. A rule maps next observations ``[..., obs_dim]`` to a bool ``[...]``; a
non-finite observation (a diverging model) always terminates.

=============================== ================================================================
id                              terminated when
=============================== ================================================================
Pendulum-v1, Reacher-v5         never (only the time limit ends an episode)
rlscale/ContinuousCartPole-v0   ``|x| > 2.4`` or ``|theta| > 12deg`` (obs ``[x, x_dot, theta,
                                theta_dot]``)
rlscale/ContinuousCartPole      ``|x| > 2.4``
SwingUp-v0
InvertedPendulum-v5             ``|angle| > 0.2`` (obs ``[x, angle, x_dot, angle_dot]``)
Hopper-v5                       unhealthy: height ``obs[0] <= 0.7``, ``|angle| = |obs[1]| >= 0.2``,
                                or any of ``obs[1:]`` outside ``(-100, 100)``
Walker2d-v5                     unhealthy: height ``obs[0]`` outside ``(0.8, 2.0)`` or
                                ``|angle| = |obs[1]| >= 1``
=============================== ================================================================

The constants duplicate the environments' defaults (``rlscale.modules`` may not import the
envs); ``tests/test_terminations.py`` checks every rule against the real env's ``terminated``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

TerminationRule = Callable[[Tensor], Tensor]
"""next observations ``[..., obs_dim]`` -> terminated ``[...]`` (bool)."""


def _non_finite(obs: Tensor) -> Tensor:
    return ~torch.isfinite(obs).all(dim=-1)


def never_terminates(obs: Tensor) -> Tensor:
    return _non_finite(obs)


def _outside(value: Tensor, low: float, high: float) -> Tensor:
    """Not strictly inside ``(low, high)`` (the MuJoCo envs' healthy ranges are open)."""
    return ~((value > low) & (value < high))


def cartpole_balance_failed(obs: Tensor) -> Tensor:
    x, theta = obs[..., 0], obs[..., 2]
    return _non_finite(obs) | (x.abs() > 2.4) | (theta.abs() > 12 * math.pi / 180)


def cartpole_off_track(obs: Tensor) -> Tensor:
    return _non_finite(obs) | (obs[..., 0].abs() > 2.4)


def inverted_pendulum_fell(obs: Tensor) -> Tensor:
    return _non_finite(obs) | (obs[..., 1].abs() > 0.2)


def hopper_unhealthy(obs: Tensor) -> Tensor:
    height, angle = obs[..., 0], obs[..., 1]
    state_out_of_range = _outside(obs[..., 1:], -100.0, 100.0).any(dim=-1)
    return (
        _non_finite(obs)
        | _outside(height, 0.7, math.inf)
        | _outside(angle, -0.2, 0.2)
        | state_out_of_range
    )


def walker_unhealthy(obs: Tensor) -> Tensor:
    height, angle = obs[..., 0], obs[..., 1]
    return _non_finite(obs) | _outside(height, 0.8, 2.0) | _outside(angle, -1.0, 1.0)


TERMINATION_RULES: dict[str, TerminationRule] = {
    "Pendulum-v1": never_terminates,
    "Reacher-v5": never_terminates,
    "rlscale/ContinuousCartPole-v0": cartpole_balance_failed,
    "rlscale/ContinuousCartPoleSwingUp-v0": cartpole_off_track,
    "InvertedPendulum-v5": inverted_pendulum_fell,
    "Hopper-v5": hopper_unhealthy,
    "Walker2d-v5": walker_unhealthy,
}


def termination_rule(env_id: str) -> TerminationRule:
    """The rule of ``env_id``; a ValueError naming the envs that have one otherwise."""
    if env_id not in TERMINATION_RULES:
        raise ValueError(
            f"rlscale knows no termination rule for {env_id!r}; model rollouts need one. "
            f"Envs with a rule: {', '.join(sorted(TERMINATION_RULES))}"
        )
    return TERMINATION_RULES[env_id]
