"""Imitation family: policies learned from an expert's actions and demonstrations."""

import gymnasium as gym

from rlscale.algorithms.imitation.dagger import DAgger, DAggerConfig
from rlscale.algorithms.registry import (
    AlgorithmEntry,
    Input,
    register_algorithm,
    vector_observations_only,
)

__all__ = ["DAgger", "DAggerConfig"]


def discrete_or_box_actions(_: gym.Space, action_space: gym.Space) -> str | None:
    """Space check: the expert's labels are one Discrete or Box action per state."""
    if isinstance(action_space, gym.spaces.Discrete | gym.spaces.Box):
        return None
    return f"it clones Discrete or Box actions, and the action space is {action_space}"


register_algorithm(
    AlgorithmEntry(
        name="dagger",
        family="imitation",
        summary="DAgger: behaviour cloning on expert labels of the states the learner visits",
        config_class=DAggerConfig,
        space_checks=(vector_observations_only, discrete_or_box_actions),
        inputs=(Input.ENVIRONMENT, Input.EXPERT),
    )
)
