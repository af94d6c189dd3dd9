"""IQ-Learn's chi-squared objective (see the package docstring), on plain tensors."""

from __future__ import annotations

import torch

from rlscale.modules.rl_modules.soft_q import soft_value


def chi2_iq_objective(
    reward: torch.Tensor,
    value: torch.Tensor,
    next_value: torch.Tensor,
    is_expert: torch.Tensor,
    *,
    gamma: float,
    chi2_alpha: float,
    chi2_on_mixture: bool,
) -> torch.Tensor:
    """``-E_expert[r] + E_reg[r^2] / (4 alpha) + E_rho[V(s) - gamma V(s')]``.

    ``reward``, ``value`` and ``next_value`` (already 0 past a terminal ``s'``) are
    ``[..., rows]`` (a leading critic axis is summed over); ``is_expert`` ``[rows]`` marks the
    expert's rows. ``rho`` is every row; the regularizer's ``reg`` too with
    ``chi2_on_mixture``, else the expert's rows. With expert rows only it is the offline loss
    ``-E[r - r^2 / (4 alpha)] + E[V(s) - gamma V(s')]``.
    """
    expert = is_expert.to(reward.dtype)
    expert_weights = expert / expert.sum().clamp(min=1.0)
    every_row = torch.full_like(expert, 1.0 / len(expert))
    regularizer_weights = every_row if chi2_on_mixture else expert_weights
    divergence_term = (reward * expert_weights).sum(-1)
    regularizer = (reward.pow(2) * regularizer_weights).sum(-1) / (4.0 * chi2_alpha)
    value_term = (value - gamma * next_value).mean(-1)
    return (value_term - divergence_term + regularizer).sum()


def iq_learn_loss(
    q_values: torch.Tensor,
    next_q_values: torch.Tensor,
    actions: torch.Tensor,
    terminated: torch.Tensor,
    *,
    gamma: float,
    temperature: float,
    chi2_alpha: float,
    is_expert: torch.Tensor | None = None,
    chi2_on_mixture: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discrete actions: the chi-squared IQ-Learn loss, and the recovered reward ``[rows]``.

    ``q_values`` / ``next_q_values`` ``[rows, n_actions]`` at ``s`` and ``s'``; ``actions``
    ``[rows]`` the logged ones; ``terminated`` ``[rows]`` (``V(s') = 0``); ``is_expert``
    ``[rows]`` (None: every row is the expert's, the offline loss).
    """
    logged_q = q_values.gather(1, actions.long()[:, None])[:, 0]
    value = soft_value(q_values, temperature)
    next_value = (1.0 - terminated.float()) * soft_value(next_q_values, temperature)
    reward = logged_q - gamma * next_value
    if is_expert is None:
        is_expert = torch.ones_like(reward)
    loss = chi2_iq_objective(
        reward,
        value,
        next_value,
        is_expert,
        gamma=gamma,
        chi2_alpha=chi2_alpha,
        chi2_on_mixture=chi2_on_mixture,
    )
    return loss, reward.detach()


def sampled_soft_value(
    q_of_policy_action: torch.Tensor, logp: torch.Tensor, temperature: float
) -> torch.Tensor:
    """One-sample estimate of ``V(s) = E_{a~pi}[Q(s, a) - alpha log pi(a|s)]``.

    ``q_of_policy_action`` ``[critics, rows]`` is ``Q_i(s, a~)`` of an action ``a~ ~ pi(.|s)``,
    ``logp`` ``[rows]`` its ``log pi(a~|s)``.
    """
    return q_of_policy_action - temperature * logp


def continuous_iq_loss(
    logged_q: torch.Tensor,
    policy_q: torch.Tensor,
    policy_logp: torch.Tensor,
    next_policy_q: torch.Tensor,
    next_policy_logp: torch.Tensor,
    terminated: torch.Tensor,
    is_expert: torch.Tensor,
    *,
    gamma: float,
    temperature: float,
    chi2_alpha: float,
    chi2_on_mixture: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous actions: the chi-squared IQ-Learn loss of each critic (summed), and the
    recovered reward ``[critics, rows]``.

    ``logged_q`` ``[critics, rows]`` is ``Q_i(s, a)`` of the logged action; ``policy_q`` /
    ``next_policy_q`` ``[critics, rows]`` are ``Q_i`` of policy samples at ``s`` / ``s'`` with
    their ``log pi`` ``[rows]``; each critic's soft value is :func:`sampled_soft_value` of its
    own ``Q_i``.
    """
    value = sampled_soft_value(policy_q, policy_logp, temperature)
    next_value = (1.0 - terminated.float()) * sampled_soft_value(
        next_policy_q, next_policy_logp, temperature
    )
    reward = logged_q - gamma * next_value
    loss = chi2_iq_objective(
        reward,
        value,
        next_value,
        is_expert,
        gamma=gamma,
        chi2_alpha=chi2_alpha,
        chi2_on_mixture=chi2_on_mixture,
    )
    return loss, reward.detach()


def pearson_correlation(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Pearson's r of two ``[N]`` tensors, or None when either is constant."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    scale = a.norm() * b.norm()
    if scale <= 1e-12:
        return None
    return float((a * b).sum() / scale)
