"""An rlscale offline algorithm on a logged Minari dataset: the rlscale side of ``cql_hopper.py``.

    .venv/bin/python benchmarks/offline_rlscale_peer.py --algorithm cql|bcq|diffusion_ql|... \
        --dataset hopper/medium-v0 [--root DIR] --env Hopper-v5 --seed S --updates N \
        --eval-every K --eval-episodes E --hyperparameters JSON --out OUT.json

Builds the algorithm exactly as ``rlscale train <algorithm>`` does (the dataset streamed through Ray
Data on an embedded local Ray), with the JSON's keys set on its config. ``train_seconds`` times
the training iterations only (reading batches plus gradient updates); every K updates the
greedy policy plays E episodes in the env through RLlib's evaluation EnvRunner, untimed, each
from the start state ``evaluation_episodes.py`` deals to both peers.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from evaluation_episodes import episode_seeds, summarize_returns


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algorithm", default="cql", help="any dataset-trained algorithm")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", type=Path, help="datasets root (default MINARI_DATASETS_PATH)")
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--updates", type=int, required=True)
    parser.add_argument("--eval-every", type=int, required=True)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--hyperparameters", default="{}", help="JSON object of config keys")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def build_algorithm(args: argparse.Namespace, hyperparameters: dict):
    import rlscale
    from rlscale.platform.experiment import prepare

    spec = rlscale.ExperimentSpec(
        algorithm=args.algorithm,
        env=args.env,
        dataset=args.dataset,
        seed=args.seed,
        hyperparameters=hyperparameters,
    )
    config = prepare(spec).config
    # Evaluate only when asked (evaluate below), never inside a timed iteration.
    config.evaluation(evaluation_interval=10**9)
    return config.build_algo()


def evaluate(algo, env_name: str, episodes: int) -> dict:
    """Greedy returns on RLlib's evaluation EnvRunner (its connectors, ``explore=False``).

    RLlib seeds an EnvRunner's reset with its ``_seed`` whenever ``sample(num_episodes=...)``
    starts; one episode per call with that seed set to the shared episode's seed gives the
    same start states as the d3rlpy peer's ``env.reset(seed=...)``, which ``reference``
    confirms for every episode.
    """
    import gymnasium as gym

    algo.eval_env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True
    )
    runner, reference = algo.eval_env_runner, gym.make(env_name)
    returns = []
    for seed in episode_seeds(episodes):
        runner._seed = seed
        (episode,) = runner.sample(num_episodes=1, explore=False)
        expected_start, _ = reference.reset(seed=seed)
        if not np.allclose(episode.get_observations(0), expected_start):
            raise SystemExit(f"RLlib's EnvRunner did not start episode seed {seed} as reset did")
        returns.append(float(episode.get_return()))
    reference.close()
    return summarize_returns(returns)


def train(algo, args: argparse.Namespace) -> dict:
    updates_per_iteration = algo.config.dataset_num_iters_per_learner
    if args.eval_every % updates_per_iteration or args.updates % updates_per_iteration:
        raise SystemExit(
            f"--updates and --eval-every must be multiples of {updates_per_iteration} "
            "(gradient updates per training iteration)"
        )
    iteration_seconds, updates, evaluations = [], 0, []
    while updates < args.updates:
        start = time.perf_counter()
        algo.train()
        iteration_seconds.append(time.perf_counter() - start)
        updates += updates_per_iteration
        if updates % args.eval_every == 0 or updates == args.updates:
            evaluation = {"updates": updates} | evaluate(algo, args.env, args.eval_episodes)
            evaluations.append(evaluation)
            print(f"updates {updates}: return {evaluation['return_mean']:.1f}", flush=True)
    return {"iteration_seconds": iteration_seconds, "evaluations": evaluations}


def main() -> None:
    args = parse_args()
    if args.root:
        os.environ["MINARI_DATASETS_PATH"] = str(args.root)
    hyperparameters = json.loads(args.hyperparameters)

    import ray

    import rlscale
    from rlscale.platform.runtime import ray_session

    with ray_session():
        algo = build_algorithm(args, hyperparameters)
        result = train(algo, args)
        algo.stop()
        # Written before Ray shuts down: see cql_hopper.run_peer on exit codes.
        write_report(args, hyperparameters, result, rlscale.__version__, ray.__version__)


def write_report(args, hyperparameters: dict, result: dict, version: str, ray_version: str):
    seconds = result["iteration_seconds"]
    train_seconds = sum(seconds)
    per_iteration = args.updates // len(seconds)
    report = {
        "peer": "rlscale",
        "algorithm": args.algorithm,
        "rlscale_version": version,
        "ray_version": ray_version,
        "seed": args.seed,
        "updates": args.updates,
        "train_seconds": train_seconds,
        "updates_per_second": args.updates / train_seconds,
        # The first iteration also starts Ray Data's read pipeline.
        "first_iteration_seconds": seconds[0],
        "updates_per_second_after_first_iteration": (args.updates - per_iteration)
        / max(sum(seconds[1:]), 1e-9),
        "evaluations": result["evaluations"],
        "hyperparameters": hyperparameters,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['updates_per_second']:.1f} updates/s over {train_seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
