"""Gymnasium's CartPole-v1 physics as a differentiable torch model with learnable constants.

The equations of motion are those of Barto, Sutton & Anderson (1983), "Neuronlike adaptive
elements that can solve difficult learning control problems" (IEEE Trans. SMC 13(5)), as
Gymnasium's ``CartPole-v1`` integrates them (its ``"euler"`` kinematics integrator). With
``m_c``, ``m_p`` the cart and pole masses, ``M = m_c + m_p``, ``l`` the pole's half-length,
``g`` gravity, ``theta`` from upright and ``F = force_mag * u`` the force on the cart, Gymnasium
computes::

    temp      = (F + m_p l theta_dot^2 sin(theta)) / M
    theta_acc = (g sin(theta) - cos(theta) temp) / (l (4/3 - m_p cos(theta)^2 / M))
    x_acc     = temp - m_p l theta_acc cos(theta) / M

and one explicit Euler step of ``tau`` seconds (0.02 in CartPole-v1) moves
``(x, x_dot, theta, theta_dot)`` with the velocities and accelerations from *before* the step.

**What a transition can tell.** The five constants ``(g, m_c, m_p, l, force_mag)`` enter the
step only through four combinations. Write ``rho = m_p / M`` (the pole's share of the mass) and
``phi = force_mag / M`` (the acceleration of the whole cart-pole under full push). Then
``F / M = phi u`` and ``m_p l / M = rho l``, so the equations above are exactly::

    temp      = phi u + rho l theta_dot^2 sin(theta)
    theta_acc = (g sin(theta) - cos(theta) temp) / (l (4/3 - rho cos(theta)^2))
    x_acc     = temp - rho l theta_acc cos(theta)

Scaling every mass and ``force_mag`` by the same factor leaves ``rho`` and ``phi`` and hence
every trajectory unchanged, so no data of states and commanded actions ``u`` can recover the
masses themselves; ``(g, l, rho, phi)`` is what a fit can find, and all four can be found: the
``u`` terms of ``x_acc`` and ``theta_acc`` are in the ratio ``-(4/3) l / cos(theta)`` (giving
``l``), their ``g sin(theta)`` terms in the ratio ``-rho l cos(theta)`` (giving ``rho``), and
the ``u`` term of ``x_acc``, ``phi (4/3) / (4/3 - rho cos^2(theta))``, then gives ``phi`` and
the ``g`` term of ``theta_acc`` gives ``g``. Fixing one constant, the known force of a full push
``force_mag``, resolves the masses: ``M = force_mag / phi``, ``m_p = rho M``, ``m_c = M - m_p``
(:meth:`CartPoleModel.physical_parameters`).

:class:`CartPoleModel` learns ``(g, l, rho, phi)`` in unconstrained coordinates: ``log g``,
``log l``, ``log phi`` (positive) and ``logit rho`` (``rho`` in ``(0, 1)``, so that the
recovered cart mass stays positive; near the true ``rho ~ 0.09`` the logit is almost the log).
``tau`` is a fixed known constant (the control period), not a parameter.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
LENGTH = 0.5
"""Half the pole's length (m), as Gymnasium's ``length``."""
FORCE_MAG = 10.0
TIME_STEP = 0.02
"""CartPole-v1's constants (``gravity``, ``masscart``, ``masspole``, ``length``, ``force_mag``,
``tau``); ``rlscale.envs.continuous_cartpole.CARTPOLE_V1`` holds the same values for the env."""


class CartPoleModel(nn.Module):
    """CartPole-v1's dynamics: ``[batch, 4]`` states, ``[batch, 1]`` commands -> next states.

    The state is ``(x, x_dot, theta, theta_dot)`` (CartPole-v1's observation; ``theta`` is not
    wrapped); the action is the force command ``u``, clipped into ``[-1, 1]`` as the continuous
    CartPole env does, pushing with ``phi * M * u`` newtons (``+1`` / ``-1`` are CartPole-v1's
    discrete actions ``1`` / ``0``). The learnable parameters are the identifiable combinations
    ``gravity``, ``length``, ``mass_ratio`` (``rho = m_p / M``) and ``force_per_mass``
    (``phi = force_mag / M``); see the module docstring. Build one from the physical constants
    with :meth:`from_physical`.

    The parameters are stored in float64 and cast to the states' dtype on each call; the model
    follows its parameters' device (move it with ``.to(device)``). Deterministic: ``predict``
    returns the next-state tensor.
    """

    def __init__(
        self,
        gravity: float = GRAVITY,
        length: float = LENGTH,
        mass_ratio: float = MASSPOLE / (MASSCART + MASSPOLE),
        force_per_mass: float = FORCE_MAG / (MASSCART + MASSPOLE),
        time_step: float = TIME_STEP,
    ):
        super().__init__()
        _check_positive(gravity=gravity, length=length, force_per_mass=force_per_mass)
        _check_positive(time_step=time_step)
        if not 0.0 < mass_ratio < 1.0:
            raise ValueError(
                f"mass_ratio = m_pole / (m_cart + m_pole) must lie in (0, 1), got {mass_ratio}"
            )
        self.time_step = float(time_step)
        self.log_gravity = _parameter(math.log(gravity))
        self.log_length = _parameter(math.log(length))
        self.logit_mass_ratio = _parameter(math.log(mass_ratio / (1.0 - mass_ratio)))
        self.log_force_per_mass = _parameter(math.log(force_per_mass))

    @classmethod
    def from_physical(
        cls,
        gravity: float = GRAVITY,
        masscart: float = MASSCART,
        masspole: float = MASSPOLE,
        length: float = LENGTH,
        force_mag: float = FORCE_MAG,
        tau: float = TIME_STEP,
    ) -> CartPoleModel:
        """The model of a cart-pole with these constants (Gymnasium's names and units).

        ``CartPoleModel.from_physical(**dataclasses.asdict(CARTPOLE_V1))`` models the env.
        """
        _check_positive(masscart=masscart, masspole=masspole, force_mag=force_mag)
        total_mass = masscart + masspole
        return cls(
            gravity=gravity,
            length=length,
            mass_ratio=masspole / total_mass,
            force_per_mass=force_mag / total_mass,
            time_step=tau,
        )

    # --- the identifiable parameters, as tensors and as numbers --------------------------------

    @property
    def gravity(self) -> Tensor:
        return self.log_gravity.exp()

    @property
    def length(self) -> Tensor:
        return self.log_length.exp()

    @property
    def mass_ratio(self) -> Tensor:
        return torch.sigmoid(self.logit_mass_ratio)

    @property
    def force_per_mass(self) -> Tensor:
        return self.log_force_per_mass.exp()

    def identifiable_parameters(self) -> dict[str, float]:
        """``{"gravity", "length", "mass_ratio", "force_per_mass"}`` as plain numbers."""
        with torch.no_grad():
            return {
                "gravity": float(self.gravity),
                "length": float(self.length),
                "mass_ratio": float(self.mass_ratio),
                "force_per_mass": float(self.force_per_mass),
            }

    def physical_parameters(self, force_mag: float = FORCE_MAG) -> dict[str, float]:
        """The physical constants, given the one the data cannot tell: the full-push force.

        Returns ``gravity``, ``masscart``, ``masspole``, ``length``, ``force_mag`` and ``tau``
        (the field names of the env's ``CartPoleParameters``, so
        ``CartPoleParameters(**model.physical_parameters())`` works).
        """
        _check_positive(force_mag=force_mag)
        values = self.identifiable_parameters()
        total_mass = force_mag / values["force_per_mass"]
        masspole = values["mass_ratio"] * total_mass
        return {
            "gravity": values["gravity"],
            "masscart": total_mass - masspole,
            "masspole": masspole,
            "length": values["length"],
            "force_mag": float(force_mag),
            "tau": self.time_step,
        }

    # --- dynamics -------------------------------------------------------------------------------

    def predict(self, state: Tensor, action: Tensor) -> Tensor:
        """One Euler step for each row; differentiable in state, action and parameters."""
        like = dict(dtype=state.dtype)
        gravity = self.gravity.to(**like)
        length = self.length.to(**like)
        rho = self.mass_ratio.to(**like)
        phi = self.force_per_mass.to(**like)

        x, x_dot, theta, theta_dot = state.unbind(-1)
        command = action[..., 0].clamp(-1.0, 1.0)
        sin_theta, cos_theta = torch.sin(theta), torch.cos(theta)
        temp = phi * command + rho * length * theta_dot**2 * sin_theta
        theta_acc = (gravity * sin_theta - cos_theta * temp) / (
            length * (4.0 / 3.0 - rho * cos_theta**2)
        )
        x_acc = temp - rho * length * theta_acc * cos_theta

        tau = self.time_step
        return torch.stack(
            [
                x + tau * x_dot,
                x_dot + tau * x_acc,
                theta + tau * theta_dot,
                theta_dot + tau * theta_acc,
            ],
            dim=-1,
        )

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        return self.predict(state, action)


def _parameter(value: float) -> nn.Parameter:
    return nn.Parameter(torch.tensor(value, dtype=torch.float64))


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
