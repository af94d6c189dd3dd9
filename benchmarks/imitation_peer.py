"""rlscale against the `imitation` library: BC, DAgger and GAIL, same expert, same budgets.

    make bench-imitation-venv
    nice -n 19 .venv/bin/python benchmarks/imitation_peer.py [--envs CartPole-v1
        InvertedPendulum-v5] [--algorithms bc dagger gail] [--seeds 0 1 2]
        [--json benchmarks/results/imitation_peer.json] [--same-network]

The expert is a scripted controller (``cartpole_balance``, ``inverted_pendulum_balance``), the
same function in both libraries: imitation's DAgger queries it through a stable-baselines3
policy wrapper, rlscale's through ``--expert``. For each env, 4 expert episodes (seeds 0-3) are
written once as a Minari dataset (rlscale) and as an ``.npz`` file (the peer,
``benchmarks/imitation_lib/imitation_peer.py`` in ``.venv-imitation``). The budgets, per run:

- ``bc``: the 4 demonstrations, 2,000 updates of 256 transitions;
- ``dagger``: 4 rounds (beta from 1 to 0 over 3 rounds) of at least one expert episode's
  worth of expert labels (``DAGGER_LABELS_PER_ROUND``: 500 on CartPole, 1,000 on
  InvertedPendulum; imitation collects whole episodes, rlscale rollout fragments, so the
  counts differ a little: ``env_steps`` and ``labels`` in the JSON), 500 updates of 256
  labelled states per round; no demonstrations;
- ``gail``: the 4 demonstrations, ``GAIL_ENV_STEPS`` env steps of PPO on the discriminator's
  reward (CartPole only).

Each library keeps its own network and optimizer defaults; with ``--same-network`` rlscale's
``bc`` and ``dagger`` use the peer's policy network instead (``PEER_NETWORK``: imitation's
``FeedForward32Policy``, two tanh layers of 32), so that the two differ in their machinery
rather than in the size of the network they train. The score is the mean greedy return
over 10 episodes from env seed 100 on, the same protocol on both sides; the time is the wall
time of training alone (no evaluation, imports done before the clock starts): the peer's runs
each in their own process, rlscale's one after another in this one, each starting and stopping
its embedded Ray (counted: a user's run pays it too; ``ray_start_s`` in the JSON). One run at a
time, rlscale and the peer alternating so that both see the same machine. MuJoCo envs are -v5
in rlscale and -v4 in the peer's gymnasium 0.29 (the same model and reward).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import rlscale
from rlscale.datasets.collect import run_episode
from rlscale.datasets.store import write_dataset
from rlscale.envs import make_env
from rlscale.policies import scripted_policy

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-imitation" / "bin" / "python"
PEER_SCRIPT = ROOT / "benchmarks" / "imitation_lib" / "imitation_peer.py"
EXPERTS = {"CartPole-v1": "cartpole_balance", "InvertedPendulum-v5": "inverted_pendulum_balance"}
PEER_ENV = {"CartPole-v1": "CartPole-v1", "InvertedPendulum-v5": "InvertedPendulum-v4"}
DEMOS = 4
BATCH_SIZE = 256
BC_UPDATES = 2_000
DAGGER_ROUNDS, DAGGER_UPDATES_PER_ROUND = 4, 500
DAGGER_LABELS_PER_ROUND = {"CartPole-v1": 500, "InvertedPendulum-v5": 1_000}
"""One expert episode: the least a round of imitation's DAgger collects."""
GAIL_ENV_STEPS = 40_000
EVAL_EPISODES, EVAL_SEED = 10, 100
PEER_NETWORK = {"hidden_sizes": [32, 32], "activation": "tanh"}
"""imitation's BC and DAgger policy (``FeedForward32Policy``: ActorCriticPolicy, tanh)."""


def write_demonstrations(env_id: str, work: Path) -> tuple[str, Path]:
    """The expert's episodes as a Minari dataset and as the peer's ``.npz`` file."""
    env = make_env(env_id, {})
    try:
        act = scripted_policy(EXPERTS[env_id])(env.observation_space, env.action_space)
        episodes = [run_episode(env, act, seed) for seed in range(DEMOS)]
        name = f"bench/{env_id.lower().replace('-', '_')}-v0"
        write_dataset(
            name,
            iter(episodes),
            env.observation_space,
            env.action_space,
            env.spec,
            {"algorithm_name": EXPERTS[env_id]},
            root=work / "datasets",
        )
    finally:
        env.close()
    arrays = {"episodes": np.array(len(episodes))}
    for i, episode in enumerate(episodes):
        arrays[f"observations_{i}"] = episode.observations
        arrays[f"actions_{i}"] = episode.actions
        arrays[f"terminated_{i}"] = np.array(bool(episode.terminations[-1]))
    npz = work / f"{env_id}.npz"
    np.savez(npz, **arrays)
    return name, npz


def rlscale_spec(
    algorithm: str, env_id: str, dataset: str, seed: int, work: Path, same_network: bool = False
):
    hyperparameters: dict = {}
    iterations = 0
    extra: dict = {}
    if algorithm == "bc":
        iterations = BC_UPDATES // 100  # bc: 100 updates of 256 per iteration
        extra["dataset"] = dataset
        # Offline algorithms evaluate in the env while training; the peer does not, and the
        # time measured is training alone: 0 switches every evaluation off.
        hyperparameters["evaluation_interval"] = 0
    elif algorithm == "dagger":
        iterations = DAGGER_ROUNDS
        extra["expert"] = EXPERTS[env_id]
        hyperparameters = {
            "train_batch_size_per_learner": DAGGER_LABELS_PER_ROUND[env_id],
            "updates_per_iteration": DAGGER_UPDATES_PER_ROUND,
            "minibatch_size": BATCH_SIZE,
            "beta_decay_iterations": DAGGER_ROUNDS - 1,
        }
    else:
        extra["dataset"] = dataset
        hyperparameters = {"num_demos": DEMOS}
    if same_network and algorithm in ("bc", "dagger"):
        hyperparameters |= PEER_NETWORK
    stop = {"iterations": iterations} if iterations else {"timesteps": GAIL_ENV_STEPS}
    return rlscale.ExperimentSpec(
        algorithm=algorithm,
        env=env_id,
        seed=seed,
        stop=stop,
        output=work / "runs",
        checkpoint={"every": 0},
        hyperparameters=hyperparameters,
        **extra,
    )


def run_rlscale(
    algorithm: str, env_id: str, dataset: str, seed: int, work: Path, same_network: bool
) -> dict:
    spec = rlscale_spec(algorithm, env_id, dataset, seed, work, same_network)
    started = time.perf_counter()
    result = rlscale.train(spec)
    wall_s = time.perf_counter() - started
    evaluation = rlscale.evaluate(result.checkpoint, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    return {
        "return": evaluation.mean_return,
        "wall_s": wall_s,
        "ray_start_s": result.ray_start_s,
        "env_steps": result.final.env_steps,
    }


def run_peer(algorithm: str, env_id: str, npz: Path, seed: int, work: Path) -> dict:
    job = {
        "algorithm": algorithm,
        "env": PEER_ENV[env_id],
        "expert": EXPERTS[env_id],
        "seed": seed,
        "demos": str(npz),
        "batch_size": BATCH_SIZE,
        "updates": BC_UPDATES,
        "rounds": DAGGER_ROUNDS,
        "labels_per_round": DAGGER_LABELS_PER_ROUND[env_id],
        "updates_per_round": DAGGER_UPDATES_PER_ROUND,
        "beta_decay_rounds": DAGGER_ROUNDS - 1,
        "env_steps": GAIL_ENV_STEPS,
        "ppo_steps": 2048,
        "discriminator_updates": 4,
        "scratch": str(work / f"dagger-{env_id}-{seed}"),
        "eval_episodes": EVAL_EPISODES,
        "eval_seed": EVAL_SEED,
    }
    done = subprocess.run(
        [str(PEER_PYTHON), str(PEER_SCRIPT), json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _values(runs: list[dict], library: str, field: str) -> list[float]:
    return [run[library][field] for run in runs]


def _median_and_seeds(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})"


def print_table(rows: list[dict]) -> None:
    print(
        "\n| env | algorithm | rlscale return | imitation return | expert labels rlscale / "
        "imitation | rlscale s | imitation s | rlscale / imitation |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    keys = sorted({(row["env"], row["algorithm"]) for row in rows})
    for env_id, algorithm in keys:
        runs = [row for row in rows if row["env"] == env_id and row["algorithm"] == algorithm]
        rlscale_walls = _values(runs, "rlscale", "wall_s")
        peer_walls = _values(runs, "imitation", "wall_s")
        labels = "-"
        if algorithm == "dagger":
            rlscale_labels = statistics.median(_values(runs, "rlscale", "env_steps"))
            peer_labels = statistics.median(_values(runs, "imitation", "labels"))
            labels = f"{rlscale_labels:,.0f} / {peer_labels:,.0f}"
        cells = [
            _median_and_seeds(_values(runs, "rlscale", "return")),
            _median_and_seeds(_values(runs, "imitation", "return")),
            labels,
            _median_and_seeds(rlscale_walls),
            _median_and_seeds(peer_walls),
            f"{statistics.median(rlscale_walls) / statistics.median(peer_walls):.2f}x",
        ]
        print(f"| {env_id} | {algorithm} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(EXPERTS))
    parser.add_argument("--algorithms", nargs="+", default=["bc", "dagger", "gail"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--same-network",
        action="store_true",
        help="rlscale's bc and dagger train the peer's policy network ([32, 32] tanh)",
    )
    args = parser.parse_args(argv)
    if not PEER_PYTHON.exists():
        raise SystemExit("the imitation library's venv is missing: run `make bench-imitation-venv`")

    rlscale.train  # noqa: B018 - its lazy import, outside the first run's clock
    work = Path(tempfile.mkdtemp(prefix="imitation_peer_"))
    os.environ["MINARI_DATASETS_PATH"] = str(work / "datasets")
    rows = []
    for env_id in args.envs:
        dataset, npz = write_demonstrations(env_id, work)
        for algorithm in args.algorithms:
            if algorithm == "gail" and env_id != "CartPole-v1":
                continue
            for seed in args.seeds:
                row = {"env": env_id, "algorithm": algorithm, "seed": seed}
                row["rlscale"] = run_rlscale(
                    algorithm, env_id, dataset, seed, work, args.same_network
                )
                row["imitation"] = run_peer(algorithm, env_id, npz, seed, work)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    print_table(rows)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "benchmark": "imitation_peer",
            "budgets": {
                "demos": DEMOS,
                "batch_size": BATCH_SIZE,
                "bc_updates": BC_UPDATES,
                "dagger_rounds": DAGGER_ROUNDS,
                "dagger_labels_per_round": DAGGER_LABELS_PER_ROUND,
                "dagger_updates_per_round": DAGGER_UPDATES_PER_ROUND,
                "gail_env_steps": GAIL_ENV_STEPS,
            },
            "rlscale_network": PEER_NETWORK if args.same_network else "each algorithm's default",
            "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
