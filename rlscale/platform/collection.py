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
    """Greedy actions of the RLModule saved in an rlscale checkpoint (built on each worker)."""

    checkpoint: str

    def __call__(self, observation_space: gym.Space, action_space: gym.Space) -> Policy:
        import torch
        from ray.rllib.core.columns import Columns
        from ray.rllib.core.rl_module.rl_module import RLModule

        module_dir = Path(self.checkpoint) / MODULE_PATH
        if not module_dir.is_dir():
            raise DatasetError(
                f"{self.checkpoint} holds no single-agent policy module ({MODULE_PATH})."
            )
        module = RLModule.from_checkpoint(str(module_dir))
        module.eval()
        dist_class = module.get_inference_action_dist_cls()

        def act(observation: Any, rng: np.random.Generator) -> Any:
            obs = torch.as_tensor(np.asarray(observation, dtype=np.float32)[None])
            with torch.no_grad():
                out = module.forward_inference({Columns.OBS: obs})
            if Columns.ACTIONS in out:
                action = out[Columns.ACTIONS][0].numpy()
            else:
                dist = dist_class.from_logits(out[Columns.ACTION_DIST_INPUTS]).to_deterministic()
                action = dist.sample()[0].numpy()
            if isinstance(action_space, gym.spaces.Discrete):
                return int(action)
            return np.clip(action, action_space.low, action_space.high).astype(action_space.dtype)

        return act
