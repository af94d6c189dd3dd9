"""d3rlpy 2.8.1 CQL or BCQ on flat Hopper-v5 transitions: the peer side of the offline comparisons.

Run with the d3rlpy venv (see README.md beside this file):

    .venv-d3rlpy/bin/python benchmarks/d3rlpy/offline_peer.py --algorithm cql|bcq \
        --transitions FILE.npz --seed S --updates N --eval-every K --eval-episodes E \
        --hyperparameters JSON --out OUT.json

FILE.npz holds observations (T, 11), actions (T, 3) in [-1, 1], rewards (T,), terminals (T,)
and timeouts (T,), episode after episode. --hyperparameters is a JSON object or a path to a JSON
file; keys left out keep d3rlpy's defaults. For CQL the conservative weight is kept fixed (no
Lagrangian dual): alpha_learning_rate 0 with initial_alpha 1, so the penalty is
conservative_weight * gap. ``hidden_units`` sets every network's layers (actor, critics and, for
BCQ, the ``imitator`` VAE unless ``imitator_hidden_units`` is given).

Training is d3rlpy's own sampling (ReplayBuffer.sample_transition_batch) and algo.update in a
loop; train_seconds counts sampling plus updates, never evaluation. Every K updates the greedy
policy (algo.predict) plays E episodes of Hopper-v5, episode i from the start state that
``benchmarks/evaluation_episodes.py`` deals to both peers.
"""

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

with contextlib.redirect_stderr(io.StringIO()):  # d3rlpy imports old gym, which prints a notice
    import d3rlpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared episodes
from evaluation_episodes import episode_seeds, summarize_returns  # noqa: E402

HYPERPARAMETER_KEYS = {
    "cql": (
        "actor_learning_rate",
        "critic_learning_rate",
        "temp_learning_rate",
        "alpha_learning_rate",
        "batch_size",
        "gamma",
        "tau",
        "n_action_samples",
        "conservative_weight",
        "initial_temperature",
        "initial_alpha",
        "alpha_threshold",
        "hidden_units",
        "n_critics",
    ),
    "bcq": (
        "actor_learning_rate",
        "critic_learning_rate",
        "imitator_learning_rate",
        "batch_size",
        "gamma",
        "tau",
        "n_critics",
        "lam",
        "n_action_samples",
        "action_flexibility",
        "beta",
        "hidden_units",
        "imitator_hidden_units",
    ),
}
CONFIGS = {"cql": "CQLConfig", "bcq": "BCQConfig"}
# CQL with a fixed conservative weight, as in the non-Lagrangian peer: no optimizer on log_alpha
# (cql.py builds none when alpha_learning_rate is 0) and exp(log_alpha) = 1 multiplies it.
FIXED_DEFAULTS = {"cql": {"alpha_learning_rate": 0.0, "initial_alpha": 1.0}, "bcq": {}}
LAYER_KEYS = ("hidden_units", "imitator_hidden_units")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algorithm", choices=sorted(CONFIGS), default="cql")
    parser.add_argument("--transitions", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--updates", type=int, required=True)
    parser.add_argument("--eval-every", type=int, required=True)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--hyperparameters", default="{}", help="JSON object or path to one")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def load_hyperparameters(algorithm: str, text: str) -> dict:
    """The JSON (inline or from a file) over the fixed defaults and d3rlpy's own."""
    given = json.loads(Path(text).read_text() if os.path.isfile(text) else text)
    unknown = set(given) - set(HYPERPARAMETER_KEYS[algorithm])
    if unknown:
        raise SystemExit(f"unknown {algorithm} hyper-parameters: {sorted(unknown)}")
    defaults = getattr(d3rlpy.algos, CONFIGS[algorithm])()
    params = {key: getattr(defaults, key, None) for key in HYPERPARAMETER_KEYS[algorithm]}
    params["hidden_units"] = [256, 256]  # VectorEncoderFactory's default
    params.update(FIXED_DEFAULTS[algorithm])
    params.update(given)
    if algorithm == "bcq" and params.get("imitator_hidden_units") is None:
        params["imitator_hidden_units"] = params["hidden_units"]
    return params


def load_dataset(path: Path) -> d3rlpy.dataset.MDPDataset:
    """MDPDataset from flat arrays; an episode ends where terminals | timeouts is true."""
    data = np.load(path)
    terminals = data["terminals"].astype(bool)
    # d3rlpy refuses a step flagged as both: a true termination wins over the time limit.
    timeouts = data["timeouts"].astype(bool) & ~terminals
    if not (terminals[-1] or timeouts[-1]):
        timeouts[-1] = True  # an unfinished last episode would be dropped silently
    return d3rlpy.dataset.MDPDataset(
        observations=data["observations"].astype(np.float32),
        actions=data["actions"].astype(np.float32),
        rewards=data["rewards"].astype(np.float32),
        terminals=terminals.astype(np.float32),
        timeouts=timeouts.astype(np.float32),
        action_space=d3rlpy.ActionSpace.CONTINUOUS,
    )


def make_algo(algorithm: str, params: dict):
    """d3rlpy's CQL or BCQ with every network's layers as ``params`` gives them, on the CPU."""
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(params["hidden_units"]))
    factories = {"actor_encoder_factory": encoder, "critic_encoder_factory": encoder}
    if algorithm == "bcq":
        factories["imitator_encoder_factory"] = d3rlpy.models.VectorEncoderFactory(
            hidden_units=list(params["imitator_hidden_units"])
        )
    config_args = {k: v for k, v in params.items() if k not in LAYER_KEYS}
    config = getattr(d3rlpy.algos, CONFIGS[algorithm])(**factories, **config_args)
    return config.create(device=False)


def evaluate(algo, episodes: int) -> dict:
    """Undiscounted returns of the greedy policy on the shared evaluation episodes."""
    env = gym.make("Hopper-v5")
    returns = []
    for seed in episode_seeds(episodes):
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            action = algo.predict(obs[None].astype(np.float32))[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return summarize_returns(returns)


def train(algo, dataset, args, batch_size: int) -> dict:
    """Update loop; evaluation every --eval-every updates and after the last one."""
    sample_seconds = update_seconds = 0.0
    evaluations = []
    for step in range(1, args.updates + 1):
        t0 = time.perf_counter()
        batch = dataset.sample_transition_batch(batch_size)
        t1 = time.perf_counter()
        algo.update(batch)
        t2 = time.perf_counter()
        sample_seconds += t1 - t0
        update_seconds += t2 - t1
        if step % args.eval_every == 0 or step == args.updates:
            evaluation = {"updates": step} | evaluate(algo, args.eval_episodes)
            evaluations.append(evaluation)
            mean, std = evaluation["return_mean"], evaluation["return_std"]
            print(f"updates {step}: return {mean:.1f} +- {std:.1f}", flush=True)
    return {
        "train_seconds": sample_seconds + update_seconds,
        "sample_seconds": sample_seconds,
        "update_seconds": update_seconds,
        "evaluations": evaluations,
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    d3rlpy.seed(args.seed)  # python random, numpy and torch
    params = load_hyperparameters(args.algorithm, args.hyperparameters)
    dataset = load_dataset(args.transitions)
    algo = make_algo(args.algorithm, params)
    algo.build_with_dataset(dataset)
    result = train(algo, dataset, args, params["batch_size"])
    train_seconds = result["train_seconds"]
    report = {
        "peer": "d3rlpy",
        "algorithm": args.algorithm,
        "d3rlpy_version": d3rlpy.__version__,
        "seed": args.seed,
        "updates": args.updates,
        "transitions": dataset.transition_count,
        "train_seconds": train_seconds,
        "updates_per_second": args.updates / train_seconds,
        "sample_seconds": result["sample_seconds"],
        "update_seconds": result["update_seconds"],
        "evaluations": result["evaluations"],
        "hyperparameters": params,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['updates_per_second']:.1f} updates/s over {train_seconds:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
