"""rlscale: distributed reinforcement learning and offline RL on Ray RLlib.

The Python API is the real interface; the ``rlscale`` command only wraps it::

    import rlscale
    spec = rlscale.ExperimentSpec(algorithm="ppo", env="CartPole-v1", stop={"reward": 450})
    result = rlscale.train(spec)
    rlscale.evaluate(result.checkpoint, episodes=10)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ExperimentSpec",
    "collect_dataset",
    "combine_datasets",
    "dataset_info",
    "download_dataset",
    "evaluate",
    "list_datasets",
    "load_spec",
    "resume",
    "train",
    "tune",
    "validate_dataset",
    "__version__",
]

if TYPE_CHECKING:
    from rlscale.platform.datasets_api import (
        collect_dataset,
        combine_datasets,
        dataset_info,
        download_dataset,
        list_datasets,
        validate_dataset,
    )
    from rlscale.platform.evaluation import evaluate
    from rlscale.platform.runner import resume, train
    from rlscale.platform.spec import ExperimentSpec, load_spec
    from rlscale.platform.tuning.run import tune

# Heavy modules (Ray, torch) load on first use, so `import rlscale` and `rlscale --help` stay fast.
_LAZY = {
    "ExperimentSpec": "rlscale.platform.spec",
    "load_spec": "rlscale.platform.spec",
    "train": "rlscale.platform.runner",
    "resume": "rlscale.platform.runner",
    "evaluate": "rlscale.platform.evaluation",
    "tune": "rlscale.platform.tuning.run",
    "list_datasets": "rlscale.platform.datasets_api",
    "dataset_info": "rlscale.platform.datasets_api",
    "validate_dataset": "rlscale.platform.datasets_api",
    "combine_datasets": "rlscale.platform.datasets_api",
    "collect_dataset": "rlscale.platform.datasets_api",
    "download_dataset": "rlscale.platform.datasets_api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlscale' has no attribute {name!r}")
