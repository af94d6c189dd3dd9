"""Sample efficiency: env steps to a return threshold for `pets` against rlscale's `sac` and `ppo`.

    nice -n 19 .venv/bin/python benchmarks/sample_efficiency.py --env Pendulum-v1 \
        --algos pets sac ppo --seeds 0 1 2
    nice -n 19 .venv/bin/python benchmarks/sample_efficiency.py --env InvertedPendulum-v5 \
        --algos sac ppo --seeds 0 1 2

Each (algorithm, env, seed) trains with rlscale's own defaults for that algorithm and env, built
as ``rlscale train`` builds it (``prepare(ExperimentSpec)``, then the algorithm), in a
subprocess of its own with an embedded Ray bound to 127.0.0.1, one run at a time.

The measure: "env steps to threshold" is the lifetime env steps sampled at the end of the first
``algo.train()`` iteration at which the mean return of the last 5 completed training episodes
(whole episodes, rlscale's ``EpisodeTotals``) reaches the env's threshold (Pendulum-v1 -250,
InvertedPendulum-v5 950). A run stops there, or once it has sampled its cap of env steps
(``--cap algo=steps``); a run that hits the cap is reported as "> cap", and a ratio against it
as a bound. RLlib's own ``episode_return_mean`` with ``metrics_num_episodes_for_smoothing=5`` is
recorded beside it for comparison.

Writes ``benchmarks/results/sample_efficiency_<env>.json`` (``<env>``: the id in lower case
without its version) after every run, and prints a Markdown table per env: the median env steps
over the seeds per algorithm and each algorithm's median over `pets`'s.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SMOOTHING_EPISODES = 5
REFERENCE_ALGORITHM = "pets"
THRESHOLDS = {"Pendulum-v1": -250.0, "InvertedPendulum-v5": 950.0}
DEFAULT_CAPS = {
    "Pendulum-v1": {"pets": 3_000, "sac": 20_000, "ppo": 300_000},
    "InvertedPendulum-v5": {"pets": 8_000, "sac": 40_000, "ppo": 200_000, "mbpo": 16_000},
}
"""Env steps after which a run stops unreached; one entry per (env, algorithm) benchmarked."""
HYPERPARAMETERS: dict[tuple[str, str], dict[str, Any]] = {
    # The pets long check's settings: a 0.4 s horizon and narrower first CEM samples.
    ("pets", "InvertedPendulum-v5"): {"horizon": 10, "planner_settings": {"initial_std": 1.0}},
    # The mbpo long check's settings: the paper's networks train too slowly on 2 CPU cores.
    ("mbpo", "InvertedPendulum-v5"): {
        "hidden_sizes": [64, 64],
        "ensemble": {"hidden_sizes": [128, 128]},
        "model_updates": 200,
    },
}
"""(algorithm, env) -> hyper-parameters over rlscale's defaults; otherwise a run uses the
defaults ``rlscale train ALGO --env ENV`` uses."""
RUN_TIMEOUT_S = 3_600
RAY_START_ATTEMPTS = 3


@dataclass(frozen=True)
class Job:
    algorithm: str
    env: str
    seed: int
    cap: int
    threshold: float
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Iteration:
    env_steps: int
    episode_returns: list[float]
    """Returns of the training episodes completed in this iteration."""
    smoothed_return: float | None
    """Mean of the last ``SMOOTHING_EPISODES`` completed episodes so far (None before any)."""
    rllib_episode_return_mean: float | None


@dataclass
class RunResult:
    algorithm: str
    env: str
    seed: int
    cap: int
    threshold: float
    steps_to_threshold: int | None
    """None: the run reached its cap (or failed) without reaching the threshold."""
    env_steps_sampled: int
    final_smoothed_return: float | None
    wall_s: float
    """Building the algorithm and training; Ray's start is ``ray_start_s``."""
    cpu_s: float | None
    """CPU seconds of the training process over the same span (every run here samples and
    learns in that process: no EnvRunner or Learner actors)."""
    ray_start_s: float | None
    hyperparameters: dict[str, Any]
    iterations: list[Iteration] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def not_started(cls, job: Job, **timing_and_error: Any) -> RunResult:
        """``job``'s result before any iteration: nothing sampled, nothing reached."""
        return cls(
            algorithm=job.algorithm,
            env=job.env,
            seed=job.seed,
            cap=job.cap,
            threshold=job.threshold,
            steps_to_threshold=None,
            env_steps_sampled=0,
            final_smoothed_return=None,
            hyperparameters=job.hyperparameters,
            **timing_and_error,
        )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def smoothed(returns: list[float]) -> float | None:
    window = returns[-SMOOTHING_EPISODES:]
    return float(sum(window) / len(window)) if len(window) == SMOOTHING_EPISODES else None


# ---------------------------------------------------------------- one run (in its subprocess)


def start_ray_with_retries(attempts: int = RAY_START_ATTEMPTS) -> None:
    """Ray's local start times out on a heavily loaded machine; that says nothing about the run."""
    import ray

    from rlscale.platform.runtime import start_local_ray

    for attempt in range(1, attempts + 1):
        try:
            start_local_ray()
            return
        except Exception as exc:  # Ray raises a bare Exception on a start-up timeout
            ray.shutdown()
            if attempt == attempts:
                raise
            print(f"Ray did not start ({exc}); retrying ({attempt}/{attempts})", flush=True)
            time.sleep(10)


def train_one(job: Job) -> RunResult:
    """Build the job's algorithm as ``rlscale train`` does and train to the threshold or cap."""
    import numpy as np
    import ray
    import torch

    from rlscale import ExperimentSpec
    from rlscale.platform.episode_stats import EPISODE_RETURNS_KEY
    from rlscale.platform.experiment import place_on_cluster, prepare
    from rlscale.platform.iteration import build_algorithm

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as output:
        spec = ExperimentSpec(
            algorithm=job.algorithm,
            env=job.env,
            seed=job.seed,
            output=output,
            name=f"sample-efficiency-{job.algorithm}-{job.seed}",
            stop={"timesteps": job.cap},
            checkpoint={"every": 0},
            hyperparameters=job.hyperparameters,
        )
        prepared = prepare(spec)
        # Reporting only: RLlib's episode_return_mean over the same window, for comparison.
        prepared.config.reporting(metrics_num_episodes_for_smoothing=SMOOTHING_EPISODES)
        started = time.perf_counter()
        start_ray_with_retries()
        ray_start_s = time.perf_counter() - started
        resources = ray.cluster_resources()
        place_on_cluster(
            prepared.config, prepared.spec, resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        )
        wall, cpu = time.perf_counter(), cpu_seconds()
        algo = build_algorithm(prepared)
        torch.set_num_threads(1)
        result = RunResult.not_started(job, wall_s=0.0, cpu_s=0.0, ray_start_s=ray_start_s)
        returns: list[float] = []
        try:
            while True:
                raw = algo.train()
                runners = raw.get("env_runners", {})
                completed = np.atleast_1d(runners.get(EPISODE_RETURNS_KEY, [])).astype(float)
                returns.extend(completed.tolist())
                steps = int(
                    raw.get("num_env_steps_sampled_lifetime")
                    or runners.get("num_env_steps_sampled_lifetime", 0)
                )
                rllib_mean = runners.get("episode_return_mean")
                iteration = Iteration(
                    env_steps=steps,
                    episode_returns=completed.tolist(),
                    smoothed_return=smoothed(returns),
                    rllib_episode_return_mean=None if rllib_mean is None else float(rllib_mean),
                )
                result.iterations.append(iteration)
                print(
                    f"  {job.algorithm} {job.env} seed {job.seed}: {steps:,} steps, "
                    f"last-{SMOOTHING_EPISODES} mean {iteration.smoothed_return}, "
                    f"{time.perf_counter() - wall:.0f}s",
                    flush=True,
                )
                reached = (
                    iteration.smoothed_return is not None
                    and iteration.smoothed_return >= job.threshold
                )
                if reached:
                    result.steps_to_threshold = steps
                if reached or steps >= job.cap:
                    break
        finally:
            result.wall_s = time.perf_counter() - wall
            result.cpu_s = cpu_seconds() - cpu
            algo.stop()
            ray.shutdown()
        result.env_steps_sampled = result.iterations[-1].env_steps
        result.final_smoothed_return = result.iterations[-1].smoothed_return
        return result


def run_result_from_dict(data: dict[str, Any]) -> RunResult:
    iterations = [Iteration(**row) for row in data["iterations"]]
    return RunResult(**{**data, "iterations": iterations})


def child_main(job_json: str, out: Path) -> None:
    job = Job(**json.loads(job_json))
    out.write_text(json.dumps(asdict(train_one(job)), indent=2))


# ---------------------------------------------------------------- the driver


def run_in_subprocess(job: Job, log_dir: Path, timeout_s: float) -> RunResult:
    """One job in a fresh Python process (so a crash or leak stays there); its output to a log."""
    out = log_dir / f"{job.env}-{job.algorithm}-{job.seed}.json"
    log = out.with_suffix(".log")
    command = [
        sys.executable,
        __file__,
        "--child-job",
        json.dumps(asdict(job)),
        "--child-out",
        str(out),
    ]
    started = time.perf_counter()
    with log.open("w") as log_file:
        try:
            subprocess.run(
                command, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout_s, check=True
            )
            return run_result_from_dict(json.loads(out.read_text()))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            tail = log.read_text()[-2_000:]
            print(f"run failed ({exc}); log {log}:\n{tail}", flush=True)
            return RunResult.not_started(
                job,
                wall_s=time.perf_counter() - started,
                cpu_s=None,
                ray_start_s=None,
                error=f"{type(exc).__name__}: {exc} (log {log})",
            )


@dataclass(frozen=True)
class Median:
    """A median over seeds; ``bounded``: the median run hit its cap, so only ``> steps``."""

    steps: int | None
    bounded: bool

    def __str__(self) -> str:
        if self.steps is None:
            return "n/a"
        return f"> {self.steps:,}" if self.bounded else f"{self.steps:,.0f}"


def median_steps(runs: list[RunResult]) -> Median:
    """Median env steps to threshold; a run that hit its cap counts as "more than the cap"."""
    if not runs or any(run.error for run in runs):
        return Median(None, False)
    # A capped run's steps are "more than its cap": above every run that reached.
    keyed = sorted(
        (False, run.steps_to_threshold) if run.steps_to_threshold is not None else (True, run.cap)
        for run in runs
    )
    keyed = [(steps, bounded) for bounded, steps in keyed]
    if len(keyed) % 2:
        steps, bounded = keyed[len(keyed) // 2]
        return Median(steps, bounded)
    (low, low_bounded), (high, high_bounded) = keyed[len(keyed) // 2 - 1 : len(keyed) // 2 + 1]
    return Median(int(statistics.mean([low, high])), low_bounded or high_bounded)


def ratio(other: Median, reference: Median) -> str:
    """``other`` / ``reference`` as a number, a bound, or n/a when neither side bounds it."""
    if other.steps is None or reference.steps is None:
        return "n/a"
    value = other.steps / reference.steps
    if not other.bounded and not reference.bounded:
        return f"{value:.1f}x"
    if other.bounded and not reference.bounded:
        return f">= {value:.1f}x"
    if reference.bounded and not other.bounded:
        return f"<= {value:.1f}x"
    return "n/a (both capped)"


def seed_of(run: RunResult) -> int:
    return run.seed


def steps_text(run: RunResult) -> str:
    if run.error:
        return "failed"
    if run.steps_to_threshold is None:
        return f"> {run.cap:,}"
    return f"{run.steps_to_threshold:,}"


def summary(env: str, runs: list[RunResult], algorithms: list[str]) -> list[dict[str, Any]]:
    medians = {
        algo: median_steps([r for r in runs if r.algorithm == algo and r.env == env])
        for algo in algorithms
    }
    reference = medians.get(REFERENCE_ALGORITHM)
    rows = []
    for algo in algorithms:
        mine = sorted((r for r in runs if r.algorithm == algo and r.env == env), key=seed_of)
        rows.append(
            {
                "algorithm": algo,
                "cap": mine[0].cap if mine else None,
                "reached": f"{sum(r.steps_to_threshold is not None for r in mine)}/{len(mine)}",
                "steps_per_seed": [steps_text(r) for r in mine],
                "median_steps": str(medians[algo]),
                f"ratio_to_{REFERENCE_ALGORITHM}": ratio(medians[algo], reference)
                if reference is not None and algo != REFERENCE_ALGORITHM
                else None,
                "median_wall_s": statistics.median(r.wall_s for r in mine) if mine else None,
            }
        )
    return rows


def print_table(env: str, threshold: float, rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{env}: env steps until the mean return of the last {SMOOTHING_EPISODES} training "
        f"episodes reaches {threshold:g}"
    )
    print(
        f"| algorithm | cap | reached | env steps per seed | median env steps "
        f"| median / {REFERENCE_ALGORITHM}'s | median wall s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        per_seed = " / ".join(row["steps_per_seed"])
        wall = row["median_wall_s"]
        print(
            f"| {row['algorithm']} | {row['cap']:,} | {row['reached']} | {per_seed} "
            f"| {row['median_steps']} | {row[f'ratio_to_{REFERENCE_ALGORITHM}'] or '-'} "
            f"| {'n/a' if wall is None else f'{wall:.0f}'} |"
        )


def results_path(env: str, folder: Path) -> Path:
    slug = env.split("-v")[0].replace("/", "_").lower()
    return folder / f"sample_efficiency_{slug}.json"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic, so a benchmark cut short never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(payload, indent=2) + "\n")
    partial.replace(path)


def completed_runs(path: Path) -> list[RunResult]:
    """The runs in an earlier results file that did not fail (``--resume`` keeps them)."""
    if not path.exists():
        return []
    runs = [run_result_from_dict(data) for data in json.loads(path.read_text())["runs"]]
    return [run for run in runs if run.error is None]


def parse_caps(items: list[str]) -> dict[str, int]:
    caps = {}
    for item in items:
        name, _, steps = item.partition("=")
        if not name or not steps.isdigit() or int(steps) <= 0:
            raise SystemExit(f"--cap {item!r}: use ALGORITHM=STEPS with a positive integer")
        caps[name] = int(steps)
    return caps


def jobs_for(env: str, algorithms: list[str], seeds: list[int], caps: dict[str, int]) -> list[Job]:
    if env not in THRESHOLDS:
        raise SystemExit(f"--env {env}: no threshold set; known: {', '.join(THRESHOLDS)}")
    env_caps = {**DEFAULT_CAPS.get(env, {}), **caps}
    missing = [algo for algo in algorithms if algo not in env_caps]
    if missing:
        raise SystemExit(f"no cap for {', '.join(missing)} on {env}: pass --cap ALGORITHM=STEPS")
    return [
        Job(algo, env, seed, env_caps[algo], THRESHOLDS[env], HYPERPARAMETERS.get((algo, env), {}))
        # Seed by seed, so a benchmark cut short still holds every algorithm on the first seeds.
        for seed in seeds
        for algo in algorithms
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", default=list(THRESHOLDS), choices=list(THRESHOLDS))
    parser.add_argument("--algos", nargs="+", default=None, help="default: every capped one")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cap", nargs="+", default=[], metavar="ALGO=STEPS")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the successful runs of the results file and run only the missing ones",
    )
    parser.add_argument("--run-timeout", type=float, default=RUN_TIMEOUT_S, metavar="SECONDS")
    parser.add_argument("--child-job", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_job:
        child_main(args.child_job, args.child_out)
        return

    caps = parse_caps(args.cap)
    log_dir = Path(tempfile.mkdtemp(prefix="sample_efficiency_"))
    print(f"per-run logs in {log_dir}", flush=True)
    for env in args.env:
        algorithms = args.algos or list(DEFAULT_CAPS.get(env, {}))
        jobs = jobs_for(env, algorithms, args.seeds, caps)
        runs = completed_runs(results_path(env, args.results_dir)) if args.resume else []
        done = {(run.algorithm, run.seed, run.cap) for run in runs}
        for job in jobs:
            if (job.algorithm, job.seed, job.cap) in done:
                continue
            run = run_in_subprocess(job, log_dir, args.run_timeout)
            runs.append(run)
            print(
                f"{run.algorithm:<5} {env} seed {run.seed}: steps to threshold {steps_text(run)}, "
                f"final last-{SMOOTHING_EPISODES} mean {run.final_smoothed_return}, "
                f"wall {run.wall_s:.0f}s, CPU {run.cpu_s or 0:.0f}s",
                flush=True,
            )
            write_json(
                results_path(env, args.results_dir),
                {
                    "benchmark": "sample_efficiency",
                    "env": env,
                    "threshold": THRESHOLDS[env],
                    "smoothing_episodes": SMOOTHING_EPISODES,
                    "seeds": args.seeds,
                    "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
                    "runs": [asdict(r) for r in runs],
                    "summary": summary(env, runs, algorithms),
                },
            )
        print_table(env, THRESHOLDS[env], summary(env, runs, algorithms))
        print(f"wrote {results_path(env, args.results_dir)}")


if __name__ == "__main__":
    main()
