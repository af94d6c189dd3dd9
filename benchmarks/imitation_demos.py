"""Return against the number of demonstrations: iq_learn, bco and bc on the same expert episodes.

    nice -n 19 .venv/bin/python benchmarks/imitation_demos.py [--env CartPole-v1]
        [--algorithms ...] [--demos 1 4 16] [--seeds 0 1 2]
        [--json benchmarks/results/imitation_demos_cartpole.json]

``--env InvertedPendulum-v5`` uses the ``inverted_pendulum_balance`` expert (``SETTINGS``
holds each env's expert and budgets).

For each demonstration count N, N episodes of the scripted ``cartpole_centered`` expert
(episode seeds 0..N-1) are written as a Minari dataset (in a temporary Minari root), and each
algorithm trains on it with rlscale's defaults, one run per seed, in this process's embedded
Ray (bound to 127.0.0.1), one run at a time:

- ``iq_learn``: 10 iterations of 500 updates (5,000), the demonstrations whole
  (``subsample_every`` 1);
- ``bc``: 50 iterations of 100 updates (5,000), RLlib's BC on the same dataset;
- ``bco``: 5 iterations (2,000 random env steps, then 4 x 1,000 policy steps), the
  demonstrations' states only;
- ``state_only_il``: 20 iterations (20,480 env steps), the demonstrations' states only.

On InvertedPendulum-v5 ``iq_learn`` is online (20 iterations, 20,000 env steps) and
``state_only_il`` trains 10 iterations (10,240 env steps).

The score is the greedy evaluation at the end of training (10 episodes; ``evaluation_interval``
is set to the run's iterations, so none runs in between: before 2026-12-04 they evaluated every
5 iterations, with the same last evaluation). Prints a Markdown table (mean and per-seed
returns per algorithm and N) and, with ``--json``, writes every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import rlscale
from rlscale.datasets.collect import run_episode
from rlscale.datasets.store import write_dataset
from rlscale.envs import make_env
from rlscale.policies import scripted_policy

SETTINGS = {
    "CartPole-v1": {
        "expert": "cartpole_centered",
        "iterations": {"iq_learn": 10, "bc": 50, "bco": 5, "state_only_il": 20},
    },
    "InvertedPendulum-v5": {
        "expert": "inverted_pendulum_balance",
        "iterations": {"bc": 50, "bco": 5, "iq_learn": 20, "state_only_il": 10},
    },
}
"""Per env: the scripted expert and each algorithm's training iterations (module doc)."""


def write_demonstrations(env_id: str, count: int, root: Path) -> str:
    expert = SETTINGS[env_id]["expert"]
    name = f"demos/{env_id.lower().replace('-', '_')}_{count}-v0"
    env = make_env(env_id, {})
    try:
        act = scripted_policy(expert)(env.observation_space, env.action_space)
        episodes = [run_episode(env, act, seed) for seed in range(count)]
        write_dataset(
            name,
            iter(episodes),
            env.observation_space,
            env.action_space,
            env.spec,
            {"algorithm_name": expert},
            root=root,
        )
    finally:
        env.close()
    return name


def train_once(env_id: str, algorithm: str, dataset: str, seed: int, output: Path) -> dict:
    iterations = SETTINGS[env_id]["iterations"][algorithm]
    spec = rlscale.ExperimentSpec(
        algorithm=algorithm,
        env=env_id,
        dataset=dataset,
        stop={"iterations": iterations},
        seed=seed,
        output=output,
        checkpoint={"every": 0},
        # The score is the evaluation at the last iteration; none in between (an offline run
        # still adds one after its first iteration).
        hyperparameters={"evaluation_interval": iterations},
    )
    started = time.perf_counter()
    result = rlscale.train(spec)
    evaluated = [metrics.return_mean for metrics in result.history if metrics.has_return]
    return {
        "return": evaluated[-1] if evaluated else None,
        "wall_s": time.perf_counter() - started,
    }


def print_table(env_id: str, rows: list[dict], demos: list[int]) -> None:
    expert = SETTINGS[env_id]["expert"]
    print(f"\n{env_id}, {expert} demonstrations, greedy return at the end of training")
    print("| algorithm | " + " | ".join(f"{n} demos" for n in demos) + " |")
    print("| --- |" + " --- |" * len(demos))
    for algorithm in dict.fromkeys(row["algorithm"] for row in rows):
        cells = []
        for count in demos:
            returns = [
                row["return"]
                for row in rows
                if row["algorithm"] == algorithm and row["demos"] == count
            ]
            done = [value for value in returns if value is not None]
            per_seed = ", ".join("n/a" if v is None else f"{v:.1f}" for v in returns)
            mean = f"{statistics.mean(done):.1f}" if done else "n/a"
            cells.append(f"{mean} ({per_seed})")
        print(f"| {algorithm} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=sorted(SETTINGS), default="CartPole-v1")
    parser.add_argument("--algorithms", nargs="+", default=None, help="default: all the env's")
    parser.add_argument("--demos", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="imitation_demos_"))
    os.environ["MINARI_DATASETS_PATH"] = str(work / "datasets")
    iterations = SETTINGS[args.env]["iterations"]
    algorithms = args.algorithms or list(iterations)
    unknown = sorted(set(algorithms) - set(iterations))
    if unknown:
        parser.error(f"no budget for {', '.join(unknown)} on {args.env}: add it to SETTINGS")
    rows = []
    for count in args.demos:
        dataset = write_demonstrations(args.env, count, work / "datasets")
        for algorithm in algorithms:
            for seed in args.seeds:
                run = train_once(args.env, algorithm, dataset, seed, work / "runs")
                rows.append({"algorithm": algorithm, "demos": count, "seed": seed, **run})
                print(f"{algorithm} demos={count} seed={seed}: {run}", file=sys.stderr)
    print_table(args.env, rows, args.demos)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "benchmark": "imitation_demos",
            "env": args.env,
            "expert": SETTINGS[args.env]["expert"],
            "iterations": {name: iterations[name] for name in algorithms},
            "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
