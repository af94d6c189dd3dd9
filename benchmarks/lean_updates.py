"""PPO's Learner update time per iteration: the lean minibatch loop against RLlib's own.

    .venv/bin/python benchmarks/lean_updates.py [--env CartPole-v1] [--iterations 12] [--pairs 2]

Builds rlscale's PPO (defaults, seed 0) with ``lean_updates`` true and false, alternating, in
one process on an embedded Ray, trains ``--iterations`` iterations each, and times every call
of the Learner's ``update`` (the minibatch loop: RLlib's learner connector, then the epochs).
Prints one JSON line per run: the median update seconds per iteration and the run's wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def run(env: str, lean: bool, iterations: int) -> dict:
    import rlscale
    from rlscale.platform.experiment import prepare

    spec = rlscale.ExperimentSpec(
        algorithm="ppo", env=env, seed=0, hyperparameters={"lean_updates": lean}
    )
    algo = prepare(spec).config.build_algo()
    learner = algo.learner_group._learner  # num_learners 0: the Learner in this process
    if (learner.lean_problem is None) != lean:
        raise SystemExit(f"lean_updates={lean} but the Learner says: {learner.lean_problem}")
    update_seconds: list[float] = []
    update = learner.update

    def timed_update(*args, **kwargs):
        started = time.perf_counter()
        result = update(*args, **kwargs)
        update_seconds.append(time.perf_counter() - started)
        return result

    learner.update = timed_update
    started = time.perf_counter()
    try:
        for _ in range(iterations):
            algo.train()
    finally:
        algo.stop()
    return {
        "lean_updates": lean,
        "update_s_median": statistics.median(update_seconds),
        "wall_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()

    from rlscale.platform.runtime import ray_session

    with ray_session():
        for _ in range(args.pairs):
            for lean in (True, False):
                print(json.dumps(run(args.env, lean, args.iterations)), flush=True)


if __name__ == "__main__":
    main()
