"""SAC's config and Algorithm: RLlib's SAC with rlscale's defaults, flat replay and training
step (see the package docstring)."""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.sac import SAC as RLlibSAC
from ray.rllib.algorithms.sac import SACConfig as RLlibSACConfig
from ray.rllib.core.rl_module.rl_module import DEFAULT_MODULE_ID, RLModuleSpec
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from rlscale.algorithms.common.config import RlscaleConfigMixin
from rlscale.algorithms.common.replay import TransitionReplay
from rlscale.algorithms.common.replay_checkpoint import ReplayInCheckpointsMixin
from rlscale.algorithms.common.sampling import sample_env_steps
from rlscale.algorithms.value_based.sac.learner import SACLearner
from rlscale.algorithms.value_based.sac.module import (
    SACTrainModule,
    set_uniform_exploration,
)

UNIFORM_REPLAY = "EpisodeReplayBuffer"
"""The replay type SAC's config names: uniform, RLlib's name for it (RLlib's SACConfig accepts
only episode buffers). SAC keeps the transitions in rlscale's flat ``TransitionReplay``."""


def soft_actor_critic_model_config(config) -> dict[str, Any]:
    """The SAC-style module's ``model_config`` keys that a SAC-based config sets."""
    return {"num_critics": 2 if config.twin_q else 1, "initial_alpha": config.initial_alpha}


class SACConfig(RlscaleConfigMixin, RLlibSACConfig):
    """RLlib's SACConfig with RL-Zoo's Pendulum settings and rlscale's module and Learner."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or SAC)
        self.hidden_sizes = [256, 256]
        self.activation = "relu"
        self.twin_q = True
        self.initial_alpha = 1.0
        self.target_entropy = "auto"  # −|A|
        # RL-Zoo's SAC on Pendulum: one learning rate for actor, critics and temperature.
        self.lr = None
        self.actor_lr = 1e-3
        self.critic_lr = 1e-3
        self.alpha_lr = 1e-3
        self.gamma = 0.99
        self.tau = 0.005
        self.train_batch_size_per_learner = 256
        # Uniform replay of the last `capacity` transitions (see SAC: rlscale's flat replay).
        self.replay_buffer_config = {"type": UNIFORM_REPLAY, "capacity": 1_000_000}
        self.num_steps_sampled_before_learning_starts = 1_000
        # One update of 256 replayed transitions per env step (RL-Zoo's train_freq 1), run in
        # blocks: 32 env steps, then 32 updates in one Learner call. A block amortizes RLlib's
        # per-call cost of sampling, updating and weight sync; the policy acting in a block is
        # at most 32 updates old.
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 1
        self.rollout_fragment_length = 32
        self.training_intensity = 256
        # An iteration is 1,000 env steps (five Pendulum episodes), not RLlib's one second.
        self.min_time_s_per_iteration = None
        self.min_sample_timesteps_per_iteration = 1_000

    @property
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | soft_actor_critic_model_config(self)

    def validate(self) -> None:
        super().validate()
        if not self.normalize_actions:
            self._value_error(
                "SAC's policy acts in [-1, 1] and RLlib maps its actions onto the bounds; "
                "keep normalize_actions=True."
            )
        if self.is_multi_agent:
            self._value_error(
                "rlscale's SAC trains one policy; run it on a single-agent env (no multi_agent)."
            )
        buffer_type = self.replay_buffer_config.get("type")
        if buffer_type != UNIFORM_REPLAY:
            self._value_error(
                f"rlscale's SAC replays transitions uniformly, got replay_buffer_config type "
                f"{buffer_type!r}; set replay_buffer_config={{'type': '{UNIFORM_REPLAY}', "
                "'capacity': N}."
            )
        if self.n_step != 1:
            self._value_error(
                f"rlscale's SAC uses 1-step targets; set n_step=1, got {self.n_step}."
            )
        if self.training_intensity is not None and self.training_intensity <= 0:
            self._value_error(
                f"training_intensity (replayed transitions per sampled one) must be > 0, "
                f"got {self.training_intensity}."
            )

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=SACTrainModule)

    def get_default_learner_class(self) -> type[SACLearner]:
        return SACLearner


class SAC(ReplayInCheckpointsMixin, RLlibSAC):
    """RLlib's SAC with rlscale's replay and training step.

    Each ``training_step`` samples ``rollout_fragment_length`` steps per env, adds them to a
    :class:`~rlscale.algorithms.common.replay.TransitionReplay`, and once
    ``num_steps_sampled_before_learning_starts`` env steps were sampled runs
    ``training_intensity`` / ``train_batch_size`` updates per new env step (the fraction
    carried over) in one Learner call, then syncs the weights to the EnvRunners. RLlib's
    ``EpisodeReplayBuffer`` and its learner connector, which DQN's step uses, cost several
    gradient steps' time per minibatch on CPU. Until learning starts the EnvRunners act
    uniformly at random in the action bounds.
    """

    local_replay_buffer: TransitionReplay

    @classmethod
    @override(RLlibSAC)
    def get_default_config(cls) -> SACConfig:
        return SACConfig()

    def setup(self, config) -> None:
        super().setup(config)
        self._runners_act_uniformly = False
        self._update_credit = 0.0  # updates owed but not yet run (a fraction of one)

    def _create_local_replay_buffer_if_necessary(self, config) -> TransitionReplay:
        return TransitionReplay(config.replay_buffer_config["capacity"], seed=config.seed)

    @override(RLlibSAC)
    def training_step(self) -> None:
        self._act_uniformly_until_learning_starts()
        episodes = sample_env_steps(self)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
            sampled_now = self.local_replay_buffer.add_episodes(episodes)
        if self._env_steps_sampled() < self.config.num_steps_sampled_before_learning_starts:
            return
        self._before_updates(sampled_now)
        updates = self._updates_for(sampled_now)
        if updates == 0:
            return
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self._update(updates)
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=[DEFAULT_MODULE_ID],
                inference_only=True,
            )

    def _before_updates(self, sampled_now: int) -> None:
        """Hook between sampling and the updates, once learning has started (MBPO fits its
        model and rolls it out here); SAC has nothing to do."""

    def _replayed_transitions(self, rows: int) -> dict[str, Any]:
        """The ``rows`` transitions of the next updates' minibatches, in order (MBPO mixes
        model transitions in); SAC's: uniform draws from its replay."""
        return self.local_replay_buffer.sample(rows)

    def _updates_for(self, sampled_now: int) -> int:
        """Gradient steps owed for ``sampled_now`` new env steps (one per call without an
        intensity, as RLlib's DQN step does)."""
        intensity = self.config.training_intensity
        if intensity is None:
            return 1
        self._update_credit += sampled_now * intensity / self.config.total_train_batch_size
        updates = int(self._update_credit)
        self._update_credit -= updates
        return updates

    def _update(self, updates: int) -> list[dict[str, Any]]:
        """``updates`` gradient steps on fresh uniform minibatches, in one Learner call."""
        batch_size = self.config.total_train_batch_size
        rows = updates * batch_size
        transitions = SampleBatch(self._replayed_transitions(rows))
        return self.learner_group.update(
            batch=MultiAgentBatch({DEFAULT_MODULE_ID: transitions}, env_steps=rows),
            minibatch_size=self.config.train_batch_size_per_learner,
            num_epochs=1,
            shuffle_batch_per_epoch=False,
            timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: self._env_steps_sampled()},
        )

    def _env_steps_sampled(self) -> int:
        return self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)

    def _act_uniformly_until_learning_starts(self) -> None:
        warming_up = (
            self._env_steps_sampled() < self.config.num_steps_sampled_before_learning_starts
        )
        if warming_up != self._runners_act_uniformly:
            self.env_runner_group.foreach_env_runner(
                lambda runner: set_uniform_exploration(runner.module, warming_up)
            )
            self._runners_act_uniformly = warming_up
