"""Projected PPO throughput for many EnvRunners and a GPU learner, from measured costs.

    .venv/bin/python benchmarks/scaling_projection.py \
        [benchmarks/results/pg_rollout_multinode.json] [--runners 8 64 512] \
        [--gpu-samples-per-s 134600] [--gpu-update-overhead-s 0.013] [--gpu-learners 1]

A model on paper (docs/scaling.md states it and its assumptions), fed with what
``pg_rollout_scaling.py --multinode`` measured on a local multi-node cluster. rlscale's PPO is
synchronous: an iteration samples on every runner, gathers the episodes in the driver, updates,
and sends the weights back, so its time is the sum

    T(n) = t_step + n * t_gather + t_learn(n) + t_sync(n)


- weak scaling: each of the n runners steps what one runner stepped in the measurement
  (``train_batch``, 8 envs), so the batch is B(n) = n * train_batch and ``t_step`` is the
  runners' own stepping time, the same for every n (each runner has its own core);
- ``t_gather``: the transfer and driver handling of one runner's share of the batch (round
  trip minus stepping), paid once per runner because the driver receives and deserializes the
  episodes one after the other; the per-runner cost is the least-squares slope, through the
  origin, of the measured overhead against the runner count;
- ``t_sync(n) = a + b n``: the weight sync's fixed part and per-runner slope, fitted to the
  measured runner counts (Ray's object store serves each runner's copy from the driver's node);
- ``t_learn(n) = epochs * minibatches * max(overhead, B(n) / minibatches / samples_per_s)``:
  PPO's epochs of ``minibatches`` minibatches per epoch (its defaults: 10 and 1,024 / 256 = 4,
  the minibatch growing with the batch) on a GPU learner. One H200 (benchmarks/results/
  gpu_learner_h200.json) ran ``cql`` at 65.7 updates/s at a batch of 2,048 (134,600 samples
  per second of gradient steps: ``--gpu-samples-per-s``) and at 76.9 updates/s at its default
  batch of 128 (13 ms per update whatever the batch: ``--gpu-update-overhead-s``). CQL's
  update (three networks, sampled actions) is heavier than PPO's on the same widths, so the
  projection is on the safe side.

Prints one row per runner count: the terms, T, env steps/s and the largest term (the
bottleneck).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "pg_rollout_multinode.json"
PPO_EPOCHS = 10
"""rlscale's PPO default ``num_epochs``."""
PPO_MINIBATCHES = 4
"""Minibatches per epoch at rlscale's PPO defaults (a batch of 1,024 in minibatches of 256)."""
H200_CQL_SAMPLES_PER_S = 65.7 * 2048
H200_UPDATE_OVERHEAD_S = 1 / 76.9


def fit_sync(rows: list[dict]) -> tuple[float, float]:
    """Least-squares a + b n through the measured (runners, weight sync seconds)."""
    points = [(row["env_runners"], row["weight_sync_s"]) for row in rows]
    if len(points) == 1:
        return points[0][1], 0.0
    mean_n = sum(n for n, _ in points) / len(points)
    mean_t = sum(t for _, t in points) / len(points)
    spread = sum((n - mean_n) ** 2 for n, _ in points)
    slope = sum((n - mean_n) * (t - mean_t) for n, t in points) / spread
    return mean_t - slope * mean_n, max(0.0, slope)


def gather_cost_per_runner(rows: list[dict]) -> float:
    """Least-squares slope through the origin of (runners, transfer and driver seconds)."""
    numerator = sum(row["env_runners"] * row["batch_transfer_and_driver_s"] for row in rows)
    return max(0.0, numerator / sum(row["env_runners"] ** 2 for row in rows))


def project(
    payload: dict,
    runner_counts: list[int],
    gpu_samples_per_s: float,
    gpu_update_overhead_s: float,
    gpu_learners: int = 1,
) -> list[dict]:
    rows = sorted(payload["rows"], key=lambda row: row["env_runners"])
    one = rows[0]  # the fewest runners: each has a core of its own
    per_runner_batch = one["train_batch"] // one["env_runners"]
    t_step = one["batch_runner_compute_s"]
    t_gather = gather_cost_per_runner(rows)
    sync_fixed, sync_slope = fit_sync(rows)
    projected = []
    for n in runner_counts:
        batch = n * per_runner_batch
        terms = {
            "runners stepping": t_step,
            "gathering the batch": n * t_gather,
            # Learners split each minibatch (DDP), assumed to scale perfectly.
            "GPU learner": PPO_EPOCHS
            * PPO_MINIBATCHES
            * max(
                gpu_update_overhead_s,
                batch / PPO_MINIBATCHES / gpu_learners / gpu_samples_per_s,
            ),
            "weight sync": sync_fixed + sync_slope * n,
        }
        total = sum(terms.values())
        projected.append(
            {
                "env_runners": n,
                "batch": batch,
                **{f"{name} s": seconds for name, seconds in terms.items()},
                "iteration_s": total,
                "env_steps_per_s": batch / total,
                "bottleneck": max(terms, key=terms.get),
            }
        )
    return projected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="?", default=RESULTS)
    parser.add_argument("--runners", type=int, nargs="+", default=[8, 64, 512])
    parser.add_argument("--gpu-samples-per-s", type=float, default=H200_CQL_SAMPLES_PER_S)
    parser.add_argument("--gpu-update-overhead-s", type=float, default=H200_UPDATE_OVERHEAD_S)
    parser.add_argument("--gpu-learners", type=int, default=1, help="GPU Learners (DDP)")
    args = parser.parse_args()
    try:
        payload = json.loads(args.results.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(
            f"cannot read {args.results}: {exc}; run pg_rollout_scaling.py --multinode first"
        ) from None
    projected = project(
        payload,
        args.runners,
        args.gpu_samples_per_s,
        args.gpu_update_overhead_s,
        args.gpu_learners,
    )
    names = [key for key in projected[0] if key.endswith(" s")]
    header = ["runners", "batch", *names, "iteration s", "env steps/s", "bottleneck"]
    print("| " + " | ".join(header) + " |")
    print("| --- " * len(header) + "|")
    for row in projected:
        cells = " | ".join(f"{row[name]:.3f}" for name in names)
        print(
            f"| {row['env_runners']} | {row['batch']:,} | {cells} | {row['iteration_s']:.2f} "
            f"| {row['env_steps_per_s']:,.0f} | {row['bottleneck']} |"
        )


if __name__ == "__main__":
    main()
