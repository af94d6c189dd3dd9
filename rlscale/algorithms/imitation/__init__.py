"""Imitation family: policies learned from an expert's actions and demonstrations."""

import gymnasium as gym

from rlscale.algorithms.imitation.bco import BCO, BCOConfig
from rlscale.algorithms.imitation.dagger import DAgger, DAggerConfig
from rlscale.algorithms.imitation.demonstrations import attach_demonstrations
from rlscale.algorithms.imitation.gail import GAIL, GAILConfig
from rlscale.algorithms.imitation.iq_learn import IQLearn, IQLearnConfig
from rlscale.algorithms.imitation.state_only_il import StateOnlyIL, StateOnlyILConfig
from rlscale.algorithms.registry import (
    AlgorithmEntry,
    Input,
    register_algorithm,
    vector_observations_only,
)

__all__ = [
    "BCO",
    "BCOConfig",
    "DAgger",
    "DAggerConfig",
    "GAIL",
    "GAILConfig",
    "IQLearn",
    "IQLearnConfig",
    "StateOnlyIL",
    "StateOnlyILConfig",
]


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

register_algorithm(
    AlgorithmEntry(
        name="iq_learn",
        family="imitation",
        summary="IQ-Learn: inverse soft-Q learning from demonstrations (chi-squared; online "
        "with a SAC-style actor for Box actions, offline for Discrete by default)",
        config_class=IQLearnConfig,
        space_checks=(vector_observations_only, discrete_or_box_actions),
        # Online mode samples the env (the default for Box actions); offline runs only
        # evaluate in it.
        inputs=(Input.ENVIRONMENT, Input.DATASET),
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
        learns_from_dataset_actions=False,
    )
)

register_algorithm(
    AlgorithmEntry(
        name="state_only_il",
        family="imitation",
        summary="State-only IL (SOIL-TDM): SAC on expert/agent state-transition flow densities",
        config_class=StateOnlyILConfig,
        space_checks=(vector_observations_only, discrete_or_box_actions),
        inputs=(Input.ENVIRONMENT, Input.DATASET),
        attach_dataset=attach_demonstrations,
        learns_from_dataset_actions=False,
    )
)

register_algorithm(
    AlgorithmEntry(
        name="gail",
        family="imitation",
        summary="GAIL: PPO on a discriminator's reward -log(1 - D(s, a)), expert vs policy pairs",
        config_class=GAILConfig,
        space_checks=(vector_observations_only, discrete_or_box_actions),
        inputs=(Input.ENVIRONMENT, Input.DATASET),
        attach_dataset=attach_demonstrations,
    )
)
