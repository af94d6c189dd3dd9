"""The replay in checkpoints, for rlscale's off-policy algorithms on RLlib's new API stack.

RLlib's ``store_buffer_in_checkpoints`` (a DQN and SAC config key) only acts in the old stack's
``__getstate__``; the new stack's ``Algorithm.get_state`` leaves the replay out, so a restored
run starts from an empty replay. With the key set, :class:`ReplayInCheckpointsMixin` puts the
replay's own ``get_state()`` into the algorithm's state (RLlib writes it to the checkpoint's
``state.pkl``) and restores it in ``set_state``: a run restored from the checkpoint continues
with the transitions, priorities and sampling generator it had. It is off by default, as in
RLlib: a replay of images is large.
"""

from __future__ import annotations

from typing import Any

REPLAY_STATE = "replay"


class ReplayInCheckpointsMixin:
    """Put before the RLlib Algorithm class among an Algorithm's bases."""

    def checkpointed_replay(self) -> Any:
        """The replay to checkpoint (an object with ``get_state`` / ``set_state``), or None."""
        return getattr(self, "local_replay_buffer", None)

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        replay = self.checkpointed_replay()
        if (
            replay is not None
            and getattr(self.config, "store_buffer_in_checkpoints", False)
            and self._check_component(REPLAY_STATE, components, not_components)
        ):
            state[REPLAY_STATE] = replay.get_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state({key: value for key, value in state.items() if key != REPLAY_STATE})
        if REPLAY_STATE not in state:
            return
        replay = self.checkpointed_replay()
        if replay is None:
            raise ValueError(
                "the checkpoint holds a replay, but this algorithm has none to restore it into; "
                "restore it into the algorithm that wrote it."
            )
        replay.set_state(state[REPLAY_STATE])
