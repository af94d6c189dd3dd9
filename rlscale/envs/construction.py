"""Turning a failed environment build into a message the user can act on.

Both environment families (Gymnasium and PettingZoo) fail in the same few ways: an optional
dependency is missing, or ``env_config`` holds a keyword the environment does not take. The
helpers here name the pip package to install or the offending key.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rlscale.errors import RlscaleError, did_you_mean

_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '([^']+)'")


class EnvDependencyError(RlscaleError):
    """An environment needs an optional package that is not installed (or not usable here)."""

    def __init__(self, message: str, reason: str, install: str | None = None):
        super().__init__(message)
        self.reason = reason
        """What failed, in a few words (e.g. ``no module named 'Box2D'``)."""
        self.install = install
        """What to pass to ``pip install`` (e.g. ``gymnasium[box2d]``), when it is known."""

    @property
    def note(self) -> str:
        """A short line for environment listings."""
        if self.install:
            return f'needs: pip install "{self.install}"'
        return f"unavailable: {self.reason}"


def missing_dependency_error(
    name: str, install: str | None, cause: BaseException
) -> EnvDependencyError:
    """The error for environment ``name`` failing to import an optional dependency."""
    reason = _dependency_reason(cause)
    if install:
        message = (
            f"Environment {name!r} needs an optional dependency that is not installed "
            f'({reason}). Install it with: pip install "{install}"'
        )
    else:
        message = f"Environment {name!r} cannot be built in this installation: {reason}"
    return EnvDependencyError(message, reason, install)


def unexpected_config_key_error(
    name: str,
    env_config: Mapping[str, Any],
    cause: TypeError,
    accepted: list[str] | None,
) -> RlscaleError | None:
    """The error for a ``TypeError`` caused by an ``env_config`` key, or None if it was not.

    ``accepted`` lists the keys the environment is known to take, for suggestions.
    """
    match = _UNEXPECTED_KEYWORD.search(str(cause))
    if match is None or match.group(1) not in env_config:
        return None
    key = match.group(1)
    message = f"env_config key {key!r} is not accepted by environment {name!r}."
    if accepted:
        message += did_you_mean(key, accepted)
        message += f" Keys it takes: {', '.join(sorted(accepted))}."
    return RlscaleError(message)


def config_failure_error(
    name: str, env_config: Mapping[str, Any], cause: Exception
) -> RlscaleError:
    """The error for an environment that raised while being built with a user's env_config."""
    return RlscaleError(
        f"Environment {name!r} could not be built with env_config {dict(env_config)!r}: "
        f"{type(cause).__name__}: {cause}"
    )


def build_failure_error(
    name: str,
    env_config: Mapping[str, Any],
    cause: Exception,
    accepted: Callable[[], list[str] | None],
) -> RlscaleError | None:
    """The user-facing error for an environment that raised while being built, or None.

    None means the failure is not the user's env_config (the caller re-raises it as it is).
    ``accepted`` lists the keywords the environment takes; it is only called when needed.
    """
    if isinstance(cause, TypeError):
        error = unexpected_config_key_error(name, env_config, cause, accepted())
        if error is not None:
            return error
    return config_failure_error(name, env_config, cause) if env_config else None


def accepted_keywords(factory: Callable[..., Any] | None) -> list[str] | None:
    """Keyword arguments ``factory`` takes by name, or None when they cannot be read.

    For a class whose ``__init__`` passes ``**kwargs`` on to its base class (MuJoCo envs do),
    the base's keywords that have defaults count too.
    """
    if factory is None:
        return None
    if not isinstance(factory, type):
        parameters = _parameters(factory)
        return None if parameters is None else _keyword_names(parameters, with_default_only=False)
    names: list[str] = []
    own_init = True
    for cls in factory.__mro__:
        if "__init__" not in vars(cls) or cls is object:
            continue
        parameters = _parameters(vars(cls)["__init__"])
        if parameters is None:
            break
        names += _keyword_names(parameters, with_default_only=not own_init)
        own_init = False
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return sorted(set(names)) or None


def _parameters(function: Callable[..., Any]) -> list[inspect.Parameter] | None:
    try:
        return list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None


def _keyword_names(parameters: list[inspect.Parameter], with_default_only: bool) -> list[str]:
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        p.name
        for p in parameters
        if p.kind in keyword_kinds
        and p.name != "self"
        and not (with_default_only and p.default is inspect.Parameter.empty)
    ]


@contextlib.contextmanager
def muted_mujoco_warnings() -> Iterator[None]:
    """Drop MuJoCo's own warnings while building many environments in a row.

    Without a handler MuJoCo prints each warning (e.g. HalfCheetah's deprecated
    ``settotalmass``) from C and appends it to ``MUJOCO_LOG.TXT`` in the working directory; a
    listing should neither clutter its table nor leave files behind.
    """
    if importlib.util.find_spec("mujoco") is None:
        yield
        return
    import mujoco

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(_ignore_warning)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _ignore_warning(message: str) -> None:
    pass


def _dependency_reason(cause: BaseException) -> str:
    if isinstance(cause, ModuleNotFoundError) and cause.name:
        return f"no module named {cause.name!r}"
    return _first_line(str(cause))


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown reason"
    return line if len(line) <= 160 else line[:157] + "..."
