"""`rlscale datasets collect`: the runtime side of collection.

It turns the ``--policy`` argument into a policy factory (a scripted name, ``random``, or an
rlscale checkpoint, restored here because ``rlscale.datasets`` must not import the platform),
connects to Ray, and hands everything to :func:`rlscale.datasets.collect.collect`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlscale.datasets.collect import CollectionRequest, CollectionResult, collect
from rlscale.datasets.policies import SCRIPTED, Policy, scripted_policy
from rlscale.envs import make_env, resolve_env
from rlscale.errors import DatasetError
from rlscale.platform.outputs import read_checkpoint
from rlscale.platform.runtime import ray_session

MODULE_PATH = Path("learner_group") / "learner" / "rl_module" / "default_policy"
"""Where an rlscale (RLlib) checkpoint keeps the single-agent policy's RLModule."""
ENV_RUNNER_PATHS = (Path("env_runner"), Path("eval_env_runner"))
"""Where a checkpoint keeps the EnvRunner that acts in the env: the sampling one of online
algorithms, the evaluation one of offline algorithms (which sample nothing else)."""


def collect_dataset(
    env: str,
    policy: str,
    episodes: int,
    dataset_id: str,
    workers: int = 1,
    noise: float = 0.0,
    seed: int = 0,
    root: str | Path | None = None,
    address: str | None = None,
    env_config: dict[str, Any] | None = None,
) -> CollectionResult:
    """Collect ``episodes`` episodes of ``env`` with ``policy`` into the dataset ``dataset_id``."""
    env_info = resolve_env(env, env_config or {})
    if env_info.is_multi_agent:
        raise DatasetError(f"{env} is multi-agent; collection supports single-agent envs only.")
    factory, policy_name = policy_factory(policy, env)
    request = CollectionRequest(
        env=env,
        dataset_id=dataset_id,
        policy_factory=factory,
        policy_name=policy_name,
        episodes=episodes,
        workers=workers,
        noise=noise,
        seed=seed,
        env_config=dict(env_config or {}),
        root=root,
    )
    with ray_session(address) as session:
        if workers > session.num_cpus:
            raise DatasetError(
                f"--workers {workers} needs {workers} CPUs and the Ray cluster has "
                f"{session.num_cpus:g}; use at most {int(session.num_cpus)} workers."
            )
        return collect(request, make_env)


def policy_factory(policy: str, env: str):
    """(factory, name recorded in the metadata) for a ``--policy`` argument."""
    if policy in SCRIPTED:
        return scripted_policy(policy), policy
    path = Path(policy).expanduser()
    if path.exists() or "/" in policy:
        info = read_checkpoint(path)
        if info.spec.env != env:
            raise DatasetError(
                f"the checkpoint {path} was trained on {info.spec.env}, not on {env}. Collect "
                f"with --env {info.spec.env}, or pass a checkpoint trained on {env}."
            )
        return CheckpointPolicy(str(info.path)), f"checkpoint:{info.path}"
    return scripted_policy(policy), policy  # raises, naming the known policies


@dataclass(frozen=True)
class CheckpointPolicy:
    """Greedy actions of the policy saved in an rlscale checkpoint (built on each worker).

    Observations and actions go through the checkpoint's own EnvRunner connector pipelines, as
    in ``rlscale evaluate``: a policy trained on filtered observations (``MeanStdFilter``) sees
    them filtered with the saved statistics, and actions of a policy acting in [-1, 1]
    (``normalize_actions``) are mapped onto the env's bounds.
    """

    checkpoint: str

    def __call__(self, observation_space: gym.Space, action_space: gym.Space) -> Policy:
        import torch
        from ray.rllib.core.columns import Columns
        from ray.rllib.env.single_agent_episode import SingleAgentEpisode

        module, env_to_module, module_to_env = _restore_policy(Path(self.checkpoint))

        def act(observation: Any, rng: np.random.Generator) -> Any:
            # A one-step episode: the pipelines read the newest observation from episodes.
            episode = SingleAgentEpisode(
                observations=[observation],
                observation_space=observation_space,
                action_space=action_space,
            )
            shared_data: dict = {}  # carries the episode order from one pipeline to the other
            with torch.no_grad():
                batch = env_to_module(
                    rl_module=module, batch={}, episodes=[episode], explore=False,
                    shared_data=shared_data,
                )
                batch = module_to_env(
                    rl_module=module, batch=module.forward_inference(batch), episodes=[episode],
                    explore=False, shared_data=shared_data,
                )
            action = batch.get(Columns.ACTIONS_FOR_ENV, batch[Columns.ACTIONS])[0]
            if isinstance(action_space, gym.spaces.Discrete):
                return int(action)
            # A policy trained without RLlib's action clipping may still step past the bounds.
            return np.clip(action, action_space.low, action_space.high).astype(action_space.dtype)

        return act


def _restore_policy(checkpoint: Path):
    """(RLModule, env-to-module pipeline, module-to-env pipeline) saved in ``checkpoint``."""
    from ray.rllib.connectors.env_to_module import EnvToModulePipeline, MeanStdFilter
    from ray.rllib.connectors.module_to_env import ModuleToEnvPipeline
    from ray.rllib.core.rl_module.rl_module import RLModule

    runner = next((checkpoint / p for p in ENV_RUNNER_PATHS if (checkpoint / p).is_dir()), None)
    if not (checkpoint / MODULE_PATH).is_dir() or runner is None:
        raise DatasetError(
            f"{checkpoint} holds no single-agent policy (its RLModule or EnvRunner is "
            "missing); pass a checkpoint folder written by `rlscale train` on a single-agent env."
        )
    module = RLModule.from_checkpoint(str(checkpoint / MODULE_PATH))
    module.eval()
    env_to_module = EnvToModulePipeline.from_checkpoint(str(runner / "env_to_module_connector"))
    module_to_env = ModuleToEnvPipeline.from_checkpoint(str(runner / "module_to_env_connector"))
    for piece in env_to_module.connectors:
        if isinstance(piece, MeanStdFilter):
            # Collect with the saved statistics; RLlib has no public switch after building.
            piece._update_stats = False
    return module, env_to_module, module_to_env
