"""Algorithm families, one sub-package each, and the registry that names them."""

from rlscale.algorithms.registry import (
    AlgorithmEntry,
    Input,
    algorithms_taking,
    apply_hyperparameters,
    check_spaces,
    get_algorithm,
    list_algorithms,
    register_algorithm,
)

__all__ = [
    "AlgorithmEntry",
    "Input",
    "algorithms_taking",
    "apply_hyperparameters",
    "check_spaces",
    "get_algorithm",
    "list_algorithms",
    "register_algorithm",
]
