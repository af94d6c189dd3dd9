"""rlscale's dreamer against RLlib's DreamerV3 on Pendulum-v1 (vector observations).

    .venv/bin/python benchmarks/dreamer_pendulum.py --seeds 0 1 2 [--peer-seeds 0] \
        [--marks 20000 50000 100000] [--json benchmarks/results/dreamer_pendulum.json]

Both sides sample Pendulum-v1 in the driver (one env, no remote EnvRunners), on CPU, one side
at a time, never both at once. rlscale runs ``dreamer`` with its defaults (``--set KEY=JSON``
overrides one); RLlib runs ``DreamerV3`` with ``model_size="XS"`` on the torch framework at
the training ratio of RLlib's own Pendulum example (1024 replayed steps per env step; ``--peer-
training-ratio``), everything else at RLlib's defaults. Each run goes on to the last mark;
at each mark it records the mean return of the last 10 training episodes (both sides smooth
over the same number of episodes: RLlib's DreamerV3 default is 1) and the wall and CPU time
since the algorithm was built. ``--pixels`` gives rlscale's side 64x64 RGB frames instead of
the vector observation (the peer is not run on pixels).

``--peer-seeds`` chooses which seeds the peer runs (DreamerV3 is far slower; as many as time
allows) and ``--peer-max-wall`` stops each of its runs after so many seconds, keeping the marks
it reached. At ratio 1024 DreamerV3 takes one update of 16 x 64 replayed steps per env step,
seconds of CPU each here, so 20k env steps are about a day per seed; a lower ratio changes
nothing with one env, since RLlib's training step trains at least one batch per sample.
``--peer-envs N`` gives DreamerV3 N envs in the driver: a sample is then N env steps, so
RLlib trains one batch per N env steps and ``--peer-envs 16 --peer-training-ratio 64`` runs it
at rlscale's ratio of 64 replayed steps per env step. A smoke test:
``--marks 1100 --seeds 0 --peer-seeds 0 --set random_warmup_steps=200``.

``--peer-keep DIR`` lets DreamerV3's runs span sessions: each seed's run keeps itself in
``DIR/seedS`` (RLlib's checkpoint, the replay's own state, which RLlib's checkpoint leaves out,
and the marks and curve so far) every ``--peer-save-every`` env steps and when it stops; the
same call later continues from there, with the wall and CPU time of the earlier segments added.
A stop by Ctrl-C loses at most the steps since the last save. The checkpoint does not hold the
episodes in progress (they restart) or the random generators' states (they start afresh), so a
continued run is not bit-identical to one that never stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

ENV = "Pendulum-v1"
SMOOTHING_EPISODES = 10
PRINT_EVERY = 1_000
"""Env steps between progress lines (DreamerV3's iterations can be a single env step)."""
PEER_TRAINING_RATIO = 1024
"""RLlib's Pendulum example's training ratio (replayed steps per env step)."""
PEER_MODEL_SIZE = "XS"
"""DreamerV3's size here: its smallest, the one nearest rlscale's dreamer."""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def rlscale_algorithm(seed: int, overrides: dict, pixels: bool = False):
    from rlscale.algorithms.world_model.dreamer import DreamerConfig
    from rlscale.envs import register_with_rllib

    config = (
        DreamerConfig()
        .environment(register_with_rllib(ENV), env_config={"pixels": True} if pixels else {})
        .training(**overrides)
        .reporting(metrics_num_episodes_for_smoothing=SMOOTHING_EPISODES)
        .debugging(seed=seed)
    )
    return config.build_algo()


def peer_algorithm(seed: int, training_ratio: float, num_envs: int):
    from ray.rllib.algorithms.dreamerv3 import DreamerV3Config

    config = (
        DreamerV3Config()
        .framework("torch")
        .environment(ENV)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs)
        .training(model_size=PEER_MODEL_SIZE, training_ratio=training_ratio)
        .reporting(metrics_num_episodes_for_smoothing=SMOOTHING_EPISODES)
        .debugging(seed=seed)
    )
    return config.build_algo()


class KeptRun:
    """A run kept in a folder so that a later call continues it: RLlib's checkpoint of the
    algorithm, its replay's own state (RLlib's new-stack checkpoint leaves the replay out), and
    the progress (marks, curve, wall and CPU seconds, one entry per segment) in one
    ``checkpoint`` folder, replaced whole at each save so a stop mid-save keeps the last one."""

    def __init__(self, folder: Path, settings: dict, save_every: int):
        self.folder = folder
        self.settings = settings
        self.save_every = save_every
        self.saved_at = 0

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint"

    @property
    def replaced(self) -> Path:
        """Where a save moves the previous checkpoint until the new one is in place."""
        return self.folder / "checkpoint.replaced"

    def restore(self, algorithm) -> dict | None:
        """The progress of the earlier segments, with the algorithm and its replay restored;
        None if nothing is kept yet."""
        if self.replaced.exists() and not self.checkpoint.exists():
            self.replaced.rename(self.checkpoint)  # a save stopped between its two renames
        progress_file = self.checkpoint / "progress.json"
        if not progress_file.exists():
            return None
        progress = json.loads(progress_file.read_text())
        if progress["settings"] != self.settings:
            raise SystemExit(
                f"{self.folder} keeps a run with {progress['settings']}, not {self.settings}: "
                "give the settings it was started with, or another --peer-keep folder."
            )
        algorithm.restore_from_path(self.checkpoint)
        replay_state = pickle.loads((self.checkpoint / "replay.pkl").read_bytes())
        algorithm.replay_buffer.set_state(replay_state)
        self.saved_at = progress["curve"][-1][0]
        print(f"  continuing from {self.saved_at} env steps kept in {self.folder}", flush=True)
        return progress

    def due(self, env_steps: int) -> bool:
        return env_steps // self.save_every > self.saved_at // self.save_every

    def save(self, algorithm, progress: dict) -> None:
        writing = self.folder / "checkpoint.writing"
        shutil.rmtree(writing, ignore_errors=True)
        algorithm.save_to_path(writing)
        (writing / "replay.pkl").write_bytes(pickle.dumps(algorithm.replay_buffer.get_state()))
        (writing / "progress.json").write_text(json.dumps({"settings": self.settings, **progress}))
        shutil.rmtree(self.replaced, ignore_errors=True)
        if self.checkpoint.exists():
            self.checkpoint.rename(self.replaced)
        writing.rename(self.checkpoint)
        shutil.rmtree(self.replaced, ignore_errors=True)
        self.saved_at = progress["curve"][-1][0]


def run(
    build: Callable[[], object],
    marks: list[int],
    max_wall_s: float = math.inf,
    kept: KeptRun | None = None,
) -> dict:
    """Train until the last mark, or until ``max_wall_s`` seconds of this call have passed
    (marks not reached are left out); the smoothed return, times and gradient updates at the
    first iteration that reaches each mark, and every iteration's (env steps, return, wall
    seconds, updates, mean |pre-tanh action mean| or None). With ``kept``, the run continues
    from what it keeps and keeps itself as it goes; times then count every segment."""
    started = time.perf_counter()
    wall, cpu = started, cpu_seconds()
    algorithm = build()
    at_marks: dict[str, dict] = {}
    curve: list[list] = []
    segments: list[dict] = []

    def progress() -> dict:
        segments[-1].update(to_env_steps=curve[-1][0], wall_s=time.perf_counter() - started)
        return {
            "marks": at_marks,
            "curve": curve,
            "segments": segments,
            "wall_s": time.perf_counter() - wall,
            "cpu_s": cpu_seconds() - cpu,
        }

    try:
        earlier = kept.restore(algorithm) if kept else None
        if earlier:
            at_marks, curve, segments = earlier["marks"], earlier["curve"], earlier["segments"]
            wall -= earlier["wall_s"]  # elapsed times below count the earlier segments too
            cpu -= earlier["cpu_s"]
        segments.append({"from_env_steps": curve[-1][0] if curve else 0})
        latest_return = curve[-1][1] if curve else float("nan")
        pending = [m for m in sorted(marks) if str(m) not in at_marks]
        while pending and time.perf_counter() - started < max_wall_s:
            result = algorithm.train()
            runners = result["env_runners"]
            steps = int(runners["num_env_steps_sampled_lifetime"])
            reported = float(runners.get("episode_return_mean", float("nan")))
            # An iteration in which no episode ended reports none (DreamerV3's iterations can
            # be one env step): keep the latest.
            episode_return = reported if math.isfinite(reported) else latest_return
            latest_return = episode_return
            elapsed = time.perf_counter() - wall
            updates = int(result.get("num_grad_updates_lifetime", 0))
            # rlscale's actor reports how far its pre-tanh means sit (saturation); RLlib's not.
            learner = result.get("learners", {}).get("default_policy", {})
            pre_squash = learner.get("actor_pre_squash_mean_abs")
            if not curve or steps // PRINT_EVERY > curve[-1][0] // PRINT_EVERY:
                print(
                    f"  {steps:7d} steps  return {episode_return:8.1f}  {elapsed:6.0f}s", flush=True
                )
            curve.append([steps, episode_return, round(elapsed, 1), updates, pre_squash])
            while pending and steps >= pending[0]:
                at_marks[str(pending.pop(0))] = {
                    "env_steps": steps,
                    "return": episode_return,
                    "wall_s": elapsed,
                    "cpu_s": cpu_seconds() - cpu,
                    "updates": updates,
                }
            if kept and kept.due(steps):
                kept.save(algorithm, progress())
        if kept and curve and kept.saved_at != curve[-1][0]:
            kept.save(algorithm, progress())
    finally:
        algorithm.stop()
    if curve:
        progress()  # closes this segment's record
    return {"marks": at_marks, "curve": curve, "segments": segments}


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        overrides[key] = json.loads(value)
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--peer-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--marks", type=int, nargs="+", default=[20_000, 50_000, 100_000])
    parser.add_argument("--peer-training-ratio", type=float, default=PEER_TRAINING_RATIO)
    parser.add_argument(
        "--peer-envs",
        type=int,
        default=1,
        metavar="N",
        help="DreamerV3's envs in the driver; it trains one batch per sample of N env steps",
    )
    parser.add_argument(
        "--peer-max-wall",
        type=float,
        default=math.inf,
        metavar="SECONDS",
        help="stop the peer's run after this long; the marks it reached are kept",
    )
    parser.add_argument(
        "--peer-keep",
        type=Path,
        metavar="DIR",
        help="keep each peer run in DIR/seedS and continue it from there in a later call",
    )
    parser.add_argument(
        "--peer-save-every",
        type=int,
        default=1_000,
        metavar="ENV_STEPS",
        help="env steps between the kept peer run's saves (with --peer-keep)",
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=JSON", help="rlscale dreamer overrides"
    )
    parser.add_argument(
        "--pixels",
        action="store_true",
        help="rlscale's side observes 64x64 RGB frames (env_config.pixels) instead of vectors",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads for both sides (1: small networks on a shared CPU spend more "
        "time spinning than computing with more)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    if args.peer_envs < 1:
        parser.error(f"--peer-envs must be at least 1, got {args.peer_envs}")
    if args.peer_save_every < 1:
        parser.error(f"--peer-save-every must be at least 1, got {args.peer_save_every}")
    overrides = parse_overrides(args.set)

    import ray
    import torch

    from rlscale.platform.runtime import start_local_ray

    torch.set_num_threads(args.torch_threads)

    start_local_ray(num_cpus=2)  # bound to 127.0.0.1
    rows = []
    sides = [("rlscale dreamer", seed) for seed in args.seeds]
    sides += [("RLlib DreamerV3 XS", seed) for seed in args.peer_seeds]
    for side, seed in sides:
        print(f"{side}, seed {seed}:", flush=True)
        if side.startswith("rlscale"):
            outcome = run(
                lambda seed=seed: rlscale_algorithm(seed, overrides, args.pixels), args.marks
            )
        else:
            kept = None
            if args.peer_keep:
                settings = {
                    "seed": seed,
                    "model_size": PEER_MODEL_SIZE,
                    "training_ratio": args.peer_training_ratio,
                    "num_envs": args.peer_envs,
                }
                kept = KeptRun(args.peer_keep / f"seed{seed}", settings, args.peer_save_every)
            outcome = run(
                lambda seed=seed: peer_algorithm(seed, args.peer_training_ratio, args.peer_envs),
                args.marks,
                args.peer_max_wall,
                kept,
            )
        rows.append({"side": side, "seed": seed, **outcome})
    print(f"\n{'side':20s} {'seed':>4s} " + " ".join(f"{m:>20d}" for m in args.marks))
    for row in rows:
        reached = [row["marks"].get(str(m)) for m in args.marks]
        cells = [
            f"{at['return']:8.1f} ({at['wall_s']:6.0f}s)" if at else "not reached" for at in reached
        ]
        print(f"{row['side']:20s} {row['seed']:4d} " + " ".join(f"{c:>20s}" for c in cells))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "env": ENV,
            "marks": args.marks,
            "rlscale_overrides": overrides,
            "rlscale_pixels": args.pixels,
            "peer": {
                "model_size": PEER_MODEL_SIZE,
                "training_ratio": args.peer_training_ratio,
                "num_envs": args.peer_envs,
                "max_wall_s": args.peer_max_wall if math.isfinite(args.peer_max_wall) else None,
            },
            "smoothing_episodes": SMOOTHING_EPISODES,
            "torch_threads": args.torch_threads,
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"-> {args.json}")
    ray.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
