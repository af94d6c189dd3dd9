"""Action-sampling latency of a diffusion policy on one CPU core: DDIM with few steps against
DDPM's full chain.

    .venv/bin/python benchmarks/diffusion_latency.py [--ddim-steps 5 10 20] [--repeats 200]
        [--observation-size 17] [--action-size 6] [--json OUT]

The model is ``diffusion_bc``'s default ``ConditionalDiffusion`` (``T`` = 100 noise levels,
the cosine schedule, a [256, 256, 256] Mish noise predictor), untrained: the time per sample
does not depend on the weights. Observation and action sizes default to HalfCheetah-v5's
(17 and 6; Hopper-v5's 11 and 3 are cheaper). One intra-op thread
(``torch.set_num_threads(1)``), as on an EnvRunner with one CPU. For each sampler and batch
size (1: one EnvRunner acting; 64: a batch of envs) it times ``--repeats`` calls after 10
warm-up calls and reports the median and p95 in ms per call, and per action. The goal is at
most 5 ms per action with 10 DDIM steps (acting at 100 Hz). Prints a table; ``--json`` also
writes the rows.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rlscale.modules.generative import ConditionalDiffusion, DiffusionSettings

BATCH_SIZES = (1, 64)
WARMUP_CALLS = 10
GOAL_MS_PER_ACTION = 5.0


def time_sampler(
    model: ConditionalDiffusion, batch: int, repeats: int, sampler: str, ddim_steps: int | None
) -> list[float]:
    condition = torch.randn(batch, model.condition_size)
    kwargs = {"ddim_steps": ddim_steps} if sampler == "ddim" else {}
    times = []
    for call in range(WARMUP_CALLS + repeats):
        started = time.perf_counter()
        model.sample(condition, sampler=sampler, **kwargs)
        if call >= WARMUP_CALLS:
            times.append((time.perf_counter() - started) * 1000.0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddim-steps", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--observation-size", type=int, default=17)
    parser.add_argument("--action-size", type=int, default=6)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ConditionalDiffusion(args.action_size, args.observation_size, DiffusionSettings())
    model.eval()
    samplers = [("ddim", steps) for steps in args.ddim_steps] + [("ddpm", None)]
    rows = []
    for sampler, steps in samplers:
        for batch in BATCH_SIZES:
            times = time_sampler(model, batch, args.repeats, sampler, steps)
            median, p95 = float(np.median(times)), float(np.percentile(times, 95))
            rows.append(
                {
                    "sampler": sampler,
                    "denoising_steps": steps or model.steps,
                    "batch": batch,
                    "median_ms": median,
                    "p95_ms": p95,
                    "median_ms_per_action": median / batch,
                }
            )
    print("| sampler | denoising steps | batch | median ms | p95 ms | ms per action |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['sampler']} | {row['denoising_steps']} | {row['batch']} | "
            f"{row['median_ms']:.2f} | {row['p95_ms']:.2f} | {row['median_ms_per_action']:.3f} |"
        )
    single_ddim_10 = next(
        (
            r
            for r in rows
            if r["sampler"] == "ddim" and r["denoising_steps"] == 10 and r["batch"] == 1
        ),
        None,
    )
    if single_ddim_10 is not None:
        verdict = "met" if single_ddim_10["median_ms"] <= GOAL_MS_PER_ACTION else "not met"
        print(f"goal (10 DDIM steps, one action <= {GOAL_MS_PER_ACTION} ms): {verdict}")
    if args.json:
        payload = {
            "benchmark": "diffusion_latency",
            "settings": vars(args) | {"json": str(args.json)},
            "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
            "rows": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
