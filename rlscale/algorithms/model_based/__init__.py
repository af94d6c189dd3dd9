"""Model-based family: control with a dynamics model (analytic, identified or learned)."""

import gymnasium as gym

from rlscale.algorithms.common.offline import attach_in_memory_dataset
from rlscale.algorithms.model_based.mbpo import MBPO, MBPOConfig
from rlscale.algorithms.model_based.mpc import MPC, MPCConfig
from rlscale.algorithms.model_based.pets import PETS, PETSConfig
from rlscale.algorithms.model_based.sysid import SysId, SysIdConfig, describe_identified_model
from rlscale.algorithms.model_based.systems import (
    analytic_env_ids,
    analytic_system,
    identifiable_env_ids,
    observation_cost_env_ids,
    plannable_actions,
)
from rlscale.algorithms.registry import (
    AlgorithmEntry,
    Input,
    continuous_actions_only,
    register_algorithm,
    vector_observations_only,
)
from rlscale.modules.dynamics.terminations import TERMINATION_RULES

__all__ = [
    "MBPO",
    "MPC",
    "PETS",
    "MBPOConfig",
    "MPCConfig",
    "PETSConfig",
    "SysId",
    "SysIdConfig",
]


def has_a_model(env_id: str, observation_space: gym.Space, action_space: gym.Space):
    """Env check: rlscale has an analytic model of the env, or a cost to plan a learned one
    with (``model_checkpoint``; the config checks that one is given)."""
    if analytic_system(env_id) is None and env_id not in observation_cost_env_ids():
        return (
            f"it needs a model of the env: rlscale has an analytic one of "
            f"{', '.join(analytic_env_ids())}, and plans learned ones (pets checkpoints) on "
            f"{', '.join(observation_cost_env_ids())}"
        )
    return plannable_actions(env_id, action_space)


register_algorithm(
    AlgorithmEntry(
        name="mpc",
        family="model_based",
        summary="Receding-horizon control (iLQR, DDP, CEM, MPPI) with the env's analytic model",
        config_class=MPCConfig,
        space_checks=(vector_observations_only,),
        env_checks=(has_a_model,),
    )
)


def has_parameters_to_identify(env_id: str, observation_space: gym.Space, action_space: gym.Space):
    """Env check: rlscale's model of the env has physical parameters to identify."""
    if env_id not in identifiable_env_ids():
        return (
            f"it identifies the physical parameters of rlscale's model of the env, and only the "
            f"models of {', '.join(identifiable_env_ids())} have such parameters"
        )
    return plannable_actions(env_id, action_space)


register_algorithm(
    AlgorithmEntry(
        name="sysid",
        family="model_based",
        summary="System identification of a physical model from random transitions, then MPC",
        config_class=SysIdConfig,
        space_checks=(vector_observations_only,),
        env_checks=(has_parameters_to_identify,),
        describe_policy=describe_identified_model,
        optional_inputs=(Input.DATASET,),
        attach_dataset=attach_in_memory_dataset,
    )
)


def has_observation_cost(env_id: str, observation_space: gym.Space, action_space: gym.Space):
    """Env check: the planner has a cost on the env's observations."""
    if env_id not in observation_cost_env_ids():
        return (
            f"its planner needs the task's cost on observations, which rlscale has for "
            f"{', '.join(observation_cost_env_ids())}"
        )
    return plannable_actions(env_id, action_space)


register_algorithm(
    AlgorithmEntry(
        name="pets",
        family="model_based",
        summary="PETS: probabilistic ensemble dynamics + CEM-MPC with trajectory sampling",
        config_class=PETSConfig,
        space_checks=(vector_observations_only,),
        env_checks=(has_observation_cost,),
        optional_inputs=(Input.DATASET,),
        attach_dataset=attach_in_memory_dataset,
    )
)


def has_termination_rule(env_id: str, observation_space: gym.Space, action_space: gym.Space):
    """Env check: model rollouts know where the env's episodes end."""
    if env_id not in TERMINATION_RULES:
        return (
            f"its model rollouts end where the env's episodes do, and rlscale knows the "
            f"termination rule of {', '.join(sorted(TERMINATION_RULES))} only"
        )
    return None


register_algorithm(
    AlgorithmEntry(
        name="mbpo",
        family="model_based",
        summary="MBPO: SAC trained on short branched rollouts of a probabilistic ensemble",
        config_class=MBPOConfig,
        space_checks=(continuous_actions_only, vector_observations_only),
        env_checks=(has_termination_rule,),
    )
)
