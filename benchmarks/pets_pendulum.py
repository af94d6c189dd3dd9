"""rlscale's PETS on Pendulum-v1 against mbrl-lib's, with the same settings, seeds and budget.

    .venv/bin/python benchmarks/pets_pendulum.py --seeds 0 1 2 --env-steps 2000 \
        [--peer] [--json benchmarks/results/pets_pendulum.json]

Both sides: one random 200-step episode, then 200-step episodes of CEM-MPC on a 5-member
probabilistic ensemble (2 hidden layers of 128, SiLU) refitted before each, CEM with a
population of 100, 10% elites, 3 iterations, 10 particles and a 30-step horizon. The
propagation differs as each library defines its default: rlscale TS-inf (a particle keeps its
member), mbrl-lib's ``random_model`` (TS1). ``--peer`` also runs mbrl-lib's side
(``benchmarks/mbrl/pets_pendulum.py`` in ``.venv-mbrl``, ``make bench-mbrl-venv``) on the same
seeds, one after the other, never at the same time.

Reports, per seed and side: each episode's return, the env steps at the end of the first planned
episode whose return reaches ``--threshold`` (-250), the wall and CPU time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EPISODE_STEPS = 200
HYPERPARAMETERS = {
    "hidden_sizes": [128, 128],
    "ensemble": {"members": 5},
    "horizon": 30,
    "planner_settings": {
        "population": 100,
        "elites": 10,
        "iterations": 3,
        "particles": 10,
    },
    "random_warmup_steps": EPISODE_STEPS,
}
PEER_SETTINGS = {
    "ensemble_size": 5,
    "num_layers": 2,
    "hid_size": 128,
    "planning_horizon": 30,
    "cem_population_size": 100,
    "cem_elite_ratio": 0.1,
    "cem_num_iters": 3,
    "num_particles": 10,
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def episode_returns(history) -> list[float]:
    """One episode per iteration (200 steps): each return from the running means."""
    returns, previous_total = [], 0.0
    for row in history:
        total = row.return_mean * row.episodes
        returns.append(total - previous_total)
        previous_total = total
    return returns


def run_rlscale(seed: int, env_steps: int, threshold: float) -> dict:
    import rlscale

    with tempfile.TemporaryDirectory() as output:
        spec = rlscale.ExperimentSpec(
            algorithm="pets",
            env="Pendulum-v1",
            seed=seed,
            output=output,
            name=f"pets-{seed}",
            stop={"timesteps": env_steps},
            checkpoint={"every": 0},
            hyperparameters=HYPERPARAMETERS,
        )
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = rlscale.train(spec)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    returns = episode_returns(result.history)
    reached = next(
        (
            (index + 1) * EPISODE_STEPS
            for index, value in enumerate(returns)
            if index > 0 and value >= threshold
        ),
        None,
    )
    return {"returns": returns, "steps_to_threshold": reached, "wall_s": wall, "cpu_s": cpu}


def run_peer(seed: int, env_steps: int, threshold: float) -> dict:
    python = ROOT / ".venv-mbrl" / "bin" / "python"
    if not python.exists():
        raise SystemExit("mbrl-lib's venv is missing: run `make bench-mbrl-venv` first")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "peer.json"
        subprocess.run(
            [
                str(python),
                str(ROOT / "benchmarks" / "mbrl" / "pets_pendulum.py"),
                "--seed",
                str(seed),
                "--env-steps",
                str(env_steps),
                "--threshold",
                str(threshold),
                "--settings",
                json.dumps(PEER_SETTINGS),
                "--json",
                str(out),
            ],
            check=True,
        )
        report = json.loads(out.read_text())
    return {
        "returns": [episode["return"] for episode in report["episodes"]],
        "steps_to_threshold": report["steps_to_threshold"],
        "wall_s": report["wall_seconds"],
        "cpu_s": report["cpu_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--env-steps", type=int, default=2_000)
    parser.add_argument("--threshold", type=float, default=-250.0)
    parser.add_argument("--peer", action="store_true", help="also run mbrl-lib's PETS")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        sides = [("rlscale", run_rlscale)] + ([("mbrl-lib", run_peer)] if args.peer else [])
        for name, run in sides:
            outcome = run(seed, args.env_steps, args.threshold)
            rows.append({"side": name, "seed": seed, **outcome})
            print(
                f"{name:9s} seed {seed}: steps to {args.threshold:g}: "
                f"{outcome['steps_to_threshold']}  wall {outcome['wall_s']:.0f}s  "
                f"returns {[round(r) for r in outcome['returns']]}",
                flush=True,
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"settings": HYPERPARAMETERS, "peer_settings": PEER_SETTINGS, "rows": rows}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"-> {args.json}")
    sys.exit(0)


if __name__ == "__main__":
    main()
