"""jacobian_np: exact, fast derivatives of feed-forward networks with respect to their inputs.

Pure NumPy.  See ``docs/conventions.md`` for shapes and layouts.
"""

from .activations import ReLU, Sigmoid, Softmax, Tanh
from .affine import Affine
from .checks import CheckResult, Comparison, check_layer, check_network, numerical_jacobian
from .layer import Elementwise, Layer
from .network import Network, get_memory_budget, set_memory_budget

__version__ = "0.1.0"

__all__ = [
    "Affine",
    "CheckResult",
    "Comparison",
    "Elementwise",
    "Layer",
    "Network",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "check_layer",
    "check_network",
    "get_memory_budget",
    "numerical_jacobian",
    "set_memory_budget",
]
