"""PettingZoo environments as RLlib ``MultiAgentEnv``s (this module imports Ray RLlib).

RLlib's own wrappers (``ParallelPettingZooEnv``, ``PettingZooEnv``) run on the new API stack's
``MultiAgentEnvRunner`` in Ray 2.60; the subclasses here keep their stepping logic and fix what
they leave rough:

* agent order: the stock wrappers take ``possible_agents`` from a ``set``, so the order changes
  from process to process (string hashing is salted); here it is the environment's own order;
* per-agent space dicts (``observation_spaces`` / ``action_spaces``), the attributes the new
  stack reads first, cover every possible agent, not only those alive after the first reset;
* ``agents`` follows the live agents after each reset and step instead of staying frozen;
* ``render()`` works (the stock wrappers pass an argument PettingZoo's ``render()`` does not take);
* ``metadata`` and ``render_mode`` come from the wrapped environment.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv, PettingZooEnv


class ParallelToMultiAgentEnv(ParallelPettingZooEnv):
    """A PettingZoo ``ParallelEnv`` (all agents act each step) as an RLlib ``MultiAgentEnv``."""

    def __init__(self, env: Any):
        super().__init__(env)
        _adopt_agents_and_spaces(self, env)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observations, infos = super().reset(seed=seed, options=options)
        self.agents = list(self.par_env.agents)
        return observations, infos

    def step(self, action_dict: dict):
        results = super().step(action_dict)
        self.agents = list(self.par_env.agents)
        return results

    def render(self):
        return self.par_env.render()


class AecToMultiAgentEnv(PettingZooEnv):
    """A turn-based PettingZoo ``AECEnv`` as an RLlib ``MultiAgentEnv``.

    Each step returns the observation of the agent whose turn is next only; rewards an agent
    earned while others moved reach it with its next observation (PettingZoo's cumulative
    rewards), and the final rewards of every agent arrive when the game ends.
    """

    def __init__(self, env: Any):
        super().__init__(env)
        _adopt_agents_and_spaces(self, env)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observations, infos = super().reset(seed=seed, options=options)
        self.agents = list(self.env.agents)
        return observations, infos

    def step(self, action: dict):
        results = super().step(action)
        self.agents = list(self.env.agents)
        return results

    def render(self):
        return self.env.render()


def _adopt_agents_and_spaces(adapter: ParallelPettingZooEnv | PettingZooEnv, env: Any) -> None:
    """Take agent ids (in the env's order), spaces, metadata and render mode from ``env``."""
    adapter.possible_agents = list(env.possible_agents)
    adapter.agents = list(env.agents)
    adapter._agent_ids = set(adapter.possible_agents)
    adapter.observation_spaces = {
        agent: env.observation_space(agent) for agent in adapter.possible_agents
    }
    adapter.action_spaces = {agent: env.action_space(agent) for agent in adapter.possible_agents}
    adapter.observation_space = gym.spaces.Dict(adapter.observation_spaces)
    adapter.action_space = gym.spaces.Dict(adapter.action_spaces)
    # A copy: RLlib's vector env writes "autoreset_mode" into its first env's metadata.
    adapter.metadata = dict(getattr(env, "metadata", None) or {})
    adapter.render_mode = getattr(env, "render_mode", None)
