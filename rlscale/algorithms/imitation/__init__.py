"""Imitation family: policies learned from an expert's actions and demonstrations."""

import gymnasium as gym

from rlscale.algorithms.imitation.bco import BCO, BCOConfig
from rlscale.algorithms.imitation.dagger import DAgger, DAggerConfig
from rlscale.algorithms.imitation.demonstrations import attach_demonstrations
from rlscale.algorithms.imitation.iq_learn import IQLearn, IQLearnConfig
from rlscale.algorithms.registry import (
    AlgorithmEntry,
    Input,
    register_algorithm,
    vector_observations_only,
)

__all__ = ["BCO", "BCOConfig", "DAgger", "DAggerConfig", "IQLearn", "IQLearnConfig"]


def discrete_or_box_actions(_: gym.Space, action_space: gym.Space) -> str | None:
    """Space check: the expert's labels are one Discrete or Box action per state."""
    if isinstance(action_space, gym.spaces.Discrete | gym.spaces.Box):
        return None
    return f"it clones Discrete or Box actions, and the action space is {action_space}"


def discrete_actions_for_now(_: gym.Space, action_space: gym.Space) -> str | None:
    """Space check of ``iq_learn``: its soft-Q policy is over Discrete actions (the continuous
    variant, on the shared SAC actor, is not written yet)."""
    if isinstance(action_space, gym.spaces.Discrete):
        return None
    return (
        f"iq_learn is implemented for Discrete actions only so far, and the action space is "
        f"{action_space}; for Box actions use bc or dagger"
    )


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

register_algorithm(
    AlgorithmEntry(
        name="iq_learn",
        family="imitation",
        summary="IQ-Learn: inverse soft-Q learning from demonstrations (offline, chi-squared)",
        config_class=IQLearnConfig,
        space_checks=(vector_observations_only, discrete_actions_for_now),
        inputs=(Input.DATASET,),
        attach_dataset=attach_demonstrations,
    )
)

register_algorithm(
    AlgorithmEntry(
        name="bco",
        family="imitation",
        summary="BCO: behaviour cloning from observation (an inverse model labels the demos)",
        config_class=BCOConfig,
        space_checks=(vector_observations_only, discrete_or_box_actions),
        inputs=(Input.ENVIRONMENT, Input.DATASET),
        attach_dataset=attach_demonstrations,
    )
)
