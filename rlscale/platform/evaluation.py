"""``rlscale.evaluate(checkpoint)``: restore a checkpoint and run greedy episodes.

The algorithm is rebuilt from the spec saved in the checkpoint, with one local EnvRunner, and
its weights and connector states are restored; episodes run through RLlib's own EnvRunner with
``explore=False`` (the module's ``forward_inference``), so connectors apply as in training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlscale.envs import RECORD_VIDEO_KEY, make_env
from rlscale.errors import CheckpointError, OutputError, SpecError
from rlscale.platform.experiment import PreparedExperiment, prepare
from rlscale.platform.outputs import PERIODIC_CHECKPOINTS, read_checkpoint, restore_or_explain
from rlscale.platform.ray_output import RAY_LOG, RayOutput
from rlscale.platform.runtime import check_address, ray_session
from rlscale.platform.spec import MAX_SEED

SOFTWARE_GL = "osmesa"
"""MuJoCo's CPU renderer; needs Debian's libosmesa6 (see the README)."""


@dataclass
class EvaluationResult:
    checkpoint: Path
    returns: list[float]
    lengths: list[int]
    video_dir: Path | None = None
    videos: list[Path] = field(default_factory=list)
    policy_text: str | None = None
    """The algorithm's picture of the greedy policy (arrows on a grid world), if it draws one."""

    @property
    def episodes(self) -> int:
        return len(self.returns)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    def to_dict(self) -> dict:
        return {
            "checkpoint": str(self.checkpoint),
            "episodes": self.episodes,
            "mean_return": self.mean_return,
            "std_return": self.std_return,
            "min_return": float(np.min(self.returns)),
            "max_return": float(np.max(self.returns)),
            "mean_length": float(np.mean(self.lengths)),
            "returns": self.returns,
            "videos": [str(v) for v in self.videos],
            "policy": self.policy_text,
        }


def evaluate(
    checkpoint: str | Path,
    episodes: int = 10,
    video_dir: str | Path | None = None,
    address: str | None = None,
    seed: int | None = None,
    verbose: bool = False,
) -> EvaluationResult:
    """Greedy returns of the policy in ``checkpoint`` over ``episodes`` episodes.

    Ray's own log lines and warnings are appended to ``ray.log`` in the checkpoint's run folder
    (see :func:`evaluation_log`); ``verbose`` shows them on the console too.
    """
    check_address(address)  # before anything is written
    if episodes < 1:
        raise CheckpointError(f"--episodes must be at least 1, got {episodes}.")
    info = read_checkpoint(checkpoint)
    spec = info.spec.model_copy(deep=True)
    spec.resources.num_env_runners = 0
    spec.resources.num_envs_per_env_runner = 1
    spec.resources.num_learners = 0
    spec.resources.gpus_per_learner = 0
    if seed is not None:
        _check_seed(seed)
        spec.seed = seed
    video_path = _prepare_video_dir(video_dir) if video_dir is not None else None
    if video_path is not None:
        spec.env_config[RECORD_VIDEO_KEY] = str(video_path)
    # Offline algorithms are rebuilt without their dataset: evaluation needs only the env.
    prepared = prepare(spec, attach_dataset=False)
    info.check_algorithm_class(prepared.config.algo_class)
    check_saved_state(info.path, has_env_runner=not prepared.offline_without_evaluation)
    if video_path is not None:  # made only once the checkpoint and its spec are known good
        _make_video_dir(video_path)
    title = f"rlscale evaluate {info.path}"
    with (
        RayOutput(evaluation_log(info.path), console=verbose, title=title) as ray_output,
        ray_session(address),
    ):
        ray_output.capture_worker_output()
        algo = prepared.config.build_algo()
        try:
            restore_or_explain(algo, info)
            sampled = algo.env_runner.sample(num_episodes=episodes, explore=False)
            policy_text = _describe_policy(prepared, algo)
        finally:
            algo.stop()
    finished = [episode for episode in sampled if episode.is_done][:episodes]
    return EvaluationResult(
        checkpoint=info.path,
        returns=[float(episode.get_return()) for episode in finished],
        lengths=[len(episode) for episode in finished],
        video_dir=video_path,
        videos=sorted(video_path.glob("*.mp4")) if video_path else [],
        policy_text=policy_text,
    )


SAVED_STATE = ("algorithm_state.pkl", "learner_group")
"""What every algorithm's checkpoint holds beside an EnvRunner's state (see below)."""
ENV_RUNNER_STATES = ("env_runner", "eval_env_runner", "env_to_module_connector")
"""An online run saves its local EnvRunner (or, without one, its connectors), an offline one
its evaluation EnvRunner; their connector states (observation filters) are part of the
policy."""


def check_saved_state(checkpoint: Path, has_env_runner: bool = True) -> None:
    """Refuse, before Ray starts, a checkpoint missing the state RLlib restores from: RLlib
    would skip a missing EnvRunner folder silently and act without its observation filters.
    ``has_env_runner=False``: the run had none to save
    (``PreparedExperiment.offline_without_evaluation``)."""
    missing = [name for name in SAVED_STATE if not (checkpoint / name).exists()]
    if has_env_runner and not any((checkpoint / name).is_dir() for name in ENV_RUNNER_STATES):
        missing.append(f"EnvRunner state ({', '.join(ENV_RUNNER_STATES)})")
    if missing:
        raise CheckpointError(
            f"checkpoint {checkpoint} is incomplete: it has no {', '.join(missing)}. Use another "
            "of the run's checkpoints (checkpoints/iter_*) or the folder `rlscale train` wrote, "
            "unedited."
        )


def evaluation_log(checkpoint: Path) -> Path | None:
    """``ray.log`` of the run the checkpoint belongs to, or None when that folder is read-only.

    The run folder is the checkpoint's parent (``checkpoint_final``, a Tune trial's
    ``checkpoint_*``) or, for ``checkpoints/iter_*``, the folder above. A read-only run
    folder (a shared checkpoint) leaves Ray's output on the console, as ``--verbose`` does.
    """
    run_dir = checkpoint.parent
    if run_dir.name == PERIODIC_CHECKPOINTS:
        run_dir = run_dir.parent
    log = run_dir / RAY_LOG
    return log if os.access(log if log.exists() else run_dir, os.W_OK) else None


def _describe_policy(prepared: PreparedExperiment, algo) -> str | None:
    """The algorithm's own text picture of its greedy policy, when its registry entry has one."""
    describe = prepared.algorithm.describe_policy
    if describe is None or prepared.env.is_multi_agent:
        return None
    env_config = {k: v for k, v in prepared.spec.env_config.items() if k != RECORD_VIDEO_KEY}
    env = make_env(prepared.spec.env, env_config)
    try:
        return describe(algo.get_module(), env)
    finally:
        env.close()


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise SpecError(f"--seed must be between 0 and {MAX_SEED}, got {seed}.")


def _prepare_video_dir(video_dir: str | Path) -> Path:
    """The video folder's path; it is made by :func:`_make_video_dir` after the checks."""
    path = Path(video_dir).expanduser().resolve()
    # MuJoCo picks its GL backend at import; without a display, render in software.
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", SOFTWARE_GL)
        os.environ.setdefault("PYOPENGL_PLATFORM", SOFTWARE_GL)
    return path


def _make_video_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the video folder {path}: {exc.strerror or exc}. Pass a writable "
            "folder to --video."
        ) from None
