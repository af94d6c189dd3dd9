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


def absorbing_value(gamma: float, chi2_alpha: float) -> float:
    """V of the absorbing state that follows a terminal transition, ``-2 alpha / (1 - gamma)``.

    Kostrikov et al. 2019 ("Discriminator-Actor-Critic", ICLR, Sec. 4.2) replace the end of an
    episode by an absorbing state that loops on itself, so that ending is valued like any other
    outcome instead of with V = 0. Only the policy reaches it (the expert's episodes never end
    that way), so in the loss above its rows enter E_rho and the mixture's regularizer alone,
    with r = V - gamma V = (1 - gamma) V: minimizing (1 - gamma) V + ((1 - gamma) V)^2 /
    (4 alpha) gives (1 - gamma) V = -2 alpha, a reward of -2 alpha every step forever, the
    lowest the chi-squared objective assigns. This value is used directly, without rows or a
    parameter for the absorbing state.
    """
    return -2.0 * chi2_alpha / (1.0 - gamma)


def value_after(
    next_value: torch.Tensor,
    terminated: torch.Tensor,
    *,
    gamma: float,
    chi2_alpha: float,
    absorbing: bool,
) -> torch.Tensor:
    """V(s') where ``s'`` ends the episode: the absorbing state's value with ``absorbing``, else
    0 (the paper's)."""
    ended = terminated.bool()
    if absorbing:
        return torch.where(ended, absorbing_value(gamma, chi2_alpha), next_value)
    return torch.where(ended, torch.zeros_like(next_value), next_value)


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
    absorbing: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discrete actions: the chi-squared IQ-Learn loss, and the recovered reward ``[rows]``.

    ``q_values`` / ``next_q_values`` ``[rows, n_actions]`` at ``s`` and ``s'``; ``actions``
    ``[rows]`` the logged ones; ``terminated`` ``[rows]`` (``V(s')`` is :func:`value_after`'s);
    ``is_expert`` ``[rows]`` (None: every row is the expert's, the offline loss).
    """
    logged_q = q_values.gather(1, actions.long()[:, None])[:, 0]
    value = soft_value(q_values, temperature)
    next_value = value_after(
        soft_value(next_q_values, temperature),
        terminated,
        gamma=gamma,
        chi2_alpha=chi2_alpha,
        absorbing=absorbing,
    )
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
    absorbing: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous actions: the chi-squared IQ-Learn loss of each critic (summed), and the
    recovered reward ``[critics, rows]``.

    ``logged_q`` ``[critics, rows]`` is ``Q_i(s, a)`` of the logged action; ``policy_q`` /
    ``next_policy_q`` ``[critics, rows]`` are ``Q_i`` of policy samples at ``s`` / ``s'`` with
    their ``log pi`` ``[rows]``; each critic's soft value is :func:`sampled_soft_value` of its
    own ``Q_i``.
    """
    value = sampled_soft_value(policy_q, policy_logp, temperature)
    next_value = value_after(
        sampled_soft_value(next_policy_q, next_policy_logp, temperature),
        terminated,
        gamma=gamma,
        chi2_alpha=chi2_alpha,
        absorbing=absorbing,
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
