"""DQN: RLlib's DQN on rlscale's shared discrete-Q RLModule, with defaults that learn small
vector tasks such as CartPole-v1 without flags.

Q-learning with a replay buffer and a target network Q' (Mnih et al. 2015, "Human-level
control through deep reinforcement learning"), minimizing the Huber loss of

    Q(s_t, a_t)  ->  Σ_{k<n} γ^k r_{t+k} + γ^n Q'(s_{t+n}, argmax_a Q(s_{t+n}, a))

with the online net choosing the bootstrap action (double Q, van Hasselt et al. 2016), Q split
into V(s) + A(s, a) − mean_a A(s, a) (dueling, Wang et al. 2016), n-step returns and
prioritized replay (Schaul et al. 2016; combined as in Rainbow, Hessel et al. 2018). RLlib's
DQN Learner computes it; the network is :class:`~rlscale.modules.networks.q_network.QNetwork`.

Sampling and updating alternate in blocks: each ``training_step`` steps the vectorized envs for
``rollout_fragment_length`` steps, then runs as many updates as ``training_intensity`` asks
(replayed transitions per sampled one). Blocks amortize RLlib's per-call overhead, which
dominates when DQN samples a handful of steps per update.

Replay (``replay``): ``"flat"`` (the default) keeps n-step transitions in the flat arrays of
:class:`~rlscale.algorithms.common.flat_replay.FlatReplay`, with the priorities on a sum tree;
``"episode"`` is RLlib's ``PrioritizedEpisodeReplayBuffer`` and RLlib's own training step. Both
read ``replay_buffer_config`` (capacity, α, β) and give the Learner the same columns; the flat
one draws a minibatch with a few array operations where RLlib's builds one episode per row and
runs its learner connector on them.

Updates: with the flat replay and the Learner in the driver (``num_learners: 0``), a block's
updates run in one Learner call (``lean_updates``, the default; see
:mod:`~rlscale.algorithms.common.lean_replay_update`): the same draws, steps and priority writes
as one RLlib ``LearnerGroup.update`` per update, without that call's fixed cost each time.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import numpy as np
from ray.rllib.algorithms.dqn import DQN as RLlibDQN
from ray.rllib.algorithms.dqn import DQNConfig as RLlibDQNConfig
from ray.rllib.algorithms.dqn.dqn import calculate_rr_weights
from ray.rllib.algorithms.dqn.torch.dqn_torch_learner import DQNTorchLearner
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    REPLAY_BUFFER_SAMPLE_TIMER,
    REPLAY_BUFFER_UPDATE_PRIOS_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TD_ERROR_KEY,
    TIMERS,
)
from ray.rllib.utils.numpy import convert_to_numpy

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.common.flat_replay import FlatReplay
from rlscale.algorithms.common.lean_replay_update import LeanReplayUpdateMixin
from rlscale.algorithms.common.lean_update import LeanUpdatesConfigMixin
from rlscale.algorithms.common.replay_checkpoint import ReplayInCheckpointsMixin
from rlscale.algorithms.common.sampling import sample_env_steps
from rlscale.modules.rl_modules.discrete_q import DiscreteQModule

FLAT_REPLAY = "flat"
EPISODE_REPLAY = "episode"
REPLAY_KINDS = (FLAT_REPLAY, EPISODE_REPLAY)


class DQNConfig(LeanUpdatesConfigMixin, RlscaleConfigMixin, RLlibDQNConfig):
    """RLlib's DQNConfig with rlscale's defaults and network width (``hidden_sizes``), and the
    replay kind (``replay``: ``"flat"`` or ``"episode"``)."""

    RLSCALE_KEYS: ClassVar[tuple[str, ...]] = ("replay", "updates_per_learner_call")

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DQN)
        self.hidden_sizes = [256, 256]
        self.activation = "relu"
        # Sampling: 4 vectorized envs in the driver, 64 steps each (256 env steps) per block.
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 4
        self.rollout_fragment_length = 64
        # Updates: 16 replayed transitions per sampled one = 64 updates of 64 per block. Half
        # rl-zoo's replay ratio: on CartPole the 100-episode mean climbed without the dips that
        # the full ratio showed, at half the update cost. The target network is refreshed once
        # a block.
        self.training_intensity = 16
        self.train_batch_size_per_learner = 64
        self.target_network_update_freq = 256
        self.lr = 1e-3
        self.gamma = 0.99
        self.n_step = 3
        self.epsilon = [(0, 1.0), (8_000, 0.04)]
        # Replay: flat arrays and a sum tree (see the module docstring). replay_buffer_config
        # stays RLlib's: prioritized, 50k transitions, α 0.6, β 0.4. β may also be a schedule,
        # [[env_steps, β], ...] interpolated linearly (Schaul et al. anneal it to 1; flat
        # replay only).
        self.replay = FLAT_REPLAY
        # Flat replay: minibatches per Learner call. 1 (the default) updates the priorities
        # after every minibatch, as in Schaul et al. More amortize RLlib's fixed cost per call
        # (metrics reduction, batch conversion), but the priorities of a call's rows lag up to
        # updates_per_learner_call - 1 gradient steps. (With 8, seed 1's CartPole learning
        # check ended at a greedy 372 instead of >= 475.) The first update of a block runs
        # alone, so the target network is refreshed after it, where RLlib's step refreshes it.
        self.updates_per_learner_call = 1

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=DiscreteQModule, model_config=self.model_config)

    def get_default_learner_class(self) -> type[DQNLearner]:
        return DQNLearner

    def validate(self) -> None:
        super().validate()
        if self.num_atoms > 1 or self.noisy:
            self._value_error(
                "rlscale's DQN Q-network is an expectation head: distributional "
                "(num_atoms > 1) and noisy-net DQN are not supported. Leave num_atoms=1 and "
                "noisy=False."
            )
        problem = self._replay_problem()
        if problem:
            self._value_error(problem)

    def _replay_problem(self) -> str | None:
        if self.replay not in REPLAY_KINDS:
            return (
                f"replay must be one of {', '.join(map(repr, REPLAY_KINDS))} (flat arrays, or "
                f"RLlib's episode replay), got {self.replay!r}"
            )
        beta = self.replay_buffer_config.get("beta")
        if self.replay == EPISODE_REPLAY:
            if beta is not None and not isinstance(beta, int | float):
                return (
                    f"RLlib's episode replay takes a constant replay_buffer_config beta, got "
                    f"{beta!r}; give a number, or use replay='flat' for a β schedule"
                )
            return None
        calls = self.updates_per_learner_call
        if not isinstance(calls, int) or isinstance(calls, bool) or calls < 1:
            return f"updates_per_learner_call must be an integer >= 1, got {calls!r}"
        if not isinstance(self.n_step, int) or self.n_step < 1:
            return (
                f"the flat replay computes returns over a fixed number of steps: n_step must be "
                f"an integer >= 1, got {self.n_step!r} (a random range needs replay='episode')"
            )
        if beta is not None and beta_schedule_problem(beta):
            return beta_schedule_problem(beta)
        return None


def beta_schedule_problem(beta: Any) -> str | None:
    """Why ``beta`` is neither an exponent >= 0 nor a schedule [[env_steps, β], ...] (env steps
    increasing, from 0), or None."""
    if isinstance(beta, int | float) and not isinstance(beta, bool):
        return None if beta >= 0 else f"replay_buffer_config beta must be >= 0, got {beta!r}"
    try:
        points = np.asarray(beta, dtype=float)
    except (TypeError, ValueError):
        points = np.empty((0, 0))
    if (
        points.ndim != 2
        or points.shape[1] != 2
        or len(points) == 0
        or points[0, 0] != 0
        or np.any(np.diff(points[:, 0]) <= 0)
        or np.any(points[:, 1] < 0)
    ):
        return (
            f"replay_buffer_config beta must be an exponent >= 0 or a schedule "
            f"[[0, beta_0], [env_steps, beta], ...] with increasing env steps, got {beta!r}"
        )
    return None


def beta_at(beta: Any, env_steps: int) -> float:
    """β at ``env_steps``: the number itself, or the schedule interpolated linearly (the last
    value held after its last point)."""
    if isinstance(beta, int | float):
        return float(beta)
    points = np.asarray(beta, dtype=float)
    return float(np.interp(env_steps, points[:, 0], points[:, 1]))


class DQN(ReplayInCheckpointsMixin, RLlibDQN):
    """RLlib's DQN with rlscale's flat prioritized replay (or, with ``replay="episode"``,
    RLlib's episode replay and training step), seeded from the experiment's seed."""

    local_replay_buffer: FlatReplay | Any

    @classmethod
    def get_default_config(cls) -> DQNConfig:
        return DQNConfig()

    def setup(self, config) -> None:
        super().setup(config)
        if self.config.replay == FLAT_REPLAY:
            self.local_replay_buffer = self._flat_replay()
        elif self.local_replay_buffer is not None and self.config.seed is not None:
            # RLlib's episode replay buffers draw from an unseeded generator, so two runs with
            # the same seed would replay different minibatches and end with different policies.
            self.local_replay_buffer.rng = np.random.default_rng(self.config.seed)

    def _create_local_replay_buffer_if_necessary(self, config):
        # The flat replay is sized from the module's spaces, known only once the EnvRunners
        # exist: setup() builds it.
        if config.replay == FLAT_REPLAY:
            return None
        return super()._create_local_replay_buffer_if_necessary(config)

    def _flat_replay(self) -> FlatReplay:
        buffer_config = self.config.replay_buffer_config
        observation_space, action_space = self._module_spaces()
        # RLlib's own defaults for keys its config may lack (a replaced replay_buffer_config):
        # its episode buffers' capacity 10,000 and alpha 1.0; uniform types do not prioritize.
        prioritized = "Prioritized" in str(buffer_config.get("type", ""))
        return FlatReplay(
            observation_space,
            action_space,
            capacity=buffer_config.get("capacity", 10_000),
            n_step=self.config.n_step,
            gamma=self.config.gamma,
            alpha=buffer_config.get("alpha", 1.0) if prioritized else 0.0,
            seed=self.config.seed,
        )

    def _module_spaces(self):
        spaces = (self.spaces or {}).get(DEFAULT_MODULE_ID)
        if spaces is None:
            spaces = (self.config.observation_space, self.config.action_space)
        if spaces[0] is None or spaces[1] is None:
            self.config._value_error(
                "the flat replay needs the env's observation and action spaces, and no "
                "EnvRunner has an env; set them with .environment(observation_space=..., "
                "action_space=...)."
            )
        return spaces

    @override(RLlibDQN)
    def training_step(self) -> None:
        if self.config.replay != FLAT_REPLAY:
            return super().training_step()
        # The same schedule as RLlib's DQN step: `store` sampling rounds, then `train` updates
        # (training_intensity replayed transitions per sampled one), then one weight sync.
        store, train = calculate_rr_weights(self.config)
        for _ in range(store):
            self._sample_into_replay()
        env_steps = self._env_steps_sampled()
        if env_steps < self.config.num_steps_sampled_before_learning_starts:
            return None
        if len(self.local_replay_buffer) == 0:  # every step still waits for its n-step end
            return None
        learner = self._lean_replay_learner()
        if learner is not None:
            self._lean_updates_from_replay(learner, env_steps, train)
        else:
            for minibatches in learner_calls(train, self.config.updates_per_learner_call):
                self._update_from_replay(env_steps, minibatches)
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=[DEFAULT_MODULE_ID],
                global_vars=None,
                inference_only=True,
            )
        return None

    def _sample_into_replay(self) -> None:
        episodes = sample_env_steps(self)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
            self.local_replay_buffer.add_episodes(episodes)

    def _lean_replay_learner(self) -> DQNLearner | None:
        """The driver's Learner when a block of updates can run in one call of it; None with
        Learner actors, ``updates_per_learner_call`` > 1, or a Learner on RLlib's update path."""
        if not self.learner_group.is_local or self.config.updates_per_learner_call != 1:
            return None
        learner = self.learner_group._learner
        return learner if getattr(learner, "lean_problem", "") is None else None

    def _lean_updates_from_replay(self, learner: DQNLearner, env_steps: int, updates: int) -> None:
        """``updates`` updates in one call of the driver's ``learner``, each on a minibatch
        drawn after the previous one's priorities were written (the replay's timers are inside
        the Learner's)."""
        beta = beta_at(self.config.replay_buffer_config.get("beta", 0.0), env_steps)
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = learner.replay_updates(
                self.local_replay_buffer,
                updates=updates,
                rows=self.config.train_batch_size_per_learner,
                beta=beta,
                timesteps=self._learner_timesteps(env_steps),
            )
            self.metrics.aggregate([learner_results], key=LEARNER_RESULTS)

    def _update_from_replay(self, env_steps: int, minibatches: int) -> None:
        """``minibatches`` Learner updates in one call, on prioritized minibatches drawn
        together, then the drawn rows' new priorities from the TD errors the Learner returns."""
        rows = minibatches * self.config.total_train_batch_size
        beta = beta_at(self.config.replay_buffer_config.get("beta", 0.0), env_steps)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
            batch, indices = self.local_replay_buffer.sample(rows, beta=beta)
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                batch=MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(batch)}, env_steps=rows),
                minibatch_size=self.config.train_batch_size_per_learner,
                num_epochs=1,
                shuffle_batch_per_epoch=False,
                timesteps=self._learner_timesteps(env_steps),
            )
            # TD errors go to the priorities, not to the logged metrics (one per row).
            td_errors = _pop_td_errors(learner_results)
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_UPDATE_PRIOS_TIMER)):
            self.local_replay_buffer.update_priorities(indices, td_errors)

    def _learner_timesteps(self, env_steps: int) -> dict[str, Any]:
        return {
            NUM_ENV_STEPS_SAMPLED_LIFETIME: env_steps,
            NUM_AGENT_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                (ENV_RUNNER_RESULTS, NUM_AGENT_STEPS_SAMPLED_LIFETIME), default={}
            ),
        }

    def _env_steps_sampled(self) -> int:
        return self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)


class DQNLearner(LeanReplayUpdateMixin, DQNTorchLearner):
    """RLlib's DQN Learner (double, dueling, n-step Huber loss), with the lean replay updates
    and the lean minibatch loop for the batches it is handed."""


def learner_calls(updates: int, per_call: int) -> list[int]:
    """Minibatches per Learner call for a block of ``updates``: the first alone (the target
    network is refreshed after it, as in RLlib's step), then ``per_call`` at a time."""
    if updates <= 0:
        return []
    rest = updates - 1
    return [1] + [per_call] * (rest // per_call) + ([rest % per_call] if rest % per_call else [])


def _pop_td_errors(learner_results: list[dict[str, Any]]) -> np.ndarray:
    """The per-row TD errors of the default module, taken out of every Learner's results and
    joined in Learner order (the order their shards of the batch had)."""
    errors: dict[str, list[np.ndarray]] = defaultdict(list)
    for results in learner_results:
        for module_id, module_results in results.items():
            if isinstance(module_results, dict) and TD_ERROR_KEY in module_results:
                errors[module_id].extend(convert_to_numpy(module_results.pop(TD_ERROR_KEY).peek()))
    return np.concatenate([np.ravel(e) for e in errors[DEFAULT_MODULE_ID]])
