"""DQN on CartPole-v1: env steps and wall time to a mean return of 475, three ways, in one run.

    .venv/bin/python benchmarks/dqn_cartpole.py [--seeds 0 1 2] [--max-steps 150000]

- rlscale:     ``rlscale.train`` with rlscale's DQN defaults (what ``rlscale train dqn`` runs),
               whose replay is the flat prioritized one;
- rlscale-episode: the same with RLlib's prioritized episode replay (``replay: episode``);
- sb3:         Stable-Baselines3 DQN with the rl-zoo hyper-parameters for CartPole-v1 (read from
               the installed rl_zoo3 package);
- rllib-stock: RLlib's ``DQNConfig()`` with nothing changed but the environment and the seed.

See ``cartpole_race.py`` for how returns and times are measured. Training speed (env steps per
second over a fixed number of steps, far from the target): ``--max-steps 20000 --seeds 0``.
"""

from __future__ import annotations

import cartpole_race as race


def run_rlscale(seed: int, max_steps: int) -> race.Run:
    return race.run_rlscale("dqn", seed, max_steps)


def run_rlscale_episode(seed: int, max_steps: int) -> race.Run:
    stop = {"reward": race.TARGET, "timesteps": max_steps}
    result = race.train_with_defaults(
        "dqn", race.ENV, seed, stop, f"bench-dqn-episode-{seed}", {"replay": "episode"}
    )
    final = result.final
    return race.Run(
        "rlscale-episode",
        seed,
        final.return_mean >= race.TARGET,
        final.env_steps,
        result.wall_s,
        final.return_mean,
    )


def run_sb3(seed: int, max_steps: int) -> race.Run:
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_vec_env

    hp = race.rl_zoo_hyperparameters("dqn")
    zoo_timesteps = hp.pop("n_timesteps")
    policy = hp.pop("policy")
    policy_kwargs = race.parse_policy_kwargs(hp.pop("policy_kwargs", "dict()"))
    n_envs = hp.pop("n_envs", 1)
    # SB3 decays epsilon over a fraction of total_timesteps: keep rl-zoo's schedule in env steps
    # although this race may run longer than rl-zoo's n_timesteps.
    hp["exploration_fraction"] *= zoo_timesteps / max_steps

    def make_model():
        env = make_vec_env(race.ENV, n_envs=n_envs, seed=seed)
        return DQN(policy, env, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **hp)

    return race.run_sb3_model(make_model, seed, max_steps)


def run_rllib_stock(seed: int, max_steps: int) -> race.Run:
    from ray.rllib.algorithms.dqn import DQNConfig

    return race.run_rllib_config("rllib-stock", DQNConfig(), seed, max_steps)


if __name__ == "__main__":
    race.race(
        "dqn_cartpole",
        "DQN",
        {
            "rlscale": run_rlscale,
            "sb3": run_sb3,
            "rlscale-episode": run_rlscale_episode,
            "rllib-stock": run_rllib_stock,
        },
    )
