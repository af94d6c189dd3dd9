"""Diffusion-QL for continuous actions: config and algorithm, Learner, RLModule (registered by
the generative family's package)."""

from rlscale.algorithms.generative.diffusion_ql.config import DiffusionQL, DiffusionQLConfig
from rlscale.algorithms.generative.diffusion_ql.learner import DiffusionQLLearner
from rlscale.algorithms.generative.diffusion_ql.module import DiffusionQLModule

__all__ = ["DiffusionQL", "DiffusionQLConfig", "DiffusionQLLearner", "DiffusionQLModule"]
