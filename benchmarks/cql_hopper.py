"""CQL on logged Hopper-v5 data: rlscale against d3rlpy on the very same transitions, 5 seeds a run.

    make bench-d3rlpy-venv     # once: d3rlpy pins gymnasium 1.0, so it gets .venv-d3rlpy
    .venv/bin/python benchmarks/cql_hopper.py --dataset hopper/medium-v0 [--root DIR] \
        [--seeds 0 1 2 3 4] [--updates 10000] [--eval-every 2500] [--eval-episodes 20]
    .venv/bin/python benchmarks/cql_hopper.py --merge A.json B.json [--out OUT.json]

The dataset is a Minari dataset (``rlscale datasets collect`` with a Hopper PPO checkpoint);
d3rlpy reads the same transitions, exported once to an ``.npz`` beside the results. Each peer
and seed runs alone in its own process (``cql_rlscale_peer.py`` in rlscale's venv,
``d3rlpy/cql_peer.py`` in d3rlpy's), one torch thread each, so the two are timed alike:

- gradient updates per second over the training time only (data sampling and updates; the
  evaluation episodes are not timed);
- greedy return after the same number of updates, raw and as D4RL's normalized score
  (100 * (R - random) / (expert - random) with D4RL's Hopper references), over the same
  evaluation episodes (start states) for both peers (``evaluation_episodes.py``); the standard
  error is over seeds, the independent runs.

Both run rlscale's CQL defaults (``CQLConfig``: learning rates, batch, tau, sampled
actions, conservative weight 5 with no Lagrangian, twin critics, [64, 64] layers) mapped onto
d3rlpy's names; rlscale's behavior-cloning warm-up is off, since d3rlpy's CQL has none.

Writes benchmarks/results/cql_hopper.json and prints the table of docs/benchmarks.md.
``--merge`` trains nothing: it pools the runs of results files written with other seeds (same
dataset, updates, evaluation and hyperparameters) into one table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "cql_hopper.json"
D3RLPY_PYTHON = REPO / ".venv-d3rlpy" / "bin" / "python"
# D4RL's reference returns for Hopper (Fu et al. 2020, infos.py): random and expert policies.
D4RL_HOPPER_RANDOM = -20.272305
D4RL_HOPPER_EXPERT = 3234.3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="hopper/medium-v0")
    parser.add_argument("--root", type=Path, help="datasets root (default MINARI_DATASETS_PATH)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--eval-every", type=int, default=2_500)
    parser.add_argument("--eval-episodes", type=int, default=20)
    peers = ("rlscale", "d3rlpy")
    parser.add_argument("--peers", nargs="+", choices=peers, default=list(peers))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "cql_hopper")
    parser.add_argument(
        "--merge", type=Path, nargs="+", metavar="RESULTS", help="pool saved results, no training"
    )
    return parser.parse_args()


def shared_hyperparameters() -> tuple[dict, dict]:
    """rlscale's CQL defaults for rlscale (warm-up off) and the same values under d3rlpy's names."""
    from rlscale.algorithms import get_algorithm

    config = get_algorithm("cql").make_config()
    rlscale_side = {"bc_iters": 0}
    d3rlpy_side = {
        "actor_learning_rate": config.actor_lr,
        "critic_learning_rate": config.critic_lr,
        "temp_learning_rate": config.alpha_lr,  # RLlib's alpha is SAC's temperature
        "initial_temperature": config.initial_alpha,
        "batch_size": config.train_batch_size_per_learner,
        "gamma": config.gamma,
        "tau": config.tau,
        "n_action_samples": config.num_actions,
        "conservative_weight": config.min_q_weight,
        "n_critics": 2 if config.twin_q else 1,
        "hidden_units": list(config.hidden_sizes),
        # Fixed conservative weight, as RLlib's non-Lagrangian CQL (see d3rlpy/cql_peer.py).
        "alpha_learning_rate": 0.0,
        "initial_alpha": 1.0,
        "alpha_threshold": 0.0,
    }
    return rlscale_side, d3rlpy_side


def export_transitions(dataset: str, root: Path | None, path: Path) -> int:
    """The dataset's transitions, episode after episode, as the flat arrays d3rlpy reads."""
    from rlscale.datasets.store import open_dataset

    columns = {key: [] for key in ("observations", "actions", "rewards", "terminals", "timeouts")}
    for episode in open_dataset(dataset, root).iterate_episodes():
        columns["observations"].append(episode.observations[:-1])
        columns["actions"].append(episode.actions)
        columns["rewards"].append(episode.rewards)
        columns["terminals"].append(episode.terminations)
        columns["timeouts"].append(episode.truncations)
    arrays = {key: np.concatenate(parts) for key, parts in columns.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return len(arrays["rewards"])


def run_peer(
    peer: str, seed: int, args: argparse.Namespace, hyperparameters: dict, npz: Path
) -> dict:
    out = args.work / f"{peer}_seed{seed}.json"
    common = [
        "--seed", str(seed),
        "--updates", str(args.updates),
        "--eval-every", str(args.eval_every),
        "--eval-episodes", str(args.eval_episodes),
        "--hyperparameters", json.dumps(hyperparameters),
        "--out", str(out),
    ]  # fmt: skip
    if peer == "rlscale":
        command = [sys.executable, str(REPO / "benchmarks" / "cql_rlscale_peer.py")]
        command += ["--dataset", args.dataset, "--env", "Hopper-v5"]
        command += ["--root", str(args.root)] if args.root else []
    else:
        command = [str(D3RLPY_PYTHON), str(REPO / "benchmarks" / "d3rlpy" / "cql_peer.py")]
        command += ["--transitions", str(npz)]
    print(f"== {peer} seed {seed}", flush=True)
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    out.unlink(missing_ok=True)
    finished = subprocess.run(command + common, env=environment, cwd=REPO)
    if not out.exists():
        raise SystemExit(f"{peer} seed {seed} failed (exit {finished.returncode}), no report")
    # A peer's report is complete once written; Ray's shutdown after it has exited non-zero
    # ("core worker has already been shutdown"), which is recorded, not hidden.
    return json.loads(out.read_text()) | {"exit_code": finished.returncode}


def d4rl_score(raw_return: float) -> float:
    return 100.0 * (raw_return - D4RL_HOPPER_RANDOM) / (D4RL_HOPPER_EXPERT - D4RL_HOPPER_RANDOM)


def summarize(runs: list[dict]) -> dict:
    finals = [run["evaluations"][-1]["return_mean"] for run in runs]
    speeds = [run["updates_per_second"] for run in runs]
    checkpoints = [evaluation["updates"] for evaluation in runs[0]["evaluations"]]
    sem = statistics.stdev(finals) / len(finals) ** 0.5 if len(finals) > 1 else None
    return {
        "seeds": [run["seed"] for run in runs],
        "final_returns": finals,
        "final_return_mean": statistics.mean(finals),
        "final_return_std": statistics.pstdev(finals),
        "final_return_sem": sem,
        "normalized_score_mean": d4rl_score(statistics.mean(finals)),
        "return_mean_by_updates": {
            str(updates): statistics.mean(run["evaluations"][i]["return_mean"] for run in runs)
            for i, updates in enumerate(checkpoints)
        },
        "updates_per_second": speeds,
        "updates_per_second_mean": statistics.mean(speeds),
    }


def print_table(summaries: dict[str, dict], updates: int) -> None:
    print(f"\nCQL on Hopper-v5 data, greedy return after {updates:,} updates (mean over seeds)")
    print(
        "| peer | updates/s | speed / d3rlpy's | return ± s.e. | D4RL score | returns per seed "
        "| mean return by updates |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    reference = summaries.get("d3rlpy", {}).get("updates_per_second_mean")
    for peer, summary in summaries.items():
        speed = summary["updates_per_second_mean"]
        ratio = f"{speed / reference:.2f}x" if reference else "n/a"
        per_seed = " / ".join(f"{value:.1f}" for value in summary["final_returns"])
        score = summary["normalized_score_mean"]
        sem = summary["final_return_sem"]  # None with one seed: no spread to report
        spread = f"{sem:.1f}" if sem is not None else "n/a"
        returns = f"{summary['final_return_mean']:.1f} ± {spread}"
        by_updates = " / ".join(f"{v:.1f}" for v in summary["return_mean_by_updates"].values())
        print(
            f"| {peer} | {speed:.1f} | {ratio} | {returns} | {score:.1f} | {per_seed} "
            f"| {by_updates} |"
        )


SETUP_KEYS = ("dataset", "updates", "eval_episodes", "hyperparameters")
"""What results files must share for their runs to pool into one table."""


def read_results(path: Path) -> dict:
    """A results file this script wrote, or a clear exit naming what is wrong with it."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read results {path}: {exc}") from None
    missing = [key for key in (*SETUP_KEYS, "transitions", "runs") if key not in payload]
    if missing:
        raise SystemExit(f"{path} is not a cql_hopper.py results file (no {', '.join(missing)})")
    return payload


def merge_results(paths: list[Path]) -> dict:
    """One payload holding every run of ``paths``, its summaries recomputed over all of them."""
    payloads = [(path, read_results(path)) for path in paths]
    first_path, first = payloads[0]
    runs: dict[str, list[dict]] = {}
    for path, payload in payloads:
        for key in SETUP_KEYS:
            if payload[key] != first[key]:
                raise SystemExit(
                    f"{path}: {key} is {payload[key]!r}, {first_path} has {first[key]!r}; "
                    "only results of one setup pool into one table."
                )
        for peer, peer_runs in payload["runs"].items():
            pooled = runs.setdefault(peer, [])
            repeated = {run["seed"] for run in pooled} & {run["seed"] for run in peer_runs}
            if repeated:
                raise SystemExit(
                    f"{path}: {peer} seed(s) {sorted(repeated)} are in an earlier file too; "
                    "pool results of different seeds."
                )
            pooled.extend(peer_runs)
    for peer, peer_runs in runs.items():
        checkpoints = {tuple(e["updates"] for e in run["evaluations"]) for run in peer_runs}
        if len(checkpoints) > 1:
            raise SystemExit(f"{peer}'s runs were evaluated at different updates: {checkpoints}")
    transitions = next((p["transitions"] for _, p in payloads if p["transitions"]), None)
    return first | {
        "transitions": transitions,
        "merged_from": [str(path) for path in paths],
        "summary": {peer: summarize(peer_runs) for peer, peer_runs in runs.items()},
        "runs": runs,
    }


def write_results(payload: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print_table(payload["summary"], payload["updates"])
    print(f"wrote {out}")


def main() -> None:
    args = parse_args()
    if args.merge:
        if args.out.resolve() in {path.resolve() for path in args.merge}:
            raise SystemExit(f"--out {args.out} is one of the files to merge; pick another --out.")
        write_results(merge_results(args.merge), args.out)
        return
    if "d3rlpy" in args.peers and not D3RLPY_PYTHON.exists():
        raise SystemExit(f"{D3RLPY_PYTHON} is missing: run `make bench-d3rlpy-venv` first.")
    rlscale_hp, d3rlpy_hp = shared_hyperparameters()
    npz = args.work / (args.dataset.replace("/", "_") + ".npz")
    transitions = None
    if "d3rlpy" in args.peers:
        transitions = export_transitions(args.dataset, args.root, npz)
        print(f"exported {transitions:,} transitions to {npz}", flush=True)
    runs: dict[str, list[dict]] = {peer: [] for peer in args.peers}
    for seed in args.seeds:
        for peer in args.peers:
            hyperparameters = rlscale_hp if peer == "rlscale" else d3rlpy_hp
            runs[peer].append(run_peer(peer, seed, args, hyperparameters, npz))
    summaries = {peer: summarize(peer_runs) for peer, peer_runs in runs.items()}
    payload = {
        "dataset": args.dataset,
        "transitions": transitions,
        "updates": args.updates,
        "eval_episodes": args.eval_episodes,
        "d4rl_references": {"random": D4RL_HOPPER_RANDOM, "expert": D4RL_HOPPER_EXPERT},
        "hyperparameters": {"rlscale": rlscale_hp, "d3rlpy": d3rlpy_hp},
        "summary": summaries,
        "runs": runs,
    }
    write_results(payload, args.out)


if __name__ == "__main__":
    main()
