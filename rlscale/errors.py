"""Errors that rlscale shows to its users.

Every error a user can cause (a bad file, name, value, address or path) is an ``RlscaleError``
whose message says what was wrong and what to do. The CLI prints the message alone, with no
traceback, and exits non-zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RlscaleError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""


class SpecError(RlscaleError):
    """The experiment spec (YAML file or flags) is malformed or names something unknown."""


class UnknownAlgorithmError(SpecError):
    """No algorithm is registered under the given name."""


class UnknownEnvironmentError(SpecError):
    """No environment is known under the given name."""


class IncompatibleSpaceError(SpecError):
    """The algorithm cannot act in the environment's observation or action space."""


class RayConnectionError(RlscaleError):
    """The Ray cluster could not be reached or started."""


class OutputError(RlscaleError):
    """The output directory cannot be created or written."""


class CheckpointError(RlscaleError):
    """A checkpoint is missing, incomplete or unreadable."""


class EnvRunnersLostError(RlscaleError):
    """Every EnvRunner of an online run failed and none could be restarted."""


class TrainingDivergedError(RlscaleError):
    """A learner's loss became NaN or infinite: training stopped before saving that policy."""


def close_matches(name: str, candidates: Iterable[str], limit: int = 5) -> list[str]:
    """The candidates nearest to ``name``, best first (case-insensitive)."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=limit, cutoff=0.5)
    return [by_lower[m] for m in matches]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ' Did you mean: a, b?' suffix, or '' when nothing is close."""
    matches = close_matches(name, candidates)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


class DatasetError(RlscaleError):
    """A dataset is missing, unreadable, invalid, or does not fit the environment or algorithm."""


class PolicyError(RlscaleError):
    """An expert or behaviour policy is unknown, cannot be restored, or cannot act in a space."""
