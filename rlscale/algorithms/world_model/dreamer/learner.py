"""Dreamer's Learner: one world-model step and one actor and critic step in imagination per
replayed batch of sequences (see the package docstring for the maths).

The Learner is a ``TorchLearner``: the module sits on its device (a GPU with
``gpus_per_learner``), every tensor is made on that device, and its three Adam optimizers
(``world_model``, ``actor``, ``critic``) are registered with RLlib, so checkpoints hold their
moments. The algorithm calls :meth:`DreamerLearner.train_on_sequences` with a block of batches
instead of ``LearnerGroup.update``: each batch takes three optimizer steps on three losses, in an
order (world model, then behaviour on the updated model's posteriors) that one summed loss and
one backward pass cannot express without the actor's loss moving the world model.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from torch import Tensor, nn

from rlscale.algorithms.common.polyak import polyak_step
from rlscale.algorithms.world_model.dreamer.module import DreamerModule
from rlscale.modules.world_models import LatentState, symlog

SEQUENCE_KEYS = ("observations", "actions", "rewards", "continues", "is_first")
"""What a replayed batch holds, each ``[B, L, ...]`` (``SequenceReplay.sample``)."""


def lambda_returns(
    rewards: Tensor, continues: Tensor, values: Tensor, gamma: float, lambda_: float
) -> Tensor:
    """λ-returns of an imagined trajectory (Dreamer eq. 6 in its recursive form).

    ``rewards [H, N]`` and ``continues [H, N]`` are those of arriving at s_1 .. s_H, ``values
    [H + 1, N]`` the values of s_0 .. s_H. Returns ``R [H, N]`` of s_0 .. s_{H-1}:

        R_{H}  = v(s_H)
        R_t    = r_{t+1} + γ c_{t+1} ((1 − λ) v(s_{t+1}) + λ R_{t+1})
    """
    horizon = rewards.shape[0]
    next_return = values[horizon]
    returns = []
    for t in reversed(range(horizon)):
        bootstrap = (1.0 - lambda_) * values[t + 1] + lambda_ * next_return
        next_return = rewards[t] + gamma * continues[t] * bootstrap
        returns.append(next_return)
    return torch.stack(returns[::-1])


def survival_weights(continues: Tensor) -> Tensor:
    """``[H, N]``: the probability that the imagined episode still runs at s_0 .. s_{H-1}
    (1 at s_0, then the running product of the predicted continues): states past a predicted
    termination weigh nothing in the actor's and critic's losses."""
    ones = torch.ones_like(continues[:1])
    return torch.cumprod(torch.cat([ones, continues[:-1]]), dim=0)


@dataclass
class BehaviorLosses:
    actor: Tensor
    critic: Tensor
    metrics: dict[str, Tensor]


@contextlib.contextmanager
def frozen(network: nn.Module) -> Iterator[None]:
    """Gradients flow through ``network`` to its inputs but not into its weights."""
    flags = [parameter.requires_grad for parameter in network.parameters()]
    network.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(network.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)


class DreamerLearner(TorchLearner):
    """World model, actor and critic updates on replayed sequences (module docstring)."""

    OPTIMIZERS = ("world_model", "actor", "critic")

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        module = self._module[module_id].unwrapped()
        rates = {
            "world_model": config.model_lr,
            "actor": config.actor_lr,
            "critic": config.critic_lr,
        }
        for name in self.OPTIMIZERS:
            params = list(getattr(module, name).parameters())
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=name,
                optimizer=torch.optim.Adam(params, eps=config.adam_epsilon),
                params=params,
                lr_or_lr_schedule=rates[name],
            )

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        raise NotImplementedError(
            "Dreamer updates through DreamerLearner.train_on_sequences (three optimizer steps "
            "per batch), not through LearnerGroup.update"
        )

    def _dreamer_module(self) -> DreamerModule:
        return self.module[DEFAULT_MODULE_ID].unwrapped()

    def train_on_sequences(self, sequences: dict[str, np.ndarray]) -> dict[str, float]:
        """One update per leading index of ``sequences`` (each key ``[U, B, L, ...]``); the
        metrics averaged over the ``U`` updates."""
        totals: dict[str, float] = defaultdict(float)
        updates = len(sequences["actions"])
        for index in range(updates):
            batch = {key: self._tensor(key, sequences[key][index]) for key in SEQUENCE_KEYS}
            for key, value in self.update_on_batch(batch).items():
                totals[key] += value
        return {key: value / updates for key, value in totals.items()}

    def _tensor(self, key: str, array: np.ndarray) -> Tensor:
        tensor = torch.as_tensor(array, device=self._device)
        if key == "is_first":
            return tensor.bool()
        # Images stay uint8 (the encoder scales them); everything else is float32.
        return tensor if tensor.dtype == torch.uint8 else tensor.float()

    def update_on_batch(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """The world model's step, then the actor's and the critic's from its posteriors, then
        the slow critic's move toward the critic."""
        module, config = self._dreamer_module(), self.config
        model_loss = module.world_model.loss(*(batch[key] for key in SEQUENCE_KEYS))
        self._step("world_model", model_loss.total)
        starts = model_loss.posteriors.flatten()
        if config.imagination_starts < len(starts.deterministic):
            chosen = torch.randperm(len(starts.deterministic), device=self._device)
            starts = starts.map(lambda tensor: tensor[chosen[: config.imagination_starts]])
        behavior = self.behavior_losses(module, starts)
        self._step("actor", behavior.actor)
        self._step("critic", behavior.critic)
        polyak_step(module.critic, module.target_critic, config.critic_tau)
        metrics = {f"model_{key}": value for key, value in model_loss.metrics.items()}
        metrics.update({key: float(value) for key, value in behavior.metrics.items()})
        return metrics

    def behavior_losses(self, module: DreamerModule, starts: LatentState) -> BehaviorLosses:
        """The actor's and the critic's losses on ``horizon`` imagined steps from ``starts``."""
        config = self.config
        log_probs: list[Tensor] = []
        pre_squash_means: list[Tensor] = []

        def policy(features: Tensor) -> Tensor:
            distribution = module.actor(features)
            actions, log_prob = distribution.rsample_and_logp()
            log_probs.append(log_prob)
            pre_squash_means.append(distribution.mean)
            return actions

        # The world model's and the slow critic's weights stay fixed; the return's gradient
        # reaches the actor through the imagined states, rewards and values (DreamerV1).
        with frozen(module.world_model):
            rollout = module.world_model.imagine(starts.detach(), policy, config.horizon)
            features = rollout.features
            rewards = module.world_model.predict_reward(features[1:])
            continues = module.world_model.predict_continue(features[1:])
            values = module.value(features, target=True)
        returns = lambda_returns(rewards, continues, values, config.gamma, config.return_lambda)
        weights = survival_weights(continues.detach())
        module.return_normalizer.update(returns)
        scale = module.return_normalizer.scale()
        entropy = -torch.stack(log_probs)  # a one-sample estimate per imagined step
        means = torch.stack(pre_squash_means)
        actor = -(weights * (returns / scale + config.entropy_scale * entropy)).mean()
        actor = actor + config.actor_mean_penalty * 0.5 * means.pow(2).mean()
        predicted = module.symlog_value(features[:-1].detach())
        critic = (weights * 0.5 * (predicted - symlog(returns.detach())) ** 2).mean()
        metrics = {
            "actor_loss": actor.detach(),
            "critic_loss": critic.detach(),
            "imagined_return": returns.detach().mean(),
            "imagined_reward": rewards.detach().mean(),
            "return_scale": scale.detach(),
            "entropy": entropy.detach().mean(),
            "actor_pre_squash_mean_abs": means.detach().abs().mean(),
        }
        return BehaviorLosses(actor, critic, metrics)

    def _step(self, name: str, loss: Tensor) -> None:
        """One step of optimizer ``name`` on ``loss``, gradients clipped to ``grad_clip``."""
        optimizer = self.get_optimizer(DEFAULT_MODULE_ID, name)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        optimizer.step()
