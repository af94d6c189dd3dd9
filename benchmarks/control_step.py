"""Time per control step of model predictive control on Pendulum-v1: iLQR, CEM and MPPI.

    .venv/bin/python benchmarks/control_step.py [--steps 200] [--horizon 30] [--samples 500]
        [--cem-iterations 3] [--dtype float64] [--seed 0] [--json OUT]

Each planner controls the real Gymnasium ``Pendulum-v1`` (reset with ``--seed``) for one
episode of ``--steps`` steps through ``MPCController``, with the analytic ``PendulumModel``,
``pendulum_cost`` and ``pendulum_terminal_cost``, one start state per step, on one CPU thread
(``torch.set_num_threads(1)``):

- ``ilqr``: ``ILQRPlanner``, 1 iteration per step warm-started from the shifted plan, 10
  cold-start rounds (``mpc``'s default and the setting of ``tests/test_planning.py``);
- ``cem``: ``CEMPlanner``, population ``--samples``, elites a tenth of it, ``--cem-iterations``
  per step, 5 cold-start rounds;
- ``mppi``: ``MPPIPlanner``, ``--samples`` samples, 1 iteration per step (temperature 1, noise
  deviation 1), 10 cold-start rounds.

A control step is one ``controller.act`` call (planning only; the environment's step is not
timed). The first step of the episode plans from scratch over its cold-start rounds and is
reported on its own; median and p95 are over the other steps. The 20 ms goal (50 Hz control) is
met when the p95 is at most 20 ms. Prints a table; ``--json`` also writes the rows to a file.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rlscale.modules.dynamics import (
    PendulumModel,
    pendulum_cost,
    pendulum_state_from_observation,
    pendulum_terminal_cost,
)
from rlscale.modules.planning import (
    CEMPlanner,
    CEMSettings,
    ILQRPlanner,
    ILQRSettings,
    MPCController,
    MPPIPlanner,
    MPPISettings,
)

ENV = "Pendulum-v1"
GOAL_MS = 20.0  # 50 Hz control
PLANNERS = ("ilqr", "cem", "mppi")


def controller(name: str, args: argparse.Namespace) -> MPCController:
    """The MPC controller of one planner, with the analytic model and Pendulum-v1's cost."""
    common = dict(
        dynamics=PendulumModel(),
        cost=pendulum_cost,
        horizon=args.horizon,
        terminal_cost=pendulum_terminal_cost,
        action_low=-2.0,
        action_high=2.0,
    )
    generator = torch.Generator().manual_seed(args.seed)
    if name == "ilqr":
        planner = ILQRPlanner(**common, action_dim=1, settings=ILQRSettings(max_iterations=1))
        return MPCController(planner, cold_start_rounds=10)
    if name == "cem":
        settings = CEMSettings(
            population=args.samples,
            elites=max(1, args.samples // 10),
            iterations=args.cem_iterations,
        )
        planner = CEMPlanner(**common, action_dim=1, settings=settings, generator=generator)
        return MPCController(planner, cold_start_rounds=5)
    settings = MPPISettings(samples=args.samples, iterations=1, temperature=1.0, noise_std=1.0)
    planner = MPPIPlanner(**common, action_dim=1, settings=settings, generator=generator)
    return MPCController(planner, cold_start_rounds=10)


def run_episode(name: str, args: argparse.Namespace) -> dict:
    """One timed episode: per-step planning times (ms) and the episode's return."""
    dtype = getattr(torch, args.dtype)
    mpc = controller(name, args)
    env = gym.make(ENV)
    observation, _ = env.reset(seed=args.seed)
    episode_return, step_ms = 0.0, []
    for _ in range(args.steps):
        state = pendulum_state_from_observation(torch.as_tensor(observation[None], dtype=dtype))
        started = time.perf_counter()
        action = mpc.act(state)
        step_ms.append(1000 * (time.perf_counter() - started))
        observation, reward, terminated, truncated, _ = env.step(
            action[0].numpy().astype(np.float32)
        )
        episode_return += float(reward)
        if terminated or truncated:
            break
    env.close()
    warm = np.array(step_ms[1:])
    p95 = float(np.percentile(warm, 95))
    return {
        "planner": name,
        "steps": len(step_ms),
        "cold_first_step_ms": step_ms[0],
        "median_ms": float(np.median(warm)),
        "p95_ms": p95,
        "return": episode_return,
        "meets_20ms": p95 <= GOAL_MS,
    }


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\nMPC on {ENV} (seed {args.seed}, {args.steps} steps), horizon {args.horizon}, "
        f"{args.samples} samples for CEM/MPPI, {args.dtype}, one thread: ms per control step"
    )
    print("| planner | median ms | p95 ms | cold first step ms | episode return | 20 ms (50 Hz) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['planner']} | {row['median_ms']:.1f} | {row['p95_ms']:.1f} "
            f"| {row['cold_first_step_ms']:.0f} | {row['return']:.1f} "
            f"| {'met' if row['meets_20ms'] else 'missed'} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--cem-iterations", type=int, default=3)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--planners", nargs="+", choices=PLANNERS, default=list(PLANNERS))
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    rows = [run_episode(name, args) for name in args.planners]
    print_table(rows, args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "control_step",
                    "env": ENV,
                    "settings": {
                        key: getattr(args, key)
                        for key in ("steps", "horizon", "samples", "cem_iterations", "dtype")
                    }
                    | {"seed": args.seed, "threads": 1, "goal_ms": GOAL_MS},
                    "machine": {
                        "python": sys.version.split()[0],
                        "torch": torch.__version__,
                        "platform": platform.platform(),
                    },
                    "rows": rows,
                },
                indent=2,
            )
        )
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
