"""Learners of the policy-gradient family: one base wires GAE; the three differ in the update.

- GAE (Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
  Estimation") is RLlib's ``GeneralAdvantageEstimation`` learner connector, added in
  :meth:`ActorCriticLearner.build` for all three; it writes standardized advantages and
  λ-return value targets. rlscale's subclass also keeps the values it computed (``vf_preds``),
  which PPO's optional value clipping needs.
- A2C (Mnih et al. 2016, the synchronous variant of A3C): one gradient step per batch on
  ``-A·log π + c_v (V - V_targ)² - c_H H``.
- PPO (Schulman et al. 2017): the clipped surrogate, optional value clipping around the values
  at sampling time, optional early stop of the epochs once a minibatch's approximate KL passes
  ``1.5 × target_kl``.
- TRPO (Schulman et al. 2015): see :mod:`rlscale.algorithms.policy_gradient.trpo_step`.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.connectors.learner import (
    AddOneTsToEpisodesAndTruncate,
    GeneralAdvantageEstimation,
)
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.torch_utils import explained_variance

from rlscale.algorithms.policy_gradient.module import VALUES
from rlscale.algorithms.policy_gradient.trpo_step import conjugate_gradient_step

ADVANTAGES = Postprocessing.ADVANTAGES
VALUE_TARGETS = Postprocessing.VALUE_TARGETS
APPROX_KL_KEY = "approx_kl"
EPOCHS_STOPPED_KEY = "kl_early_stopped"
TRPO_KL_KEY = "trpo_kl"
TRPO_ACCEPTED_KEY = "trpo_step_accepted"
TRPO_BACKTRACKS_KEY = "trpo_line_search_steps"
TRPO_IMPROVEMENT_KEY = "trpo_surrogate_improvement"
VALUE_OPTIMIZER = "value"


class GAEKeepingValues(GeneralAdvantageEstimation):
    """RLlib's GAE connector that also leaves V(s) at sampling time in ``vf_preds``."""

    def __call__(self, *, rl_module, episodes, batch, **kwargs):
        with torch.no_grad():
            for module_id, module in rl_module.items():
                if module_id in batch and isinstance(module, ValueFunctionAPI):
                    batch[module_id][Columns.VF_PREDS] = module.compute_values(batch[module_id])
        return super().__call__(rl_module=rl_module, episodes=episodes, batch=batch, **kwargs)


def masked_mean(values: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """Mean over the real timesteps (RLlib pads each episode chunk with one masked step)."""
    mask = batch.get(Columns.LOSS_MASK)
    if mask is None:
        return values.mean()
    return values[mask].mean()


class ActorCriticLearner(TorchLearner):
    """Shared by A2C, PPO and TRPO: GAE in the learner pipeline and the policy terms."""

    def build(self) -> None:
        super().build()
        if (
            self._learner_connector is not None
            and self.config.add_default_connectors_to_learner_pipeline
        ):
            # The extra timestep per episode chunk gives GAE its bootstrap value V(s_T).
            self._learner_connector.prepend(AddOneTsToEpisodesAndTruncate())
            self._learner_connector.append(
                GAEKeepingValues(gamma=self.config.gamma, lambda_=self.config.lambda_)
            )

    @classmethod
    def rl_module_required_apis(cls) -> list[type]:
        return [ValueFunctionAPI]

    def action_distributions(self, module_id: str, batch: dict[str, Any], fwd_out: dict[str, Any]):
        """(current distribution, distribution at sampling time) for this module's batch."""
        module = self.module[module_id].unwrapped()
        current = module.get_train_action_dist_cls().from_logits(
            fwd_out[Columns.ACTION_DIST_INPUTS]
        )
        behaviour = module.get_exploration_action_dist_cls().from_logits(
            batch[Columns.ACTION_DIST_INPUTS]
        )
        return current, behaviour

    def log_common_metrics(
        self, module_id: str, batch: dict[str, Any], values: torch.Tensor, metrics: dict[str, Any]
    ) -> None:
        metrics["vf_explained_var"] = explained_variance(batch[VALUE_TARGETS], values.detach())
        self.metrics.log_dict(metrics, key=module_id, window=1)


class A2CLearner(ActorCriticLearner):
    """Advantage actor-critic: one synchronous gradient step per batch (Mnih et al. 2016)."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out) -> torch.Tensor:
        current, _ = self.action_distributions(module_id, batch, fwd_out)
        policy_loss = -masked_mean(current.logp(batch[Columns.ACTIONS]) * batch[ADVANTAGES], batch)
        values = fwd_out[VALUES]
        value_loss = masked_mean((values - batch[VALUE_TARGETS]) ** 2, batch)
        entropy = masked_mean(current.entropy(), batch)
        self.log_common_metrics(
            module_id,
            batch,
            values,
            {POLICY_LOSS_KEY: policy_loss, VF_LOSS_KEY: value_loss, ENTROPY_KEY: entropy},
        )
        return policy_loss + config.vf_loss_coeff * value_loss - config.entropy_coeff * entropy


class PPOLearner(ActorCriticLearner):
    """Clipped surrogate, optional value clipping, optional KL early stop (Schulman et al. 2017)."""

    def build(self) -> None:
        super().build()
        self._kl_stopped = False

    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        self._kl_stopped = False

    def _update(self, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
        if self._kl_stopped:
            return {}, {}, {}
        return self._possibly_compiled_update(batch)

    def apply_gradients(self, gradients_dict) -> None:
        # The early stop checks the minibatch's KL before its step, as Stable-Baselines3 does.
        if self._kl_stopped:
            return
        super().apply_gradients(gradients_dict)

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out) -> torch.Tensor:
        current, _ = self.action_distributions(module_id, batch, fwd_out)
        log_ratio = current.logp(batch[Columns.ACTIONS]) - batch[Columns.ACTION_LOGP]
        ratio = torch.exp(log_ratio)
        advantages = batch[ADVANTAGES]
        clipped = torch.clamp(ratio, 1 - config.clip_param, 1 + config.clip_param)
        policy_loss = -masked_mean(torch.min(advantages * ratio, advantages * clipped), batch)

        values = fwd_out[VALUES]
        value_loss = (values - batch[VALUE_TARGETS]) ** 2
        if config.value_clip_param is not None:
            old = batch[Columns.VF_PREDS]
            clipped_values = old + torch.clamp(
                values - old, -config.value_clip_param, config.value_clip_param
            )
            value_loss = torch.max(value_loss, (clipped_values - batch[VALUE_TARGETS]) ** 2)
        value_loss = masked_mean(value_loss, batch)
        entropy = masked_mean(current.entropy(), batch)

        with torch.no_grad():
            # The low-variance estimator of KL(old || new): E[(r - 1) - log r].
            approx_kl = masked_mean((ratio - 1) - log_ratio, batch)
        if config.target_kl is not None and approx_kl > 1.5 * config.target_kl:
            self._kl_stopped = True
        self.log_common_metrics(
            module_id,
            batch,
            values,
            {
                POLICY_LOSS_KEY: policy_loss,
                VF_LOSS_KEY: value_loss,
                ENTROPY_KEY: entropy,
                APPROX_KL_KEY: approx_kl,
                EPOCHS_STOPPED_KEY: float(self._kl_stopped),
            },
        )
        return policy_loss + config.vf_loss_coeff * value_loss - config.entropy_coeff * entropy


class TRPOLearner(ActorCriticLearner):
    """Natural-gradient policy step under a KL bound; the value function has its own optimizer.

    One ``update`` = one TRPO policy step on the whole batch (conjugate gradient on
    Fisher-vector products, step scaled to ``max_kl``, backtracking line search), then
    ``vf_iters`` epochs of value regression on the λ-return targets with Adam (``vf_lr``).
    """

    def build(self) -> None:
        super().build()
        self._value_shuffles = torch.Generator().manual_seed(int(self.config.seed or 0))

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        net = self.module[module_id].unwrapped().net
        params = net.value_parameters()
        self.register_optimizer(
            module_id=module_id,
            optimizer_name=VALUE_OPTIMIZER,
            optimizer=torch.optim.Adam(params),
            params=params,
            lr_or_lr_schedule=config.vf_lr,
        )

    def _update(self, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
        losses = {}
        for module_id, module_batch in batch.items():
            config = self.config.get_config_for_module(module_id)
            self._policy_step(module_id, config, module_batch)
            losses[module_id] = self._fit_values(module_id, config, module_batch)
        return {}, losses, {}

    def _policy_step(self, module_id: str, config, batch: dict[str, Any]) -> None:
        module = self.module[module_id].unwrapped()
        dist_cls = module.get_train_action_dist_cls()
        params = module.net.policy_parameters()
        obs = module.observations(batch)
        actions, advantages = batch[Columns.ACTIONS], batch[ADVANTAGES]
        with torch.no_grad():
            reference = dist_cls.from_logits(module.net.distribution_inputs(obs))
            reference_logp = reference.logp(actions)

        def surrogate() -> torch.Tensor:
            current = dist_cls.from_logits(module.net.distribution_inputs(obs))
            return masked_mean(
                torch.exp(current.logp(actions) - reference_logp) * advantages, batch
            )

        def mean_kl() -> torch.Tensor:
            current = dist_cls.from_logits(module.net.distribution_inputs(obs))
            return masked_mean(reference.kl(current), batch)

        result = conjugate_gradient_step(
            params,
            surrogate,
            mean_kl,
            max_kl=config.max_kl,
            cg_iters=config.cg_iters,
            cg_damping=config.cg_damping,
            backtrack_steps=config.line_search_steps,
            backtrack_ratio=config.line_search_ratio,
        )
        with torch.no_grad():
            entropy = masked_mean(reference.entropy(), batch)
        self.metrics.log_dict(
            {
                TRPO_KL_KEY: result.kl,
                TRPO_ACCEPTED_KEY: float(result.accepted),
                TRPO_BACKTRACKS_KEY: result.backtracks,
                TRPO_IMPROVEMENT_KEY: result.improvement,
                POLICY_LOSS_KEY: -result.surrogate_before,
                ENTROPY_KEY: entropy,
            },
            key=module_id,
            window=1,
        )

    def _fit_values(self, module_id: str, config, batch: dict[str, Any]) -> torch.Tensor:
        module = self.module[module_id].unwrapped()
        optimizer = self.get_optimizer(module_id, VALUE_OPTIMIZER)
        mask = batch.get(Columns.LOSS_MASK)
        obs = module.observations(batch)
        targets = batch[VALUE_TARGETS]
        if mask is not None:
            obs, targets = obs[mask], targets[mask]
        count = len(targets)
        minibatch = min(config.vf_minibatch_size or count, count)
        loss = torch.zeros(())
        for _ in range(config.vf_iters):
            order = torch.randperm(count, generator=self._value_shuffles)
            for start in range(0, count, minibatch):
                rows = order[start : start + minibatch]
                loss = ((module.net.value(obs[rows]) - targets[rows]) ** 2).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(module.net.value_parameters(), config.grad_clip)
                optimizer.step()
        with torch.no_grad():
            values = module.net.value(obs)
            value_loss = ((values - targets) ** 2).mean()
        self.metrics.log_dict(
            {VF_LOSS_KEY: value_loss, "vf_explained_var": explained_variance(targets, values)},
            key=module_id,
            window=1,
        )
        return value_loss

    # Learner declares this abstract; TRPO's _update() never calls it.
    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out) -> torch.Tensor:
        raise NotImplementedError("TRPO updates in _update(); it has no single loss")
