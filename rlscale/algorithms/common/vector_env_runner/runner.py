"""The runner: one batched forward pass per vector-env step, episodes built once per call."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.connectors.env_to_module import MeanStdFilter
from ray.rllib.connectors.module_to_env import NormalizeAndClipActions
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.env.env_runner import (
    ENV_STEP_FAILURE,
    NUM_ENV_STEP_FAILURES_LIFETIME,
    StepFailedRecreateEnvError,
)
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.metrics import (
    ENV_STEP_TIMER,
    RLMODULE_INFERENCE_TIMER,
    WEIGHTS_SEQ_NO,
)

from rlscale.algorithms.common.vector_env_runner.checks import (
    callbacks_problem,
    pipelines_problem,
    spaces_problem,
)
from rlscale.algorithms.common.vector_env_runner.episodes import BuildsEpisodes
from rlscale.algorithms.common.vector_env_runner.filters import VectorFilter
from rlscale.algorithms.common.vector_env_runner.rollout import (
    Ongoing,
    Rollout,
    reduce_type,
)

logger = logging.getLogger(__name__)

HALF_OR_SINGLE = (torch.float16, torch.float32)


@contextmanager
def one_intra_op_thread(on_cpu: bool) -> Iterator[None]:
    """One torch intra-op thread on CPU while sampling, the previous count restored after.

    A forward pass over N observations is far too small to split across threads; on a busy
    machine the threads' hand-offs cost about 40x the pass itself (measured: 8 ms against 0.2 ms
    per pass of the 64x64 actor on 2 loaded cores). The learner keeps its threads: it runs
    between ``sample()`` calls, never during one.
    """
    if not on_cpu:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def categorical_sample(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``TorchCategorical.from_logits(logits)``'s ``sample()`` and the sample's ``logp``, without
    building the two distribution objects per step (half the cost of the pair): the operations
    of ``torch.distributions.Categorical`` (normalize by logsumexp, softmax, one multinomial
    draw per row, gather), so the same numbers and the same draws from torch's generator."""
    normalized = logits - logits.logsumexp(dim=-1, keepdim=True)
    probs = torch.softmax(normalized, dim=-1)
    draws = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, True).T
    actions = draws.reshape(probs.shape[:-1])
    return actions, normalized.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


class VectorEnvRunner(BuildsEpisodes, SingleAgentEnvRunner):
    """RLlib's ``SingleAgentEnvRunner`` with a vectorized ``sample(num_timesteps=...)``."""

    def __init__(self, *, config, **kwargs):
        super().__init__(config=config, **kwargs)
        self._fallback_reason = self._runtime_problem()
        if self._fallback_reason:
            logger.warning(
                "VectorEnvRunner samples through RLlib's loop: %s", self._fallback_reason
            )
        self._filter = self._vector_filter()
        self._rollout: Rollout | None = None
        self._ongoing: list[Ongoing] = []
        self._observations: np.ndarray | None = None
        self._step_infos: list[list[dict]] = []
        self._checked_outputs = False
        self._action_mapping: tuple[str | None, Any, Any] | None = None
        self._direct_forward = False
        self._dist_classes: dict[bool, Any] = {}
        self._on_cpu = torch.device(self._device or "cpu").type == "cpu"

    # -- what runs -------------------------------------------------------------------------

    def fallback_reason(self) -> str | None:
        """Why this runner samples through RLlib's own loop, or None (the vector path)."""
        return self._fallback_reason

    def make_env(self) -> None:
        super().make_env()
        self._action_mapping = None  # the new env's action space decides it again

    def _runtime_problem(self) -> str | None:
        if self.env is None:
            return None  # no env on this runner (a local runner beside remote ones)
        if self.module is None:
            return "it has no RLModule"
        mode = self.env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode not in (gym.vector.AutoresetMode.NEXT_STEP, "next_step"):
            return f"its vector env resets in mode {mode} (NEXT_STEP only)"
        if self.module.is_stateful():
            return "its module is stateful"
        problem = spaces_problem(self.env.single_observation_space, self.env.single_action_space)
        problem = problem or pipelines_problem(self._env_to_module, self._module_to_env)
        return problem or callbacks_problem(self.config)

    def _vector_filter(self) -> VectorFilter | None:
        pieces = list(getattr(self._env_to_module, "connectors", []))
        if pieces and type(pieces[0]) is MeanStdFilter:
            return VectorFilter(pieces[0])
        return None

    def _sample(
        self,
        *,
        num_timesteps: int | None = None,
        num_episodes: int | None = None,
        explore: bool,
        random_actions: bool = False,
        force_reset: bool = False,
    ) -> list[SingleAgentEpisode]:
        if self._fallback_reason is None and num_timesteps is not None:
            episodes = self._sample_vectorized(num_timesteps, explore, random_actions, force_reset)
            if episodes is not None:
                return episodes
            # From now on RLlib's loop, which keeps its own episodes: start it from a reset.
            self._needs_initial_reset = True
        # RLlib's loop for whole episodes resets the envs first and asks the next call to reset
        # them again (``_needs_initial_reset``), so the vector path restarts cleanly after it.
        return super()._sample(
            num_timesteps=num_timesteps,
            num_episodes=num_episodes,
            explore=explore,
            random_actions=random_actions,
            force_reset=force_reset,
        )

    # -- the vectorized loop ---------------------------------------------------------------

    def _sample_vectorized(
        self, num_timesteps: int, explore: bool, random_actions: bool, force_reset: bool
    ) -> list[SingleAgentEpisode] | None:
        if force_reset or self._needs_initial_reset:
            self._reset()
        done: list[tuple[int, int, SingleAgentEpisode]] = []
        steps = 0
        while True:
            with one_intra_op_thread(self._on_cpu), self._eval_mode():
                outcome = self._collect(num_timesteps, explore, random_actions)
            if outcome is None:  # the module's outputs are not per-env arrays
                self._fallback_reason = "its module outputs columns that are not per-env arrays"
                logger.warning("VectorEnvRunner falls back: %s", self._fallback_reason)
                return None
            count, failed = outcome
            finished, ongoing = self._build_episodes(count, keep_ongoing=not failed)
            done += finished
            if not failed:
                steps += self._env_steps(count)
                break
            # RLlib's answer to a failed env step: fresh envs and episodes, the count from 0;
            # the episodes that finished before it are still returned.
            self._reset()
        done_episodes = [episode for _, _, episode in sorted(done, key=lambda d: d[:2])]
        self._record(done_episodes, ongoing, steps)
        return done_episodes + ongoing

    def _reset(self) -> None:
        observations, infos = self._try_env_reset(
            seed=self._seed if self._needs_initial_reset else None, options=None
        )
        self._needs_initial_reset = False
        self._shared_data = {}
        self._ongoing_episodes_for_metrics.clear()
        observations = np.asarray(observations)
        if self._filter is not None:
            observations = self._filter(observations)
        self._observations = observations
        now = time.perf_counter()
        self._ongoing = [
            Ongoing(
                id_=uuid.uuid4().hex,
                observations=observations[i : i + 1].copy(),
                infos=[infos[i]],
                start_time=now,
            )
            for i in range(self.num_envs)
        ]

    def _collect(
        self, num_timesteps: int, explore: bool, random_actions: bool
    ) -> tuple[int, bool] | None:
        """Step all envs until ``num_timesteps`` env steps (reset steps not counted) are in the
        buffers; returns (vector steps taken, whether an env step failed), or None when the
        module's outputs cannot be stored per env."""
        n = self.num_envs
        spaces = (self.env.single_observation_space, self.env.single_action_space)
        if self._rollout is None or not self._rollout.fits(n, *spaces):
            self._rollout = Rollout(n, *spaces)
        rollout = self._rollout
        rollout.written = set()
        rollout.ensure(-(-num_timesteps // n) + 1)
        rollout.observations[0] = self._observations
        self._step_infos = [[o.infos[-1] if o.infos else {} for o in self._ongoing]]
        pending = np.array([ongoing.id_ is None for ongoing in self._ongoing])
        runners = self.config.num_env_runners or 1
        lifetime = self.num_env_steps_sampled_lifetime // runners
        module_s = env_s = 0.0
        ts = k = 0
        while ts < num_timesteps:
            rollout.ensure(k + 1)
            started = time.perf_counter()
            if random_actions:
                actions = self.env.action_space.sample()
                for_env = actions
            else:
                observations = torch.from_numpy(rollout.observations[k])
                actions = self._act(observations, explore, (lifetime + ts) * runners, rollout, k)
                if actions is None:
                    return None
                for_env = self._actions_for_env(actions)
            rollout.store(Columns.ACTIONS, k, actions)
            stepped = time.perf_counter()
            results = self._step(for_env)
            finished = time.perf_counter()
            module_s += stepped - started
            env_s += finished - stepped
            if results is ENV_STEP_FAILURE:
                self._log_timers(module_s, env_s, k + 1)
                rollout.fill(WEIGHTS_SEQ_NO, k, self._weights_seq_no)
                return k, True
            observations, rewards, terminated, truncated, infos = results
            if self._filter is not None:
                observations = self._filter(np.asarray(observations))
            rollout.observations[k + 1] = observations
            rollout.rewards[k] = rewards
            rollout.terminated[k] = terminated
            rollout.truncated[k] = truncated
            rollout.reset[k] = pending
            rollout.stamps[k] = finished
            self._step_infos.append(infos)
            ts += n - int(np.count_nonzero(pending))
            pending = np.logical_or(terminated, truncated)
            k += 1
        self._observations = rollout.observations[k].copy()
        self._log_timers(module_s, env_s, k)
        # RLlib stores the weights' sequence number with every step; it is fixed within a call.
        rollout.fill(WEIGHTS_SEQ_NO, k, self._weights_seq_no)
        return k, False

    def _act(
        self, observations: torch.Tensor, explore: bool, t: int, rollout: Rollout, k: int
    ) -> np.ndarray | None:
        """One forward pass and RLlib's ``GetActions``; stores the extra outputs at step k."""
        # As RLlib's NumpyToTensor: floats other than float16 as float32, on the module's device.
        if observations.is_floating_point() and observations.dtype not in HALF_OR_SINGLE:
            observations = observations.float()
        if not self._on_cpu:
            observations = observations.to(self._device)
        outputs = self._forward({Columns.OBS: observations}, explore, t)
        if Columns.ACTIONS not in outputs and Columns.ACTION_DIST_INPUTS in outputs:
            dist_class = self._dist_classes[explore]
            if explore and dist_class is TorchCategorical:
                actions, logp = categorical_sample(outputs[Columns.ACTION_DIST_INPUTS])
                outputs[Columns.ACTIONS] = actions
                outputs.setdefault(Columns.ACTION_LOGP, logp)
                return self._store_outputs(outputs, rollout, k)
            distribution = dist_class.from_logits(outputs[Columns.ACTION_DIST_INPUTS])
            if not explore:
                distribution = distribution.to_deterministic()
            outputs[Columns.ACTIONS] = distribution.sample()
            if Columns.ACTION_LOGP not in outputs:
                outputs[Columns.ACTION_LOGP] = distribution.logp(outputs[Columns.ACTIONS])
        return self._store_outputs(outputs, rollout, k)

    def _store_outputs(self, outputs: dict[str, Any], rollout: Rollout, k: int):
        """The actions (returned) and the extra model outputs (stored at step k), as numpy."""
        if not self._checked_outputs:
            if not self._outputs_fit(outputs, self.num_envs):
                return None
            self._checked_outputs = True
        actions = None
        for key, value in outputs.items():
            array = reduce_type(value.detach().cpu().numpy())
            if key == Columns.ACTIONS:
                actions = array
            elif key != Columns.ACTIONS_FOR_ENV:
                rollout.store(key, k, array)
        return actions

    def _forward(self, batch: dict[str, Any], explore: bool, t: int) -> dict[str, Any]:
        """``forward_exploration`` / ``forward_inference``. TorchRLModule's versions switch the
        module to eval mode and back on every call (a walk over all its submodules); with the
        module already in eval mode for the whole call (:meth:`_eval_mode`) they are exactly
        ``_forward_exploration`` / ``_forward_inference``, which this calls then."""
        module = self.module
        if explore:
            if self._direct_forward:
                return module._forward_exploration(batch, t=t)
            return module.forward_exploration(batch, t=t)
        if self._direct_forward:
            return module._forward_inference(batch)
        return module.forward_inference(batch)

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """The module in eval mode for a whole ``sample()`` call, its mode restored after; its
        action-distribution classes looked up once for the call."""
        module = self.module
        self._dist_classes = {
            True: module.get_exploration_action_dist_cls(),
            False: module.get_inference_action_dist_cls(),
        }
        was_training = isinstance(module, torch.nn.Module) and module.training
        self._direct_forward = isinstance(module, TorchRLModule) and not any(
            getattr(type(module), name) is not getattr(TorchRLModule, name)
            for name in ("forward_exploration", "forward_inference")
        )
        if was_training:
            module.eval()
        try:
            yield
        finally:
            if was_training:
                module.train()

    @staticmethod
    def _outputs_fit(outputs: dict[str, Any], num_envs: int) -> bool:
        return Columns.ACTIONS in outputs and all(
            isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == num_envs
            for value in outputs.values()
        )

    def _actions_for_env(self, actions: np.ndarray) -> np.ndarray:
        """RLlib's ``NormalizeAndClipActions`` over the whole batch (Box actions only)."""
        if self._action_mapping is None:
            self._action_mapping = self._find_action_mapping()
        mode, low, high = self._action_mapping
        if mode == "unsquash":
            return np.clip(low + (actions + 1.0) * (high - low) / 2.0, low, high)
        if mode == "clip":
            return np.clip(actions, low, high)
        return actions

    def _find_action_mapping(self) -> tuple[str | None, Any, Any]:
        space = self.env.single_action_space
        connector = next(
            (p for p in self._module_to_env.connectors if type(p) is NormalizeAndClipActions),
            None,
        )
        if connector is None or not isinstance(space, gym.spaces.Box):
            return None, None, None
        if connector.normalize_actions:
            # unsquash_action leaves a Box that is unbounded on some side as it is.
            bounded = np.all(space.bounded_below) and np.all(space.bounded_above)
            return ("unsquash" if bounded else None), space.low, space.high
        return ("clip" if connector.clip_actions else None), space.low, space.high

    def _step(self, actions: np.ndarray):
        """``env.step`` with RLlib's failure handling (``_try_env_step`` without its per-step
        metrics, which :meth:`_log_timers` logs once per call)."""
        try:
            return self.env.step(actions)
        except Exception as error:
            self.metrics.log_value(NUM_ENV_STEP_FAILURES_LIFETIME, 1, reduce="lifetime_sum")
            if not self.config.restart_failed_sub_environments:
                logger.exception(
                    "Environment step failed and restart_failed_sub_environments is False: %s",
                    error,
                )
                raise RuntimeError from error
            if not isinstance(error, StepFailedRecreateEnvError):
                logger.exception("Environment step failed; recreating the envs: %s", error)
            self.make_env()
            return ENV_STEP_FAILURE

    def _log_timers(self, module_s: float, env_s: float, steps: int) -> None:
        if steps <= 0:
            return
        self.metrics.log_value(RLMODULE_INFERENCE_TIMER, module_s / steps, reduce="ema")
        self.metrics.log_value(ENV_STEP_TIMER, env_s / steps, reduce="ema")
        self._log_env_steps(metric=self._metrics_num_try_env_step, num_steps=steps)

    def _env_steps(self, count: int) -> int:
        return int(count * self.num_envs - self._rollout.reset[:count].sum())

    def _record(
        self, done: list[SingleAgentEpisode], ongoing: list[SingleAgentEpisode], steps: int
    ) -> None:
        """RLlib's bookkeeping for ``get_metrics`` and its step counters."""
        self._done_episodes_for_metrics.extend(done)
        for chunk in ongoing:
            self._ongoing_episodes_for_metrics[chunk.id_].append(chunk)
        self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=steps)
        self._increase_sampled_metrics(steps, len(done))
