"""Benchmark: what `rlscale tune` costs over a plain Ray Tune script, and PPO ASHA trials per hour.

1. Overhead. The same trials (PPO on CartPole-v1, a grid over lr, a fixed number of iterations)
   run through ``rlscale.platform.tuning.run.tune`` and through a plain Ray Tune script that hands
   RLlib's own PPO class and the same AlgorithmConfig to a ``Tuner``. Both share one Ray instance
   and alternate, round by round, so machine drift hits both, after one uncounted warm-up run.
   Wall time covers the whole call (rlscale's includes its validation, the per-trial placement
   check and the summary it writes; the plain one ``Tuner.fit()``).
2. Throughput. ``tune_configs/ppo_cartpole.yaml`` (ASHA, 16 trials, 2 at a time) on this machine:
   completed trials per hour.

    python benchmarks/tune_overhead.py                 # full run (tens of minutes)
    python benchmarks/tune_overhead.py --smoke         # a minute or two: checks the script works

Prints a table and writes benchmarks/results/tune_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
LRS = [3e-4, 1e-3]


def sweep_text(iterations: int) -> str:
    return yaml.safe_dump({
        "algorithm": "ppo",
        "env": "CartPole-v1",
        "seed": 0,
        "stop": {"iterations": iterations},
        "checkpoint": {"every": 0, "keep": 1},
        "tune": {
            "max_concurrent_trials": 2,
            "param_space": {"hyperparameters.lr": {"grid": LRS}},
        },
    })


def run_rlscale(sweep_file: Path, output: Path, name: str) -> float:
    from rlscale.platform.tuning.run import tune

    started = time.perf_counter()
    result = tune(sweep_file, name=name, output=output)
    elapsed = time.perf_counter() - started
    assert len(result.trials) == len(LRS) and all(not t.error for t in result.trials)
    return elapsed


def run_plain(iterations: int, output: Path, name: str) -> float:
    """The peer: RLlib's PPO class as the trainable, the same config, Tune's own stop rule."""
    from ray import tune

    from rlscale.platform.experiment import prepare
    from rlscale.platform.spec import ExperimentSpec

    spec = ExperimentSpec(algorithm="ppo", env="CartPole-v1", seed=0)
    config = prepare(spec).config
    config.learners(num_gpus_per_learner=0)
    space = config.to_dict()
    space["lr"] = tune.grid_search(LRS)
    started = time.perf_counter()
    tuner = tune.Tuner(
        config.algo_class,
        param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(output),
            stop={"training_iteration": iterations},
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
            verbose=0,
        ),
    )
    results = tuner.fit()
    elapsed = time.perf_counter() - started
    assert len(results) == len(LRS) and not results.errors, results.errors
    return elapsed


def trials_per_hour(sweep_file: Path, output: Path) -> dict[str, float]:
    from rlscale.platform.tuning.run import tune

    started = time.perf_counter()
    result = tune(sweep_file, name="ppo-asha", output=output)
    hours = (time.perf_counter() - started) / 3600
    done = sum(1 for t in result.trials if not t.error)
    return {
        "trials": len(result.trials),
        "completed": done,
        "hours": hours,
        "trials_per_hour": done / hours,
        "best_return": result.best.metric if result.best else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings: checks it runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument(
        "--skip-throughput", action="store_true", help="measure the overhead only (no ASHA sweep)"
    )
    args = parser.parse_args()
    rounds, iterations = (1, 2) if args.smoke else (args.rounds, args.iterations)

    from rlscale.platform.runtime import start_local_ray

    start_local_ray()
    work = Path(tempfile.mkdtemp(prefix="tune-overhead-"))
    sweep_file = work / "overhead.yaml"
    sweep_file.write_text(sweep_text(iterations))
    # Warm-up, not counted: the first trials of a fresh Ray pay for worker start-up and imports.
    run_plain(1, work, "warmup")
    times: dict[str, list[float]] = {"rlscale": [], "plain": []}
    for round_index in range(rounds):
        order = ("rlscale", "plain") if round_index % 2 == 0 else ("plain", "rlscale")
        for peer in order:
            name = f"{peer}-{round_index}"
            if peer == "rlscale":
                times[peer].append(run_rlscale(sweep_file, work, name))
            else:
                times[peer].append(run_plain(iterations, work, name))
            print(f"round {round_index}: {peer} {times[peer][-1]:.1f}s", flush=True)

    asha_file = REPO / "tune_configs" / "ppo_cartpole.yaml"
    if args.smoke:
        data = yaml.safe_load(asha_file.read_text())
        data["stop"] = {"iterations": 3}
        data["tune"]["num_samples"] = 1
        data["tune"]["scheduler"] = {"type": "asha", "grace_period": 1, "max_t": 3}
        data["tune"]["param_space"].pop("hyperparameters.minibatch_size")
        asha_file = work / "ppo_asha_smoke.yaml"
        asha_file.write_text(yaml.safe_dump(data))
    throughput = None if args.skip_throughput else trials_per_hour(asha_file, work)

    rlscale_s, plain_s = statistics.median(times["rlscale"]), statistics.median(times["plain"])
    overhead = rlscale_s / plain_s - 1
    print()
    print("| peer | trials x iterations | wall s per round | median s | vs plain |")
    print("| --- | --- | --- | --- | --- |")
    for peer, median in (("plain Ray Tune", plain_s), ("rlscale tune", rlscale_s)):
        runs = " / ".join(f"{t:.1f}" for t in times["plain" if "plain" in peer else "rlscale"])
        print(f"| {peer} | {len(LRS)} x {iterations} | {runs} | {median:.1f} | "
              f"{median / plain_s:.3f}x |")
    print(f"\noverhead of rlscale tune: {overhead * 100:+.1f}% (goal <= 5%)")
    if throughput:
        print(
            f"PPO CartPole ASHA ({asha_file.name}): {throughput['completed']}/"
            f"{throughput['trials']} trials in {throughput['hours'] * 60:.1f} min = "
            f"{throughput['trials_per_hour']:.1f} trials/hour"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("tune_overhead_smoke.json" if args.smoke else "tune_overhead.json")
    out.write_text(json.dumps({
        "rounds": rounds, "iterations": iterations, "lrs": LRS, "times_s": times,
        "overhead": overhead, "asha": throughput, "smoke": args.smoke,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
