"""TRPO: trust region policy optimization (Schulman et al. 2015, "Trust Region Policy
Optimization").

One policy step per sampled batch, on the whole batch (advantages A_t from GAE, see
:mod:`rlscale.algorithms.policy_gradient.actor_critic`)::

    maximize   L(θ) = E[π_θ(a_t|s_t) / π_old(a_t|s_t) · A_t]
    subject to E[KL(π_old(·|s_t) ‖ π_θ(·|s_t))] ≤ δ          (δ = ``max_kl``)

solved approximately by a natural-gradient step: x ≈ F⁻¹ ∇L by conjugate gradient on
Fisher-vector products, scaled to the trust region's edge (β = √(2δ / xᵀF x)), then a
backtracking line search on the measured KL and surrogate (see
:mod:`rlscale.algorithms.policy_gradient.trpo_step`). The value function is then fitted on the
λ-return targets by Adam (``vf_lr``) over ``vf_iters`` epochs of ``vf_minibatch_size``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from ray.rllib.algorithms.ppo import PPO as RLlibPPO
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY
from ray.rllib.utils.torch_utils import explained_variance

from rlscale.algorithms.common.losses import masked_mean
from rlscale.algorithms.policy_gradient.actor_critic import (
    ADVANTAGES,
    BOX_ACTION_DEFAULTS,
    VALUE_TARGETS,
    ActorCriticConfig,
    ActorCriticLearner,
)
from rlscale.algorithms.policy_gradient.trpo_step import conjugate_gradient_step

TRPO_KL_KEY = "trpo_kl"
TRPO_ACCEPTED_KEY = "trpo_step_accepted"
TRPO_BACKTRACKS_KEY = "trpo_line_search_steps"
TRPO_IMPROVEMENT_KEY = "trpo_surrogate_improvement"
VALUE_OPTIMIZER = "value"


class TRPOConfig(ActorCriticConfig):
    """TRPO: one natural-gradient step per batch under mean KL ≤ ``max_kl``.

    ``lr`` is unused (the step size comes from ``max_kl``); the value function is fitted with
    Adam at ``vf_lr`` for ``vf_iters`` epochs over minibatches of ``vf_minibatch_size``.
    ``cg_iters`` and ``cg_damping`` set the conjugate-gradient solve; ``line_search_steps`` step
    sizes, each ``line_search_ratio`` times the last, are tried before the step is rejected.
    """

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = (
        "max_kl",
        "cg_iters",
        "cg_damping",
        "line_search_steps",
        "line_search_ratio",
        "vf_lr",
        "vf_iters",
        "vf_minibatch_size",
    )
    CONTINUOUS_DEFAULTS: ClassVar[dict[str, Any]] = {
        **BOX_ACTION_DEFAULTS,
        "train_batch_size_per_learner": 2048,
        "lambda_": 0.95,
    }

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or TRPO)
        self.num_epochs = 1
        self.minibatch_size = None
        self.train_batch_size_per_learner = 1024
        self.lambda_ = 0.98
        self.max_kl = 0.02
        self.cg_iters = 10
        self.cg_damping = 0.1
        self.line_search_steps = 10
        self.line_search_ratio = 0.5
        self.vf_lr = 1e-3
        self.vf_iters = 10
        self.vf_minibatch_size = 256

    def get_default_learner_class(self) -> type[TRPOLearner]:
        return TRPOLearner

    def validate(self) -> None:
        super().validate()
        if self.max_kl <= 0:
            self._value_error(f"max_kl must be > 0, got {self.max_kl}")
        if not 0 < self.line_search_ratio < 1:
            self._value_error(f"line_search_ratio must lie in (0, 1), got {self.line_search_ratio}")
        if self.num_learners > 1:
            # The policy step is taken by hand, outside DDP's gradient all-reduce.
            self._value_error("TRPO runs on one Learner: set num_learners to 0 or 1")
        if self.num_epochs != 1 or self.minibatch_size is not None:
            self._value_error(
                "TRPO takes one policy step on the whole batch: leave num_epochs at 1 and "
                "minibatch_size unset (vf_iters and vf_minibatch_size set the value fitting)"
            )


class TRPO(RLlibPPO):
    """RLlib PPO's ``training_step``; the Learner's ``update`` is TRPO's step."""

    @classmethod
    def get_default_config(cls) -> TRPOConfig:
        return TRPOConfig()


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
