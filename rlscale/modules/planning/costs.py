"""Differentiable costs on observations, one per supported environment, for planners.

A learned dynamics model predicts observations, so a planner that uses one needs the task's cost
as a function of the observation and the action: ``cost(obs [batch, obs_dim], action [batch,
action_dim]) -> [batch]`` (a ``StageCost``), plus an optional ``TerminalCost`` for the last
predicted observation. Each cost here is minus the environment's per-step reward where that
reward is smooth (**exact**), or a smooth **surrogate** where the reward carries no gradient (a
constant 1 per step alive): a quadratic in the observation scaled so that the termination
boundary costs about 1, which iLQR/DDP can differentiate twice and sampling planners can rank.

**When the reward is computed.** Pendulum-v1 computes its reward from the state *before* the
step, so ``stage(obs_t, a_t) = -r_t``. Reacher-v5 and the continuous swing-up compute it from the
state *after* the step, ``r_t = r(obs_{t+1}, a_t)``; their stage cost is the same function, so
``stage(obs_{t+1}, a_t) = -r_t`` (``ObservationCost.reward_on_next_observation``), and a planner
summing ``stage(obs_t, a_t)`` over ``t < H`` plus ``terminal(obs_H)`` (the state part of the
stage cost) gets minus the plan's return plus the state term of ``obs_0``, which no action
changes: the same optimum.

=============================== ============= ====================================================
id                              kind          cost
=============================== ============= ====================================================
Pendulum-v1                     exact         ``angle^2 + 0.1 theta_dot^2 + 0.001 u^2`` (angle by
                                              ``atan2(sin, cos)``, torque clipped to ``[-2, 2]``)
CartPole-v1,                    surrogate     ``(theta / 12deg)^2 + 0.1 (x / 2.4)^2 + 0.01
rlscale/ContinuousCartPole-v0                 (x_dot^2 + theta_dot^2) + 0.01 u^2``; ``u`` is the
                                              force command in ``[-1, 1]`` (CartPole-v1's
                                              actions 0 / 1 are ``u = -1 / +1``)
rlscale/ContinuousCartPole-     exact         ``-1 + 0.4 (1 - cos theta) + 0.1 (x / 2.4)^2 +
SwingUp-v0                                    0.1 u^2`` (``u`` clipped to ``[-1, 1]``), on the
                                              next observation
InvertedPendulum-v5             surrogate     ``(angle / 0.2)^2 + 0.01 (x^2 + angle_dot^2) +
                                              0.001 (x_dot^2 + u^2)``; obs ``[x, angle, x_dot,
                                              angle_dot]``
Reacher-v5                      exact         ``|fingertip - target| + |a|^2`` (obs ``[8:10]``;
                                              weights 1 and 1), on the next observation
=============================== ============= ====================================================

The Reacher distance is ``sqrt(|d|^2 + 1e-12)`` rather than ``|d|``: within 1e-6 of the reward,
and twice differentiable at the target (``|d|`` has an infinite curvature there).

The surrogates' weights put the termination boundary (12 degrees for CartPole, 0.2 rad for
InvertedPendulum) at cost 1 and keep the other terms small, so the pole angle dominates; the
small velocity terms damp the motion, the position term keeps the cart near the centre (off
the track ends CartPole-v1 also terminates), and the control term keeps the iLQR problem
well-posed. They are heuristics in the spirit of the quadratic costs of Tassa, Erez & Todorov
2012 ("Synthesis and stabilization of complex behaviors through online trajectory
optimization", IROS), not derived from the reward. InvertedPendulum-v5 also declares its balance
point (``ObservationCost.balance_point``): its position term is too weak over a short plan to
keep the cart off the rail's ends, which the LQR cost-to-go at the end of each plan does.

:data:`OBSERVATION_COSTS` maps each Gymnasium id to an :class:`ObservationCost`;
:func:`observation_cost` looks one up with a clear error for an id that has none. The
constants duplicate the environments' (``rlscale.modules`` may not import ``rlscale.envs``);
``tests/test_costs.py`` checks every exact cost against the real environment's reward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from rlscale.errors import RlscaleError, did_you_mean
from rlscale.modules.dynamics.pendulum import (
    pendulum_cost,
    pendulum_state_from_observation,
    pendulum_terminal_cost,
)
from rlscale.modules.planning.base import StageCost, TerminalCost

# CartPole (CartPole-v1 and rlscale's continuous variants): obs [x, x_dot, theta, theta_dot].
CARTPOLE_X_THRESHOLD = 2.4
CARTPOLE_THETA_THRESHOLD = 12 * math.pi / 180
SWING_UP_ANGLE_WEIGHT = 0.4
SWING_UP_POSITION_WEIGHT = 0.1
SWING_UP_CONTROL_WEIGHT = 0.1
BALANCE_POSITION_WEIGHT = 0.1
BALANCE_VELOCITY_WEIGHT = 0.01
BALANCE_CONTROL_WEIGHT = 0.01

# InvertedPendulum-v5: obs [slider x, hinge angle, x_dot, angle_dot]; terminated at |angle| > 0.2.
INVERTED_PENDULUM_ANGLE_THRESHOLD = 0.2
INVERTED_PENDULUM_SMALL_WEIGHT = 0.01
INVERTED_PENDULUM_TINY_WEIGHT = 0.001

# Reacher-v5: obs [cos q (2), sin q (2), target (2), q_dot (2), fingertip - target (2, x and y)].
REACHER_DISTANCE_WEIGHT = 1.0
REACHER_CONTROL_WEIGHT = 1.0
REACHER_DISTANCE_SMOOTHING = 1e-12
"""Added to the squared distance under the square root: smooth at the target, at most 1e-6 off."""


class NoObservationCostError(RlscaleError, ValueError):
    """No observation cost is defined for the requested environment id."""


@dataclass(frozen=True)
class ObservationCost:
    """A task's cost on observations, for a planner with a learned (observation) model.

    - ``stage``: ``StageCost`` on ``[batch, observation_dim]`` observations and ``[batch,
      action_dim]`` actions;
    - ``terminal``: ``TerminalCost`` for the horizon's last observation, or None;
    - ``description``: one line, the formula;
    - ``exact``: True when ``stage`` is minus the environment's reward, False for a surrogate;
    - ``reward_on_next_observation``: True when the environment computes its reward from the
      observation *after* the step (``stage(obs_{t+1}, a_t) = -r_t``), False when from the one
      before (``stage(obs_t, a_t) = -r_t``); see the module docstring;
    - ``observation_dim``, ``action_dim``: the shapes ``stage`` expects;
    - ``balance_point``: for a task of holding a system still, the observation and action at
      which it rests at no cost, or None. A planner on a learned model then ends its plans with
      the LQR cost-to-go of the model linearized there instead of ``terminal``
      (:mod:`rlscale.modules.planning.lqr_terminal`).
    """

    stage: StageCost
    terminal: TerminalCost | None
    description: str
    exact: bool
    reward_on_next_observation: bool
    observation_dim: int
    action_dim: int
    balance_point: tuple[tuple[float, ...], tuple[float, ...]] | None = None


# ----------------------------------------------------------------------------- Pendulum-v1


def pendulum_observation_cost(observation: Tensor, action: Tensor) -> Tensor:
    """Minus Pendulum-v1's reward from observations ``[cos, sin, theta_dot]`` (exact)."""
    return pendulum_cost(pendulum_state_from_observation(observation), action)


def pendulum_observation_terminal_cost(observation: Tensor) -> Tensor:
    """The state part of :func:`pendulum_observation_cost`."""
    return pendulum_terminal_cost(pendulum_state_from_observation(observation))


# ----------------------------------------------------------------------------- CartPole


def cartpole_balance_cost(observation: Tensor, action: Tensor) -> Tensor:
    """A smooth surrogate for CartPole-v1's "1 per step alive" (and the continuous balance's).

    ``(theta / 12deg)^2 + 0.1 (x / 2.4)^2 + 0.01 (x_dot^2 + theta_dot^2) + 0.01 u^2``, ``u`` the
    force command in ``[-1, 1]``.
    """
    command = action[..., 0].clamp(-1.0, 1.0)
    return cartpole_balance_terminal_cost(observation) + BALANCE_CONTROL_WEIGHT * command**2


def cartpole_balance_terminal_cost(observation: Tensor) -> Tensor:
    """The state part of :func:`cartpole_balance_cost`."""
    x, x_dot, theta, theta_dot = _columns(observation, 4, "a CartPole")
    return (
        (theta / CARTPOLE_THETA_THRESHOLD) ** 2
        + BALANCE_POSITION_WEIGHT * (x / CARTPOLE_X_THRESHOLD) ** 2
        + BALANCE_VELOCITY_WEIGHT * (x_dot**2 + theta_dot**2)
    )


def cartpole_swing_up_cost(observation: Tensor, action: Tensor) -> Tensor:
    """Minus the continuous swing-up's reward (exact; the env scores the next observation).

    ``-1 + 0.4 (1 - cos theta) + 0.1 (x / 2.4)^2 + 0.1 u^2``, ``u`` clipped into ``[-1, 1]`` as
    the environment clips it.
    """
    command = action[..., 0].clamp(-1.0, 1.0)
    return (
        -1.0 + cartpole_swing_up_terminal_cost(observation) + SWING_UP_CONTROL_WEIGHT * command**2
    )


def cartpole_swing_up_terminal_cost(observation: Tensor) -> Tensor:
    """The state part of :func:`cartpole_swing_up_cost`: ``0.4 (1 - cos theta) + 0.1 (x/2.4)^2``.

    With it, a plan's summed cost is minus its return up to a term no action changes.
    """
    x, _, theta, _ = _columns(observation, 4, "a CartPole")
    return (
        SWING_UP_ANGLE_WEIGHT * (1.0 - torch.cos(theta))
        + SWING_UP_POSITION_WEIGHT * (x / CARTPOLE_X_THRESHOLD) ** 2
    )


# ----------------------------------------------------------------------------- MuJoCo


def inverted_pendulum_cost(observation: Tensor, action: Tensor) -> Tensor:
    """A smooth surrogate for InvertedPendulum-v5's "1 per step alive".

    ``(angle / 0.2)^2 + 0.01 (x^2 + angle_dot^2) + 0.001 (x_dot^2 + u^2)``.
    """
    return inverted_pendulum_terminal_cost(observation) + INVERTED_PENDULUM_TINY_WEIGHT * (
        action[..., 0] ** 2
    )


def inverted_pendulum_terminal_cost(observation: Tensor) -> Tensor:
    """The state part of :func:`inverted_pendulum_cost`."""
    x, angle, x_dot, angle_dot = _columns(observation, 4, "an InvertedPendulum-v5")
    return (
        (angle / INVERTED_PENDULUM_ANGLE_THRESHOLD) ** 2
        + INVERTED_PENDULUM_SMALL_WEIGHT * (x**2 + angle_dot**2)
        + INVERTED_PENDULUM_TINY_WEIGHT * x_dot**2
    )


def reacher_cost(observation: Tensor, action: Tensor) -> Tensor:
    """Minus Reacher-v5's reward (exact to 1e-6; the env scores the next observation).

    ``|fingertip - target| + |a|^2``, the vector from ``observation[..., 8:10]``.
    """
    return reacher_terminal_cost(observation) + REACHER_CONTROL_WEIGHT * (action**2).sum(-1)


def reacher_terminal_cost(observation: Tensor) -> Tensor:
    """The distance part of :func:`reacher_cost`."""
    _check_width(observation, 10, "a Reacher-v5")
    offset = observation[..., 8:10]
    distance = torch.sqrt((offset**2).sum(-1) + REACHER_DISTANCE_SMOOTHING)
    return REACHER_DISTANCE_WEIGHT * distance


# ----------------------------------------------------------------------------- lookup


def _cartpole_balance(description: str) -> ObservationCost:
    return ObservationCost(
        stage=cartpole_balance_cost,
        terminal=cartpole_balance_terminal_cost,
        description=description,
        exact=False,
        reward_on_next_observation=True,
        observation_dim=4,
        action_dim=1,
    )


OBSERVATION_COSTS: dict[str, ObservationCost] = {
    "Pendulum-v1": ObservationCost(
        stage=pendulum_observation_cost,
        terminal=pendulum_observation_terminal_cost,
        description="exact: angle^2 + 0.1 theta_dot^2 + 0.001 u^2, angle = atan2(sin, cos)",
        exact=True,
        reward_on_next_observation=False,
        observation_dim=3,
        action_dim=1,
    ),
    "CartPole-v1": _cartpole_balance(
        "surrogate for 1 per step alive: (theta/12deg)^2 + 0.1 (x/2.4)^2 + 0.01 (x_dot^2 + "
        "theta_dot^2) + 0.01 u^2, u in [-1, 1] (actions 0/1 = u -1/+1)"
    ),
    "rlscale/ContinuousCartPole-v0": _cartpole_balance(
        "surrogate for 1 per step alive: (theta/12deg)^2 + 0.1 (x/2.4)^2 + 0.01 (x_dot^2 + "
        "theta_dot^2) + 0.01 u^2"
    ),
    "rlscale/ContinuousCartPoleSwingUp-v0": ObservationCost(
        stage=cartpole_swing_up_cost,
        terminal=cartpole_swing_up_terminal_cost,
        description="exact: -1 + 0.4 (1 - cos theta) + 0.1 (x/2.4)^2 + 0.1 u^2 (next obs)",
        exact=True,
        reward_on_next_observation=True,
        observation_dim=4,
        action_dim=1,
    ),
    "InvertedPendulum-v5": ObservationCost(
        stage=inverted_pendulum_cost,
        terminal=inverted_pendulum_terminal_cost,
        description="surrogate for 1 per step alive: (angle/0.2)^2 + 0.01 (x^2 + angle_dot^2) "
        "+ 0.001 (x_dot^2 + u^2)",
        exact=False,
        reward_on_next_observation=True,
        observation_dim=4,
        action_dim=1,
        # Upright and centred, at rest.
        balance_point=((0.0, 0.0, 0.0, 0.0), (0.0,)),
    ),
    "Reacher-v5": ObservationCost(
        stage=reacher_cost,
        terminal=reacher_terminal_cost,
        description="exact: |fingertip - target| + |a|^2 (next obs; sqrt smoothed by 1e-12)",
        exact=True,
        reward_on_next_observation=True,
        observation_dim=10,
        action_dim=2,
    ),
}
"""Gymnasium id -> its observation cost (see the module docstring's table)."""


def observation_cost(env_id: str) -> ObservationCost:
    """The observation cost of ``env_id``; ``NoObservationCostError`` (a ValueError) if none."""
    try:
        return OBSERVATION_COSTS[env_id]
    except KeyError:
        supported = ", ".join(sorted(OBSERVATION_COSTS))
        raise NoObservationCostError(
            f"no observation cost is defined for the environment {env_id!r}; costs exist for: "
            f"{supported}.{did_you_mean(env_id, OBSERVATION_COSTS)} For another task, pass a "
            "StageCost function of (observation, action) to the planner."
        ) from None


def _columns(observation: Tensor, width: int, what: str) -> tuple[Tensor, ...]:
    _check_width(observation, width, what)
    return observation.unbind(-1)


def _check_width(observation: Tensor, width: int, what: str) -> None:
    if observation.shape[-1] != width:
        raise ValueError(
            f"{what} observation has {width} entries; got shape {tuple(observation.shape)}"
        )
