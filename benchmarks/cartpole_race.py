"""A race to a mean return on CartPole-v1: rlscale against its peers, in one run, same machine.

Shared by the per-algorithm scripts (``dqn_cartpole.py``, ...). Each peer is a function
``(seed, max_steps) -> Run``. "Mean return" is the mean return of the last 100 whole training
episodes for every peer (rlscale's EpisodeTotals callback for RLlib runs, SB3's
``ep_info_buffer`` for SB3). Wall time runs from building the algorithm to the iteration that
crosses the target; Ray's start-up is measured once and reported apart. A run that does not
reach the target within ``max_steps`` is reported as not reached.
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

TARGET = 475.0
ENV = "CartPole-v1"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Run:
    peer: str
    seed: int
    reached: bool
    env_steps: int
    wall_s: float
    final_return: float


Peer = Callable[[int, int], Run]


def train_with_defaults(
    algorithm: str,
    env: str,
    seed: int,
    stop: dict[str, Any],
    name: str,
    hyperparameters: dict[str, Any] | None = None,
    keep_in: Path | None = None,
) -> Any:
    """``rlscale.train`` with the algorithm's rlscale defaults (what ``rlscale train`` runs),
    plus ``hyperparameters`` when given; returns the TrainResult. The run goes to a throw-away
    folder, or to ``keep_in`` with a checkpoint every 25 iterations, all kept."""
    import rlscale

    def train(output: Path, checkpoint: dict[str, int]) -> Any:
        spec = rlscale.ExperimentSpec(
            algorithm=algorithm,
            env=env,
            seed=seed,
            output=output,
            name=name,
            stop=stop,
            hyperparameters=hyperparameters or {},
            checkpoint=checkpoint,
        )
        return rlscale.train(spec)

    if keep_in is not None:
        return train(keep_in, {"every": 25, "keep": 1000})
    with tempfile.TemporaryDirectory() as output:
        return train(Path(output), {"every": 0})


def run_rlscale(algorithm: str, seed: int, max_steps: int, peer: str = "rlscale") -> Run:
    stop = {"reward": TARGET, "timesteps": max_steps}
    result = train_with_defaults(algorithm, ENV, seed, stop, f"bench-{algorithm}-{seed}")
    final = result.final
    return Run(
        peer, seed, final.return_mean >= TARGET, final.env_steps, result.wall_s, final.return_mean
    )


def run_rllib_config(peer: str, config: Any, seed: int, max_steps: int) -> Run:
    """Train an RLlib config as given (plus the env, the seed and episode bookkeeping)."""
    from rlscale.platform.episode_stats import EpisodeTotals, EpisodeWindow

    # EpisodeTotals only measures (whole-episode returns); it does not change the algorithm.
    config = config.environment(ENV).debugging(seed=seed).callbacks(EpisodeTotals)
    started = time.perf_counter()
    algo = config.build_algo()
    window = EpisodeWindow()
    try:
        while True:
            result = algo.train()
            window.add_from(result)
            steps = int(result["num_env_steps_sampled_lifetime"])
            mean = float(np.mean(window.returns)) if window.returns else float("nan")
            if mean >= TARGET or steps >= max_steps:
                wall_s = time.perf_counter() - started
                return Run(peer, seed, mean >= TARGET, steps, wall_s, mean)
    finally:
        algo.stop()


def rl_zoo_hyperparameters(algorithm: str) -> dict[str, Any]:
    """rl-zoo's tuned hyper-parameters for ``ENV``, from the installed rl_zoo3 package."""
    import rl_zoo3
    import yaml

    path = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algorithm}.yml"
    return dict(yaml.safe_load(path.read_text())[ENV])


def parse_policy_kwargs(text: str) -> dict[str, Any]:
    """rl-zoo writes policy_kwargs as Python source (``dict(net_arch=[256, 256],
    activation_fn=nn.ReLU)``); read its literal arguments and ``nn.<Layer>`` names without
    evaluating code."""
    from torch import nn

    def value(node: ast.expr) -> Any:
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "nn":
            return getattr(nn, node.attr)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
            return {keyword.arg: value(keyword.value) for keyword in node.keywords}
        return ast.literal_eval(node)

    call = ast.parse(text, mode="eval").body
    if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "dict"):
        raise ValueError(f"unsupported policy_kwargs {text!r}")
    return value(call)


def linear_schedule(value: str | float) -> Callable[[float], float] | float:
    """rl-zoo's ``lin_<start>`` strings: decay linearly from start to 0 over training."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value.removeprefix("lin_"))
        return lambda progress_remaining: progress_remaining * start
    return value


def run_sb3_model(
    make_model: Callable[[], Any], seed: int, max_steps: int, peer: str = "sb3"
) -> Run:
    """Learn an SB3 model until its 100-episode mean first reaches the target."""
    from stable_baselines3.common.callbacks import BaseCallback

    class StopAtTarget(BaseCallback):
        hit: tuple[int, float] | None = None

        def _on_step(self) -> bool:
            buffer = self.model.ep_info_buffer
            if self.hit is None and len(buffer) and np.mean([i["r"] for i in buffer]) >= TARGET:
                self.hit = (self.model.num_timesteps, time.perf_counter() - started)
            return self.hit is None

    started = time.perf_counter()
    model = make_model()
    callback = StopAtTarget()
    model.learn(total_timesteps=max_steps, callback=callback)
    mean = float(np.mean([info["r"] for info in model.ep_info_buffer]))
    steps, wall_s = callback.hit or (int(model.num_timesteps), time.perf_counter() - started)
    return Run(peer, seed, callback.hit is not None, steps, wall_s, mean)


def summarize(
    runs: list[Run], peers: list[str], baselines: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Per peer: how many seeds reached the target, medians, and ratios to its rlscale baseline
    (``baselines[peer]``, default ``"rlscale"``; a ratio > 1 means rlscale needed less)."""
    rows = []
    for peer in peers:
        mine = [run for run in runs if run.peer == peer]
        if not mine:
            continue
        reached = [run for run in mine if run.reached]
        rows.append(
            {
                "peer": peer,
                "reached": f"{len(reached)}/{len(mine)}",
                "median_env_steps": statistics.median(r.env_steps for r in reached)
                if reached
                else None,
                "env_steps": [r.env_steps for r in mine],
                "median_wall_s": statistics.median(r.wall_s for r in reached) if reached else None,
                "wall_s": [round(r.wall_s, 1) for r in mine],
            }
        )
    by_peer = {row["peer"]: row for row in rows}
    for row in rows:
        base = by_peer.get((baselines or {}).get(row["peer"], "rlscale"))
        row["compared_with"] = base["peer"] if base else None
        for key in ("median_env_steps", "median_wall_s"):
            ratio = None
            if base and base[key] and row[key]:
                ratio = round(row[key] / base[key], 2)
            row[key.replace("median_", "ratio_to_rlscale_")] = ratio
    return rows


def print_table(title: str, rows: list[dict[str, Any]], ray_start_s: float) -> None:
    def fmt(value: float | None, spec: str = ",.0f") -> str:
        return "n/a" if value is None else format(value, spec)

    print(f"\n{title} on {ENV}, to mean return {TARGET:g} (Ray start {ray_start_s:.1f}s, excluded)")
    print(
        "| peer | reached | env steps per seed | median env steps | wall s per seed "
        "| median wall s | vs | steps / rlscale's | time / rlscale's |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['peer']} | {row['reached']} "
            f"| {' / '.join(f'{steps:,}' for steps in row['env_steps'])} "
            f"| {fmt(row['median_env_steps'])} "
            f"| {' / '.join(f'{wall:.1f}' for wall in row['wall_s'])} "
            f"| {fmt(row['median_wall_s'], '.1f')} | {row['compared_with']} "
            f"| {fmt(row['ratio_to_rlscale_env_steps'], '.2f')}x "
            f"| {fmt(row['ratio_to_rlscale_wall_s'], '.2f')}x |"
        )


def write_results(path: Path, payload: dict[str, Any]) -> None:
    """Atomic JSON write, so a cut-short benchmark never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(payload, indent=2))
    partial.replace(path)


def race(
    name: str,
    title: str,
    peers: dict[str, Peer],
    baselines: dict[str, str] | None = None,
    max_steps: int = 150_000,
    argv: list[str] | None = None,
) -> None:
    """Parse the common flags, run every peer on every seed, print and save the table.

    ``peers`` is ordered slowest last, so a run cut short still holds the others.
    """
    parser = argparse.ArgumentParser(description=f"{title}: env steps and time to {TARGET:g}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=max_steps)
    parser.add_argument("--peers", nargs="+", choices=list(peers), default=list(peers))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / f"{name}.json")
    args = parser.parse_args(argv)

    import ray

    from rlscale.platform.runtime import start_local_ray

    started = time.perf_counter()
    start_local_ray()
    ray_start_s = time.perf_counter() - started

    runs: list[Run] = []
    for peer in args.peers:
        for seed in args.seeds:
            run = peers[peer](seed, args.max_steps)
            print(
                f"{peer:<12} seed {seed}: reached={run.reached} steps={run.env_steps:,} "
                f"wall={run.wall_s:.1f}s final mean return={run.final_return:.1f}",
                flush=True,
            )
            runs.append(run)
            # Saved after every run, so a long benchmark cut short still leaves its numbers.
            write_results(
                args.out,
                {
                    "benchmark": name,
                    "target": TARGET,
                    "env": ENV,
                    "ray_start_s": ray_start_s,
                    "max_steps": args.max_steps,
                    "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
                    "runs": [asdict(r) for r in runs],
                    "summary": summarize(runs, args.peers, baselines),
                },
            )
    ray.shutdown()
    print_table(title, summarize(runs, args.peers, baselines), ray_start_s)
    print(f"\nwrote {args.out}")
