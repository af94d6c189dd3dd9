"""A cart-pole with a continuous force: CartPole-v1's physics, a balance and a swing-up task.

A pole hinged on a cart that rolls on a frictionless track; a horizontal force pushes the cart.
The equations of motion are those of Barto, Sutton & Anderson (1983), "Neuronlike adaptive
elements that can solve difficult learning control problems" (IEEE Trans. SMC 13(5)), as
Gymnasium's ``CartPole-v1`` integrates them (``gymnasium/envs/classic_control/cartpole.py``;
not Florian's 2007 corrected form). With ``M = m_c + m_p``, ``l`` the half-length of the pole,
``theta`` measured from upright, positive clockwise, and ``F`` the force on the cart::

    c       = (F + m_p l theta_dot^2 sin(theta)) / M
    theta_dd = (g sin(theta) - cos(theta) c) / (l (4/3 - m_p cos(theta)^2 / M))
    x_dd    = c - m_p l theta_dd cos(theta) / M

and one explicit Euler step of ``tau = 0.02`` s advances ``(x, x_dot, theta, theta_dot)``, every
position updated with the velocity from *before* the step. The constants (``g = 9.8``,
``m_c = 1.0``, ``m_p = 0.1``, ``l = 0.5``, ``force_mag = 10``) and the arithmetic order are
those of ``CartPole-v1``, so pushing with action ``+1`` / ``-1`` here reproduces CartPole-v1's
actions ``1`` / ``0`` bit for bit (``tests/test_continuous_cartpole.py`` checks it).

The action is a ``Box(-1, 1, (1,))``: the force on the cart is ``force_mag * action``. A finite
action outside ``[-1, 1]`` is clipped into it (as Pendulum-v1 clips its torque); a NaN or
infinite action, or one that is not a single number, raises :class:`InvalidActionError`.

Two tasks, each registered as a Gymnasium id on ``import rlscale.envs``:

- ``rlscale/ContinuousCartPole-v0`` (:class:`ContinuousCartPoleEnv`): CartPole-v1's task. The
  start state is uniform in ``[-0.05, 0.05]^4``; reward 1 per step, the terminating step
  included; the episode terminates when ``|theta| > 12°`` or ``|x| > 2.4``, and is truncated at
  500 steps. Observation space, bounds and ``reset`` options are CartPole-v1's.
- ``rlscale/ContinuousCartPoleSwingUp-v0`` (:class:`ContinuousCartPoleSwingUpEnv`): the pole
  starts hanging down (``theta = pi`` plus the same uniform noise) and must be swung up and held.
  No angle limit; the track ends still terminate (``|x| > 2.4``: the cart leaves the track,
  there are no walls, so the dynamics stay smooth for planners). Truncated at 500 steps.
  ``theta`` is not wrapped: the observation is the physical state, so one full turn shows as
  ``theta + 2 pi`` (a learned model that wants periodicity should featurize with cos/sin).
  The reward (:func:`swing_up_reward`) is one minus a cost::

      r = 1 - [0.4 (1 - cos(theta)) + 0.1 (x / 2.4)^2 + 0.1 u^2]

  with ``u`` the clipped action. While the cart is on the track each term lies in ``[0, 0.8]``,
  ``[0, 0.1]``, ``[0, 0.1]``, so ``r`` is in ``[0, 1]`` and equals 1 upright, centred and at
  rest; leaving the track never pays (a non-negative reward lost for the rest of the episode).

:func:`step_dynamics` is the same step as a pure NumPy function batched over ``[..., 4]``
states, for analytic models and planners; :class:`CartPoleParameters` holds the constants
(:data:`CARTPOLE_V1` those of CartPole-v1), and each env exposes them as ``gravity``,
``masscart``, ``masspole``, ``length``, ``force_mag``, ``tau`` and as ``env.parameters``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import logger, spaces
from gymnasium.envs.classic_control.utils import maybe_parse_reset_bounds

from rlscale.errors import RlscaleError

BALANCE_ID = "rlscale/ContinuousCartPole-v0"
SWING_UP_ID = "rlscale/ContinuousCartPoleSwingUp-v0"
MAX_EPISODE_STEPS = 500
"""Both tasks are truncated here (by the ``TimeLimit`` that ``gymnasium.make`` adds)."""
BALANCE_REWARD_THRESHOLD = 475.0
"""CartPole-v1's: the balance task counts as solved at this mean return."""

X_THRESHOLD = 2.4
"""Half the track's length (m): the episode terminates when ``|x|`` exceeds it."""
THETA_THRESHOLD = 12 * math.pi / 180
"""12 degrees (rad): the balance task terminates when ``|theta|`` exceeds it."""
START_NOISE = 0.05
"""Each state variable starts uniform in ``[-START_NOISE, START_NOISE]`` (theta around pi for
the swing-up); ``reset(options={"low": ..., "high": ...})`` changes the bounds."""

ANGLE_COST = 0.4
POSITION_COST = 0.1
CONTROL_COST = 0.1
"""Swing-up reward weights: ``1 - [ANGLE_COST (1 - cos theta) + POSITION_COST (x / X_THRESHOLD)^2
+ CONTROL_COST u^2]`` (see :func:`swing_up_reward`)."""


class InvalidActionError(RlscaleError, ValueError):
    """An action the continuous cart-pole cannot apply: NaN, infinite, or not one number."""


@dataclass(frozen=True)
class CartPoleParameters:
    """The physical constants of a cart-pole (SI units)."""

    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5
    """Half the pole's length: the distance from the hinge to the pole's centre of mass."""
    force_mag: float = 10.0
    """The force (N) of action ``+1``; :func:`step_dynamics` takes the force itself."""
    tau: float = 0.02
    """Seconds per step (one Euler step)."""

    @property
    def total_mass(self) -> float:
        return self.masspole + self.masscart

    @property
    def polemass_length(self) -> float:
        return self.masspole * self.length


CARTPOLE_V1 = CartPoleParameters()
"""The constants of Gymnasium's CartPole-v1."""


def step_dynamics(
    state: np.ndarray, force: np.ndarray | float, params: CartPoleParameters = CARTPOLE_V1
) -> np.ndarray:
    """The state one step of ``params.tau`` seconds after pushing the cart with ``force`` (N).

    ``state`` is ``[..., 4]`` = ``(x, x_dot, theta, theta_dot)``; ``force`` broadcasts against
    ``state[..., 0]``. Returns float64 ``[..., 4]``. Pure NumPy: no clipping, no termination,
    no angle wrapping. The equations are in the module docstring.
    """
    state = np.asarray(state, dtype=np.float64)
    force = np.asarray(force, dtype=np.float64)
    x, x_dot, theta, theta_dot = (state[..., i] for i in range(4))
    sin_theta = np.sin(theta)
    cos_theta = np.cos(theta)
    total_mass = params.total_mass
    polemass_length = params.polemass_length

    common = (force + polemass_length * theta_dot**2 * sin_theta) / total_mass
    theta_acc = (params.gravity * sin_theta - cos_theta * common) / (
        params.length * (4.0 / 3.0 - params.masspole * cos_theta**2 / total_mass)
    )
    x_acc = common - polemass_length * theta_acc * cos_theta / total_mass

    tau = params.tau
    return np.stack(
        np.broadcast_arrays(
            x + tau * x_dot,
            x_dot + tau * x_acc,
            theta + tau * theta_dot,
            theta_dot + tau * theta_acc,
        ),
        axis=-1,
    )


def off_track(state: np.ndarray, x_threshold: float = X_THRESHOLD) -> np.ndarray:
    """Whether the cart has left the track (``|x| > x_threshold``), over ``[..., 4]`` states."""
    x = np.asarray(state)[..., 0]
    return (x < -x_threshold) | (x > x_threshold)


def balance_failed(
    state: np.ndarray, x_threshold: float = X_THRESHOLD, theta_threshold: float = THETA_THRESHOLD
) -> np.ndarray:
    """CartPole-v1's termination over ``[..., 4]`` states: off the track or ``|theta| > 12°``."""
    theta = np.asarray(state)[..., 2]
    return off_track(state, x_threshold) | (theta < -theta_threshold) | (theta > theta_threshold)


def swing_up_reward(state: np.ndarray, action: np.ndarray | float) -> np.ndarray:
    """The swing-up reward over ``[..., 4]`` states and ``[...]`` actions in ``[-1, 1]``::

        1 - [0.4 (1 - cos(theta)) + 0.1 (x / 2.4)^2 + 0.1 u^2]

    In ``[0, 1]`` while the cart is on the track; smooth, so a planner can use ``-r`` as a cost.
    """
    state = np.asarray(state, dtype=np.float64)
    u = np.asarray(action, dtype=np.float64)
    x, theta = state[..., 0], state[..., 2]
    cost = (
        ANGLE_COST * (1.0 - np.cos(theta))
        + POSITION_COST * (x / X_THRESHOLD) ** 2
        + CONTROL_COST * u**2
    )
    return 1.0 - cost


class ContinuousCartPoleEnv(gym.Env[np.ndarray, np.ndarray]):
    """CartPole-v1 with a continuous force: keep the pole up (``rlscale/ContinuousCartPole-v0``).

    Physics, start state, observation, reward 1 per step and termination are CartPole-v1's; the
    action in ``[-1, 1]`` scales ``force_mag``. See the module docstring.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise RlscaleError(
                f"{type(self).__name__} cannot render in mode {render_mode!r}; "
                f"choose one of: {', '.join(self.metadata['render_modes'])}."
            )
        self.render_mode = render_mode
        self.gravity = CARTPOLE_V1.gravity
        self.masscart = CARTPOLE_V1.masscart
        self.masspole = CARTPOLE_V1.masspole
        self.length = CARTPOLE_V1.length
        self.force_mag = CARTPOLE_V1.force_mag
        self.tau = CARTPOLE_V1.tau
        self.x_threshold = X_THRESHOLD
        self.theta_threshold_radians = THETA_THRESHOLD

        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = spaces.Box(
            -self._observation_high(), self._observation_high(), dtype=np.float32
        )
        self.state: np.ndarray | None = None
        self._terminated_before = False
        self._warned_after_termination = False
        self._renderer: _Renderer | None = None

    @property
    def parameters(self) -> CartPoleParameters:
        """The env's physical constants as one value, for :func:`step_dynamics`."""
        return CartPoleParameters(
            gravity=self.gravity,
            masscart=self.masscart,
            masspole=self.masspole,
            length=self.length,
            force_mag=self.force_mag,
            tau=self.tau,
        )

    @property
    def total_mass(self) -> float:
        return self.parameters.total_mass

    @property
    def polemass_length(self) -> float:
        return self.parameters.polemass_length

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        low, high = maybe_parse_reset_bounds(options, -START_NOISE, START_NOISE)
        self.state = self._start_state(self.np_random.uniform(low=low, high=high, size=(4,)))
        self._terminated_before = False
        self._warned_after_termination = False
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.state is None:
            raise gym.error.ResetNeeded("Call reset() before step().")
        u = self._checked_action(action)
        self.state = step_dynamics(self.state, self.force_mag * u, self.parameters)
        terminated = bool(self._failed(self.state))
        if self._terminated_before:
            self._warn_after_termination()
            reward = 0.0
        else:
            reward = self._reward(self.state, u)
        self._terminated_before = self._terminated_before or terminated
        return self._observation(), reward, terminated, False, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            logger.warn(
                "render() was called without a render mode; make the env with "
                'render_mode="rgb_array".'
            )
            return None
        if self.state is None:
            raise gym.error.ResetNeeded("Call reset() before render().")
        if self._renderer is None:
            self._renderer = _Renderer(self.x_threshold)
        return self._renderer.frame(self.state, self.length)

    # --- what the two tasks do differently --------------------------------------------------

    def _observation_high(self) -> np.ndarray:
        # CartPole-v1's bounds: twice the termination thresholds, so a failing state is in it.
        return np.array([2 * X_THRESHOLD, np.inf, 2 * THETA_THRESHOLD, np.inf], dtype=np.float32)

    def _start_state(self, noise: np.ndarray) -> np.ndarray:
        return noise

    def _failed(self, state: np.ndarray) -> bool:
        return bool(balance_failed(state, self.x_threshold, self.theta_threshold_radians))

    def _reward(self, state: np.ndarray, u: float) -> float:
        return 1.0

    # --- helpers ----------------------------------------------------------------------------

    def _observation(self) -> np.ndarray:
        assert self.state is not None
        return np.array(self.state, dtype=np.float32)

    def _checked_action(self, action: np.ndarray | SupportsFloat) -> float:
        """The action as a float in ``[-1, 1]``: clipped when finite, else InvalidActionError."""
        try:
            values = np.asarray(action)
        except ValueError:  # a ragged nest of lists
            values = np.asarray(None)
        if values.dtype.kind not in "iuf":  # None, strings and objects are not forces
            raise InvalidActionError(
                f"{type(self).__name__} takes one number in [-1, 1] as its action, not {action!r}."
            )
        if values.size != 1:
            raise InvalidActionError(
                f"{type(self).__name__} takes one number in [-1, 1] as its action "
                f"(shape (1,)), not an array of shape {values.shape}."
            )
        value = float(values.reshape(()))
        if not math.isfinite(value):
            raise InvalidActionError(
                f"{type(self).__name__} got the action {value}: actions must be finite numbers "
                "in [-1, 1]. A NaN or infinite action usually means the policy diverged."
            )
        return min(1.0, max(-1.0, value))

    def _warn_after_termination(self) -> None:
        if not self._warned_after_termination:
            logger.warn(
                "step() was called after the episode terminated; call reset(). "
                "Further steps return reward 0."
            )
            self._warned_after_termination = True


class ContinuousCartPoleSwingUpEnv(ContinuousCartPoleEnv):
    """Swing the pole up from hanging and hold it (``rlscale/ContinuousCartPoleSwingUp-v0``).

    Same physics and action as :class:`ContinuousCartPoleEnv`; starts at ``theta = pi`` plus
    noise, never terminates on the angle, terminates when the cart leaves the track, and is
    rewarded by :func:`swing_up_reward`. See the module docstring.
    """

    def _observation_high(self) -> np.ndarray:
        return np.array([2 * X_THRESHOLD, np.inf, np.inf, np.inf], dtype=np.float32)

    def _start_state(self, noise: np.ndarray) -> np.ndarray:
        return noise + np.array([0.0, 0.0, math.pi, 0.0])

    def _failed(self, state: np.ndarray) -> bool:
        return bool(off_track(state, self.x_threshold))

    def _reward(self, state: np.ndarray, u: float) -> float:
        return float(swing_up_reward(state, u))


class _Renderer:
    """Draws the cart-pole into an RGB array with NumPy alone (no pygame needed)."""

    WIDTH = 600
    HEIGHT = 400
    PIXELS_PER_METRE = 100.0
    CART_SIZE = (50, 30)
    POLE_WIDTH = 8.0

    def __init__(self, x_threshold: float) -> None:
        self.x_threshold = x_threshold
        rows, cols = np.mgrid[0 : self.HEIGHT, 0 : self.WIDTH]
        self.rows = rows.astype(np.float64)
        self.cols = cols.astype(np.float64)
        self.track_row = self.HEIGHT // 2

    def frame(self, state: np.ndarray, half_length: float) -> np.ndarray:
        image = np.full((self.HEIGHT, self.WIDTH, 3), 255, dtype=np.uint8)
        image[self.track_row, :] = (0, 0, 0)
        for end in (-self.x_threshold, self.x_threshold):
            col = int(round(self._col(end)))
            if 0 <= col < self.WIDTH:
                image[self.track_row - 20 : self.track_row + 21, col] = (200, 0, 0)

        x, theta = float(state[0]), float(state[2])
        centre = np.array([self.track_row, self._col(x)])
        half_w, half_h = self.CART_SIZE[0] / 2, self.CART_SIZE[1] / 2
        cart = (np.abs(self.cols - centre[1]) <= half_w) & (np.abs(self.rows - centre[0]) <= half_h)
        image[cart] = (60, 60, 140)

        pole_len = 2 * half_length * self.PIXELS_PER_METRE
        tip = centre + pole_len * np.array([-math.cos(theta), math.sin(theta)])
        image[self._segment_mask(centre, tip, self.POLE_WIDTH / 2)] = (202, 152, 101)
        axle = (self.rows - centre[0]) ** 2 + (self.cols - centre[1]) ** 2 <= 4.0**2
        image[axle] = (129, 132, 203)
        return image

    def _col(self, x: float) -> float:
        return self.WIDTH / 2 + x * self.PIXELS_PER_METRE

    def _segment_mask(self, start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
        direction = end - start
        rel_r, rel_c = self.rows - start[0], self.cols - start[1]
        t = np.clip((rel_r * direction[0] + rel_c * direction[1]) / (direction @ direction), 0, 1)
        dist_sq = (rel_r - t * direction[0]) ** 2 + (rel_c - t * direction[1]) ** 2
        return dist_sq <= radius**2


def register() -> None:
    """Register both tasks with Gymnasium (once; importing ``rlscale.envs`` calls this)."""
    for env_id, entry_point, threshold in (
        (BALANCE_ID, "ContinuousCartPoleEnv", BALANCE_REWARD_THRESHOLD),
        (SWING_UP_ID, "ContinuousCartPoleSwingUpEnv", None),
    ):
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=f"{__name__}:{entry_point}",
                max_episode_steps=MAX_EPISODE_STEPS,
                reward_threshold=threshold,
            )
