"""Gymnasium environments: registered ids, their families, building them, recording video.

Names are Gymnasium ids exactly as registered (``CartPole-v1``, ``Hopper-v5``). An id from a
third-party package can be written ``module:Id`` (e.g. ``ale_py:ALE/Pong-v5``): the module is
imported first, which registers its ids, as ``gymnasium.make`` does.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from rlscale.envs.construction import (
    accepted_keywords,
    build_failure_error,
    missing_dependency_error,
)
from rlscale.envs.info import GYMNASIUM, RECORD_VIDEO_KEY, EnvInfo
from rlscale.envs.pixels import PIXELS_KEY, make_pixel_env, pixel_settings
from rlscale.errors import RlscaleError

INSTALL_BY_FAMILY = {
    "box2d": "gymnasium[box2d]",
    "mujoco": "gymnasium[mujoco]",
    "phys2d": "gymnasium[jax]",
    "tabular": "gymnasium[jax]",
}
"""The pip requirement that brings each Gymnasium family's optional dependencies."""

LEGACY_FAMILY = "legacy"
"""Ids Gymnasium keeps only to explain where they went (MuJoCo v2/v3, the gym v21/v26 shims)."""

VIDEO_NAME_PREFIX = "eval"

_MAKE_KEYWORDS = ["max_episode_steps", "disable_env_checker", "render_mode"]
"""Keywords ``gymnasium.make`` takes (or forwards) for every environment."""


def registered_ids() -> list[str]:
    """Every id in Gymnasium's registry, in registration order."""
    return list(gym.registry)


def is_registered(name: str) -> bool:
    """Whether ``name`` (optionally ``module:Id``) is a registered Gymnasium id."""
    module, _, env_id = name.rpartition(":")
    if module:
        _import_registering_module(name, module)
    return env_id in gym.registry


def family_of(env_id: str) -> str:
    """The family of a registered id: ``classic_control``, ``mujoco``, ... or its package."""
    entry_point = gym.registry[env_id].entry_point
    if isinstance(entry_point, str):
        module = entry_point.partition(":")[0]
    else:
        module = getattr(entry_point, "__module__", "") or ""
    parts = module.split(".")
    if parts[:2] == ["gymnasium", "envs"]:
        # Plain functions in `gymnasium.envs` itself are stubs that raise "moved elsewhere".
        return parts[2] if len(parts) > 2 else LEGACY_FAMILY
    return parts[0] or "other"


def resolve(name: str, env_config: Mapping[str, Any]) -> EnvInfo:
    """Build ``name`` once, read its spaces, close it."""
    env = build(name, env_config)
    try:
        return EnvInfo(
            name=name,
            kind=GYMNASIUM,
            observation_space=env.observation_space,
            action_space=env.action_space,
            family=family_of(name.rpartition(":")[2]),
        )
    finally:
        env.close()


def make(name: str, env_config: Mapping[str, Any]) -> gym.Env:
    """Build ``name``; with :data:`RECORD_VIDEO_KEY` set, record every episode into that folder."""
    config = dict(env_config)
    video_dir = config.pop(RECORD_VIDEO_KEY, None)
    if video_dir is None:
        return build(name, config)
    config["render_mode"] = "rgb_array"
    return record_every_episode(build(name, config), str(video_dir), name)


def build(name: str, env_config: Mapping[str, Any]) -> gym.Env:
    """``gymnasium.make(name, **env_config)``, with failures turned into ``RlscaleError``s;
    with :data:`~rlscale.envs.pixels.PIXELS_KEY` in ``env_config``, observing rendered frames."""
    config = dict(env_config)
    if PIXELS_KEY in config:
        settings = pixel_settings(config.pop(PIXELS_KEY))
        family = family_of(name.rpartition(":")[2])
        return make_pixel_env(name, config, settings, family, _build)
    return _build(name, config)


def _build(name: str, env_config: Mapping[str, Any]) -> gym.Env:
    env_id = name.rpartition(":")[2]
    family = family_of(env_id)
    try:
        return gym.make(name, **env_config)
    except (gym.error.DependencyNotInstalled, ImportError) as exc:
        raise missing_dependency_error(name, _install_hint(family, exc), exc) from exc
    except Exception as exc:
        error = build_failure_error(name, env_config, exc, lambda: _accepted_keywords(env_id))
        if error is None:
            raise
        raise error from exc


def record_every_episode(env: gym.Env, video_dir: str, name: str) -> gym.Env:
    """Wrap ``env`` in ``RecordVideo`` writing every episode to ``video_dir`` as ``eval-*.mp4``."""
    from gymnasium.wrappers import RecordVideo

    # pygame (which renders the classic-control envs) greets on import and opens an audio
    # device; headless, the latter spams ALSA errors.
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "hide")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    try:
        with warnings.catch_warnings():
            # The caller usually creates the folder first; RecordVideo warns whenever it exists.
            warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
            return RecordVideo(
                env,
                video_folder=video_dir,
                episode_trigger=_every_episode,
                name_prefix=VIDEO_NAME_PREFIX,
            )
    except gym.error.DependencyNotInstalled as exc:
        env.close()
        raise RlscaleError(
            f"Recording video of {name!r} needs moviepy, which is not installed. "
            'Install it with: pip install "moviepy"'
        ) from exc


def _every_episode(episode_id: int) -> bool:
    return True


def _install_hint(family: str, cause: BaseException) -> str | None:
    missing_module = isinstance(cause, (ModuleNotFoundError, gym.error.DependencyNotInstalled))
    return INSTALL_BY_FAMILY.get(family) if missing_module else None


def _accepted_keywords(env_id: str) -> list[str] | None:
    entry_point = gym.registry[env_id].entry_point
    try:
        factory = (
            gym.envs.registration.load_env_creator(entry_point)
            if isinstance(entry_point, str)
            else entry_point
        )
    except Exception:
        return None
    accepted = accepted_keywords(factory)
    return None if accepted is None else sorted(set(accepted) | set(_MAKE_KEYWORDS) | {PIXELS_KEY})


def _import_registering_module(name: str, module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise missing_dependency_error(name, None, exc) from exc
