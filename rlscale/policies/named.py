"""A policy given by name: a scripted controller's, or a checkpoint folder's path."""

from __future__ import annotations

from rlscale.policies.base import PolicyFactory
from rlscale.policies.checkpoint import CheckpointPolicy
from rlscale.policies.scripted import SCRIPTED


def named_policy(name: str) -> PolicyFactory:
    """The scripted policy called ``name``, else the checkpoint in folder ``name``.

    For processes that build a policy the platform has already checked (an EnvRunner building
    DAgger's expert): a folder is not read here until the policy is built.
    """
    if name in SCRIPTED:
        return SCRIPTED[name]
    return CheckpointPolicy(name)
