"""Generative models shared by algorithms.

- ``flows``: conditional normalizing flows (RealNVP and neural spline coupling layers from
  zuko) over raw vectors, with stored input normalization, exact ``log_prob``, sampling, and
  ``fit_flow``, a maximum-likelihood training loop.
"""

from rlscale.modules.generative.flows import (
    FLOW_KINDS,
    ConditionalFlow,
    FlowFitResult,
    FlowFitSettings,
    FlowSettings,
    fit_flow,
)

__all__ = [
    "FLOW_KINDS",
    "ConditionalFlow",
    "FlowFitResult",
    "FlowFitSettings",
    "FlowSettings",
    "fit_flow",
]
