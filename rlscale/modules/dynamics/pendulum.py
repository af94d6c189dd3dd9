"""Gymnasium's Pendulum-v1 as a differentiable torch model, and its reward as a cost.

The update follows ``gymnasium.envs.classic_control.pendulum.PendulumEnv.step`` (gymnasium 1.x)
step for step, so that a planner using this model predicts the real environment exactly:

1. the torque is clipped to ``[-max_torque, max_torque]``;
2. the angular velocity is integrated first (semi-implicit Euler),
   ``theta_dot' = theta_dot + (3 g / (2 l) sin(theta) + 3 / (m l^2) u) dt``,
   then clipped to ``[-max_speed, max_speed]``;
3. the angle is integrated with the *new* velocity, ``theta' = theta + theta_dot' dt``
   (the angle is not wrapped; the cost wraps it).

The state is ``[theta, theta_dot]`` with ``theta = 0`` upright; the environment observes
``[cos(theta), sin(theta), theta_dot]`` instead (see ``pendulum_state_from_observation``).

The environment's reward at step ``t`` is ``-(angle_normalize(theta_t)^2 + 0.1 theta_dot_t^2 +
0.001 u_t^2)``, computed on the state *before* the step; ``pendulum_cost`` is its negative, so a
planner's summed stage costs over an episode equal minus the episode's return.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

GRAVITY = 10.0
MASS = 1.0
LENGTH = 1.0
TIME_STEP = 0.05
MAX_SPEED = 8.0
MAX_TORQUE = 2.0
ANGLE_WEIGHT = 1.0
SPEED_WEIGHT = 0.1
TORQUE_WEIGHT = 0.001


def angle_normalize(angle: Tensor) -> Tensor:
    """Wrap angles into ``[-pi, pi)``, like Pendulum-v1's ``angle_normalize``."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


class PendulumModel(nn.Module):
    """Pendulum-v1's dynamics: ``[batch, 2]`` states, ``[batch, 1]`` torques -> next states.

    Deterministic: ``predict`` returns the next-state tensor (see ``DynamicsModel``). The
    constants default to the environment's; pass others to model a changed pendulum (Gymnasium
    lets users set ``g``).
    """

    def __init__(
        self,
        gravity: float = GRAVITY,
        mass: float = MASS,
        length: float = LENGTH,
        time_step: float = TIME_STEP,
        max_speed: float = MAX_SPEED,
        max_torque: float = MAX_TORQUE,
    ):
        super().__init__()
        self.gravity = gravity
        self.mass = mass
        self.length = length
        self.time_step = time_step
        self.max_speed = max_speed
        self.max_torque = max_torque

    def predict(self, state: Tensor, action: Tensor) -> Tensor:
        """One environment step for each row; differentiable (zero slope where clipped)."""
        theta, theta_dot = state[..., 0], state[..., 1]
        torque = action[..., 0].clamp(-self.max_torque, self.max_torque)
        angular_acceleration = (
            3 * self.gravity / (2 * self.length) * torch.sin(theta)
            + 3.0 / (self.mass * self.length**2) * torque
        )
        new_theta_dot = theta_dot + angular_acceleration * self.time_step
        new_theta_dot = new_theta_dot.clamp(-self.max_speed, self.max_speed)
        new_theta = theta + new_theta_dot * self.time_step
        return torch.stack([new_theta, new_theta_dot], dim=-1)

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        return self.predict(state, action)


def pendulum_cost(state: Tensor, action: Tensor) -> Tensor:
    """Minus Pendulum-v1's reward for each row: ``[batch, 2]``, ``[batch, 1]`` -> ``[batch]``.

    The torque is clipped first, as the environment does before computing its reward.
    """
    torque = action[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)
    return pendulum_terminal_cost(state) + TORQUE_WEIGHT * torque**2


def pendulum_terminal_cost(state: Tensor) -> Tensor:
    """The state part of ``pendulum_cost``: a cost-to-go stand-in at the end of a horizon.

    The environment has no terminal reward; a planner with a short horizon charges the last
    state as one more step would, so that it does not end a plan swinging fast through the top.
    """
    theta, theta_dot = state[..., 0], state[..., 1]
    return ANGLE_WEIGHT * angle_normalize(theta) ** 2 + SPEED_WEIGHT * theta_dot**2


def pendulum_state_from_observation(observation: Tensor) -> Tensor:
    """``[..., 3]`` observations ``[cos, sin, theta_dot]`` -> ``[..., 2]`` states."""
    if observation.shape[-1] != 3:
        raise ValueError(
            "a Pendulum-v1 observation has 3 entries [cos(theta), sin(theta), theta_dot]; "
            f"got shape {tuple(observation.shape)}"
        )
    theta = torch.atan2(observation[..., 1], observation[..., 0])
    return torch.stack([theta, observation[..., 2]], dim=-1)
