"""Image observations: any Gymnasium env that renders ``rgb_array`` frames, seen through its
pixels instead of its state.

Asked for with the reserved ``env_config`` key :data:`PIXELS_KEY`::

    rlscale train latent_mpc --env Pendulum-v1 --env-config '{"pixels": {"size": 64}}'

(``"pixels": true`` for the default size, or a number). The env is built with
``render_mode="rgb_array"``; Gymnasium's ``AddRenderObservation(render_only=True)`` makes the
rendered frame the observation, and :class:`ResizedFrames` scales it to ``size x size`` RGB
(``uint8``, shape ``(size, size, 3)``), area-averaged by Pillow (Gymnasium's own
``ResizeObservation`` needs OpenCV, which rlscale does not install). MuJoCo envs render at that
size directly (their ``width`` and ``height`` keywords), so nothing is resized.

Rendering runs on the CPU as the video path does: classic-control envs draw with pygame into
an off-screen surface; MuJoCo, without a display, uses OSMesa (``MUJOCO_GL=osmesa``; set
``MUJOCO_GL=egl`` yourself for a GPU). An env that cannot render ``rgb_array`` frames is refused
with an ``RlscaleError`` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rlscale.errors import RlscaleError

PIXELS_KEY = "pixels"
"""Reserved ``env_config`` key: observe the env's rendered frames (module docstring)."""
DEFAULT_SIZE = 64
"""Frames are ``DEFAULT_SIZE x DEFAULT_SIZE`` unless the key gives a size (PlaNet's 64)."""
SOFTWARE_GL = "osmesa"
"""MuJoCo's CPU renderer when there is no display (as ``rlscale evaluate --video`` uses)."""


@dataclass(frozen=True)
class PixelSettings:
    size: int = DEFAULT_SIZE
    """Height and width of the frames, in pixels."""


def pixel_settings(value: Any) -> PixelSettings:
    """What ``env_config["pixels"]`` holds: ``true``, a size, or ``{"size": n}``."""
    if value is True:
        return PixelSettings()
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"size": value}
    if isinstance(value, Mapping) and set(value) <= {"size"}:
        size = value.get("size", DEFAULT_SIZE)
        if isinstance(size, int) and not isinstance(size, bool) and 8 <= size <= 512:
            return PixelSettings(size)
    raise RlscaleError(
        f"env_config {PIXELS_KEY!r} must be true, a frame size from 8 to 512, or "
        f'{{"size": n}}; got {value!r}. Example: {{"{PIXELS_KEY}": {{"size": 64}}}}'
    )


def make_pixel_env(
    name: str,
    env_config: Mapping[str, Any],
    settings: PixelSettings,
    family: str,
    build: Callable[[str, Mapping[str, Any]], gym.Env],
) -> gym.Env:
    """``build(name, env_config)`` rendering ``rgb_array`` frames, wrapped to observe them."""
    config = dict(env_config)
    if config.get("render_mode", "rgb_array") != "rgb_array":
        raise RlscaleError(
            f"env_config sets render_mode={config['render_mode']!r}, and {PIXELS_KEY!r} needs "
            f"'rgb_array' frames; drop render_mode from env_config"
        )
    config["render_mode"] = "rgb_array"
    _check_renders(name, _declared_render_modes(name.rpartition(":")[2]))
    if family == "mujoco":
        _use_software_gl_without_display()
        config.setdefault("width", settings.size)
        config.setdefault("height", settings.size)
    else:
        # pygame (classic control) greets on import and opens an audio device; headless, the
        # latter spams ALSA errors. Frames are drawn off-screen: no video device is needed
        # (without one SDL complains of XDG_RUNTIME_DIR on every env built).
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "hide")
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        if not os.environ.get("DISPLAY"):
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = build(name, config)
    try:
        _check_renders(name, env.metadata.get("render_modes"))
    except RlscaleError:
        env.close()
        raise
    try:
        from gymnasium.wrappers import AddRenderObservation

        env = AddRenderObservation(env, render_only=True)  # renders once, after a reset
    except Exception as exc:
        env.close()
        raise _render_failure(name, family, exc) from None
    return ResizedFrames(env, settings.size)


def _declared_render_modes(env_id: str) -> list[str] | None:
    """The render modes the env's class declares, read without building it (None: unknown)."""
    entry_point = gym.spec(env_id).entry_point
    try:
        creator = (
            gym.envs.registration.load_env_creator(entry_point)
            if isinstance(entry_point, str)
            else entry_point
        )
    except Exception:  # the build itself reports a missing dependency
        return None
    metadata = getattr(creator, "metadata", None)
    return None if not isinstance(metadata, Mapping) else metadata.get("render_modes")


def _check_renders(name: str, render_modes: Any) -> None:
    if render_modes is None or "rgb_array" in render_modes:
        return
    raise RlscaleError(
        f"Environment {name!r} cannot render rgb_array frames (its render modes: "
        f"{list(render_modes) or 'none'}), so it has no pixel observations; drop "
        f"{PIXELS_KEY!r} from env_config, or use an env that renders, such as Pendulum-v1 or "
        f"a MuJoCo env"
    )


def _use_software_gl_without_display() -> None:
    """MuJoCo picks its GL backend when it first renders: headless, OSMesa (CPU)."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", SOFTWARE_GL)
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def _render_failure(name: str, family: str, cause: Exception) -> RlscaleError:
    reason = f"{type(cause).__name__}: {cause}".strip().splitlines()[0]
    if family == "mujoco":
        hint = (
            "MuJoCo renders off-screen with MUJOCO_GL=osmesa (needs the libosmesa6 system "
            "package) or MUJOCO_GL=egl (a GPU)"
        )
    else:
        hint = 'classic-control envs render with pygame: pip install "gymnasium[classic-control]"'
    return RlscaleError(f"Environment {name!r} failed to render a frame ({reason}); {hint}")


class ResizedFrames(gym.ObservationWrapper):
    """RGB frames ``(H, W, 3)`` uint8 -> ``(size, size, 3)`` uint8, area-averaged."""

    def __init__(self, env: gym.Env, size: int):
        super().__init__(env)
        self.size = size
        shape = env.observation_space.shape
        if len(shape) != 3 or shape[2] != 3:
            raise RlscaleError(f"rendered frames must be RGB (H, W, 3), got shape {shape}")
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame, dtype=np.uint8)
        if frame.shape[:2] == (self.size, self.size):
            return frame
        from PIL import Image

        resized = Image.fromarray(frame).resize((self.size, self.size), Image.Resampling.BOX)
        return np.asarray(resized, dtype=np.uint8)
