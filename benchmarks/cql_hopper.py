"""Offline RL on logged Hopper-v5 data: rlscale's CQL, BCQ and Diffusion-QL against d3rlpy's CQL
and BCQ on the very same transitions, 5 seeds a run.

    make bench-d3rlpy-venv     # once: d3rlpy pins gymnasium 1.0, so it gets .venv-d3rlpy
    .venv/bin/python benchmarks/cql_hopper.py --dataset hopper/medium-v0 [--root DIR] \
        [--algorithms cql bcq diffusion_ql] [--peers rlscale d3rlpy] [--seeds 0 1 2 3 4] \
        [--updates 10000] [--eval-every 2500] [--eval-episodes 20] [--out OUT.json]
    .venv/bin/python benchmarks/cql_hopper.py --merge A.json B.json [--out OUT.json]

The dataset is a Minari dataset (``rlscale datasets collect`` with a Hopper PPO checkpoint);
d3rlpy reads the same transitions, exported once to an ``.npz`` beside the results. Each peer,
algorithm and seed runs alone in its own process (``offline_rlscale_peer.py`` in rlscale's
venv, ``d3rlpy/offline_peer.py`` in d3rlpy's), one torch thread each, so all are timed alike:

- gradient updates per second over the training time only (data sampling and updates; the
  evaluation episodes are not timed);
- greedy return after the same number of updates, raw and as D4RL's normalized score
  (100 * (R - random) / (expert - random) with D4RL's Hopper references), over the same
  evaluation episodes (start states) for every run (``evaluation_episodes.py``); the standard
  error is over seeds, the independent runs.

d3rlpy runs each algorithm with rlscale's defaults mapped onto its names
(``shared_hyperparameters``): for CQL, rlscale's ``CQLConfig`` (learning rates, batch, tau,
sampled actions, conservative weight 5 with no Lagrangian, twin critics, [64, 64] layers) with
rlscale's behavior-cloning warm-up off, since d3rlpy's CQL has none; for BCQ, rlscale's
``BCQConfig`` (Φ, λ, sampled actions, the VAE's β, widths and learning rates). d3rlpy has no
Diffusion-QL: that row has no peer.

Writes benchmarks/results/cql_hopper.json (or ``--out``) and prints the table of
docs/benchmarks.md. ``--merge`` trains nothing: it pools the runs of results files written with
other seeds (same dataset, updates, evaluation and hyperparameters) into one table.
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
ALGORITHMS = ("cql", "bcq", "diffusion_ql")
DIFFUSION_QL_HOPPER_ETA = 0.2
D3RLPY_ALGORITHMS = ("cql", "bcq")
"""The algorithms d3rlpy 2.8.1 also has (it has no Diffusion-QL)."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="hopper/medium-v0")
    parser.add_argument("--root", type=Path, help="datasets root (default MINARI_DATASETS_PATH)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--eval-every", type=int, default=2_500)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument(
        "--algorithms", nargs="+", choices=ALGORITHMS, default=["cql"], help="rlscale's names"
    )
    peers = ("rlscale", "d3rlpy")
    parser.add_argument("--peers", nargs="+", choices=peers, default=list(peers))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "cql_hopper")
    parser.add_argument(
        "--merge", type=Path, nargs="+", metavar="RESULTS", help="pool saved results, no training"
    )
    return parser.parse_args()


def shared_hyperparameters(algorithm: str) -> tuple[dict, dict | None]:
    """rlscale's defaults for ``algorithm`` as rlscale's overrides and under d3rlpy's names
    (None where d3rlpy lacks the algorithm)."""
    from rlscale.algorithms import get_algorithm

    config = get_algorithm(algorithm).make_config()
    if algorithm == "cql":
        return {"bc_iters": 0}, {
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
            # Fixed conservative weight, as RLlib's non-Lagrangian CQL (d3rlpy/offline_peer.py).
            "alpha_learning_rate": 0.0,
            "initial_alpha": 1.0,
            "alpha_threshold": 0.0,
        }
    if algorithm == "bcq":
        return {}, {
            "actor_learning_rate": config.actor_lr,  # the perturbation network ξ
            "critic_learning_rate": config.critic_lr,
            "imitator_learning_rate": config.vae_lr,
            "batch_size": config.train_batch_size_per_learner,
            "gamma": config.gamma,
            "tau": config.tau,
            "n_critics": 2 if config.twin_q else 1,
            "lam": config.target_min_weight,
            "n_action_samples": config.num_sampled_actions,
            "action_flexibility": config.perturbation_scale,
            "beta": config.vae_beta,
            "hidden_units": list(config.hidden_sizes),
            "imitator_hidden_units": list(config.vae_hidden_sizes),
        }
    if algorithm == "diffusion_ql":
        # The paper sets η per task (Wang et al. 2023, appendix). At the default η = 1 the
        # critics diverged on this data (seed 0: mean Q of the logged actions 15,000 after
        # 2,500 updates, return 71 after 10k; with η = 0 they settle), so the Q term here
        # is 0.2 (docs/benchmarks.md).
        return {"eta": DIFFUSION_QL_HOPPER_ETA}, None
    return {}, None


def peer_label(library: str, algorithm: str) -> str:
    return f"{library} {algorithm}"


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
    library: str,
    algorithm: str,
    seed: int,
    args: argparse.Namespace,
    hyperparameters: dict,
    npz: Path,
) -> dict:
    peer = peer_label(library, algorithm)
    out = args.work / f"{library}_{algorithm}_seed{seed}.json"
    common = [
        "--algorithm", algorithm,
        "--seed", str(seed),
        "--updates", str(args.updates),
        "--eval-every", str(args.eval_every),
        "--eval-episodes", str(args.eval_episodes),
        "--hyperparameters", json.dumps(hyperparameters),
        "--out", str(out),
    ]  # fmt: skip
    if library == "rlscale":
        command = [sys.executable, str(REPO / "benchmarks" / "offline_rlscale_peer.py")]
        command += ["--dataset", args.dataset, "--env", "Hopper-v5"]
        command += ["--root", str(args.root)] if args.root else []
    else:
        command = [str(D3RLPY_PYTHON), str(REPO / "benchmarks" / "d3rlpy" / "offline_peer.py")]
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
    print(f"\nHopper-v5 data, greedy return after {updates:,} updates (mean over seeds)")
    print(
        "| peer | updates/s | speed / d3rlpy's | return ± s.e. | D4RL score | returns per seed "
        "| mean return by updates |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for peer, summary in summaries.items():
        algorithm = peer.split()[-1]
        reference = summaries.get(peer_label("d3rlpy", algorithm), {})
        speed = summary["updates_per_second_mean"]
        reference_speed = reference.get("updates_per_second_mean")
        ratio = f"{speed / reference_speed:.2f}x" if reference_speed else "n/a"
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
    # Files written before BCQ and Diffusion-QL joined name the CQL peers by library alone.
    for key in ("runs", "summary", "hyperparameters"):
        payload[key] = {
            (peer_label(name, "cql") if name in ("rlscale", "d3rlpy") else name): value
            for name, value in payload.get(key, {}).items()
        }
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
    plan: list[tuple[str, str, dict]] = []  # (library, algorithm, hyperparameters)
    for algorithm in args.algorithms:
        rlscale_side, d3rlpy_side = shared_hyperparameters(algorithm)
        for library in args.peers:
            if library == "d3rlpy" and d3rlpy_side is None:
                print(f"d3rlpy has no {algorithm}: rlscale runs it alone", flush=True)
                continue
            plan.append((library, algorithm, rlscale_side if library == "rlscale" else d3rlpy_side))
    npz = args.work / (args.dataset.replace("/", "_") + ".npz")
    transitions = None
    if any(library == "d3rlpy" for library, _, _ in plan):
        transitions = export_transitions(args.dataset, args.root, npz)
        print(f"exported {transitions:,} transitions to {npz}", flush=True)
    runs: dict[str, list[dict]] = {peer_label(lib, algo): [] for lib, algo, _ in plan}
    # Seed by seed, so a run cut short still has every peer at the seeds it finished.
    for seed in args.seeds:
        for library, algorithm, hyperparameters in plan:
            report = run_peer(library, algorithm, seed, args, hyperparameters, npz)
            runs[peer_label(library, algorithm)].append(report)
    summaries = {peer: summarize(peer_runs) for peer, peer_runs in runs.items()}
    payload = {
        "dataset": args.dataset,
        "transitions": transitions,
        "updates": args.updates,
        "eval_episodes": args.eval_episodes,
        "d4rl_references": {"random": D4RL_HOPPER_RANDOM, "expert": D4RL_HOPPER_EXPERT},
        "hyperparameters": {peer_label(lib, algo): hp for lib, algo, hp in plan},
        "summary": summaries,
        "runs": runs,
    }
    write_results(payload, args.out)


if __name__ == "__main__":
    main()
