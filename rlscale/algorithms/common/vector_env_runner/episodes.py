"""Episodes from the runner's buffers: each env's done episodes and ongoing chunk of one
``sample`` call, built once from the preallocated arrays, in RLlib's ``SingleAgentEpisode``
form (lookback buffers, extra model outputs, timings), and the carry-over that continues an
episode in the next call."""

from __future__ import annotations

import uuid

import numpy as np
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import _REWARDS_BOX_SPACE, SingleAgentEpisode
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer

from rlscale.algorithms.common.vector_env_runner.rollout import Ongoing, lookback_like


class BuildsEpisodes:
    """Mixin of :class:`VectorEnvRunner` (reads its ``_rollout``, ``_ongoing``,
    ``_step_infos``, ``_filter``, ``env``, ``num_envs`` and ``config``)."""

    def _build_episodes(
        self, count: int, keep_ongoing: bool
    ) -> tuple[list[tuple[int, int, SingleAgentEpisode]], list[SingleAgentEpisode]]:
        """The done episodes (with their last step and env index, for RLlib's order) and the
        ongoing chunks of ``count`` buffered vector steps; updates each env's carry-over."""
        rollout = self._rollout
        done: list[tuple[int, int, SingleAgentEpisode]] = []
        ongoing: list[SingleAgentEpisode] = []
        flags = rollout.terminated[:count] | rollout.truncated[:count]
        for i in range(self.num_envs):
            carry = self._ongoing[i]
            start = 1 if carry.id_ is None else 0  # step 0 resets a just-finished episode
            if carry.id_ is None:
                carry = self._fresh(i, 0) if count > 0 else carry
            for end in np.flatnonzero(flags[:, i]):
                done.append((int(end), i, self._episode(i, carry, start, end + 1)))
                start = end + 2  # step end + 1 is the reset step; its obs starts the next one
                carry = self._fresh(i, end + 1) if end + 1 < count else Ongoing()
            if carry.id_ is None:
                self._ongoing[i] = carry
                continue
            if count > start:
                chunk = self._episode(i, carry, start, count)
                ongoing.append(chunk)
                self._ongoing[i] = self._cut(chunk, i, count)
            else:
                self._ongoing[i] = carry
        return done, (ongoing if keep_ongoing else [])

    def _fresh(self, i: int, reset_step: int) -> Ongoing:
        """The episode env i started at the reset step ``reset_step`` of this call."""
        return Ongoing(
            id_=uuid.uuid4().hex,
            observations=self._rollout.observations[reset_step + 1, i : i + 1].copy(),
            infos=[self._step_infos[reset_step + 1][i]],
            start_time=float(self._rollout.stamps[reset_step]),
        )

    def _episode(self, i: int, carry: Ongoing, start: int, end: int) -> SingleAgentEpisode:
        """Env i's episode chunk of steps [start, end), behind ``carry``'s lookback."""
        rollout = self._rollout
        lookback = 0 if carry.actions is None else len(carry.actions)
        observations = np.concatenate(
            [carry.observations[:-1], rollout.observations[start : end + 1, i]]
        )
        infos = carry.infos[:-1] + [self._step_infos[k][i] for k in range(start, end + 1)]
        actions = rollout.columns[Columns.ACTIONS][start:end, i]
        rewards = rollout.rewards[start:end, i]
        if lookback:
            actions = np.concatenate([carry.actions, actions])
            rewards = np.concatenate([carry.rewards, rewards])
        extras = {}
        for key in rollout.written - {Columns.ACTIONS}:
            values = rollout.columns[key][start:end, i]
            earlier = lookback_like(carry.extras.get(key), values)
            if earlier is not None:
                extras[key] = InfiniteLookbackBuffer(
                    np.concatenate([earlier, values.reshape(-1, *earlier.shape[1:])]),
                    lookback=len(earlier),
                )
            else:
                extras[key] = InfiniteLookbackBuffer(values.copy(), lookback=0)
        observation_space = (
            self._filter.observation_space
            if self._filter is not None
            else self.env.single_observation_space
        )
        episode = SingleAgentEpisode(
            id_=carry.id_,
            observations=InfiniteLookbackBuffer(observations, lookback=lookback),
            observation_space=observation_space,
            infos=InfiniteLookbackBuffer(infos, lookback=lookback),
            actions=InfiniteLookbackBuffer(actions.copy(), lookback=lookback),
            action_space=self.env.single_action_space,
            rewards=InfiniteLookbackBuffer(
                rewards.astype(np.float64), lookback=lookback, space=_REWARDS_BOX_SPACE
            ),
            terminated=bool(rollout.terminated[end - 1, i]),
            truncated=bool(rollout.truncated[end - 1, i]),
            extra_model_outputs=extras,
            t_started=carry.t,
            len_lookback_buffer=lookback,
        )
        episode._start_time = (
            carry.start_time if carry.start_time is not None else float(rollout.stamps[start])
        )
        episode._last_step_time = float(rollout.stamps[end - 1])
        episode._last_added_observation = observations[-1]
        episode._last_added_infos = infos[-1]
        return episode

    def _cut(self, chunk: SingleAgentEpisode, i: int, end: int) -> Ongoing:
        """What ``chunk.cut(len_lookback_buffer=episode_lookback_horizon)`` keeps of env i's
        chunk that ends at step ``end`` (exclusive). RLlib cuts before it turns the chunk into
        arrays, so the kept steps have the shapes the module gave them: they are read from the
        buffers, not from the chunk (at most ``MAX_LOOKBACK`` steps, all of this call)."""
        rollout = self._rollout
        steps = slice(end - self.config.episode_lookback_horizon, end)
        return Ongoing(
            id_=chunk.id_,
            t=chunk.t,
            observations=rollout.observations[steps.start : end + 1, i].copy(),
            infos=[self._step_infos[k][i] for k in range(steps.start, end + 1)],
            actions=rollout.columns[Columns.ACTIONS][steps, i].copy(),
            rewards=rollout.rewards[steps, i].copy(),
            extras={
                key: rollout.columns[key][steps, i].copy()
                for key in rollout.written - {Columns.ACTIONS}
            },
        )
