"""jacobian_np: exact, fast derivatives of feed-forward networks with respect to their inputs.

Pure NumPy.  See ``docs/conventions.md`` for shapes and layouts.
"""

from .activations import (
    ELU,
    GELU,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    SiLU,
    Sigmoid,
    Sin,
    Softmax,
    Softplus,
    Tanh,
)
from .affine import Affine
from .errors import ModelFileError, ZeroCurvatureWarning
from .export import to_c, to_onnx, to_torch
from .importers import from_onnx, from_sklearn, from_torch
from .io import load, save
from .composite import Parallel, Residual
from .normalization import LayerNorm
from .checks import CheckResult, Comparison, check_layer, check_network, check_param_grads, numerical_jacobian
from .layer import Elementwise, Layer
from .network import Network, get_memory_budget, set_memory_budget

from . import losses, optimize

__version__ = "0.1.0"

__all__ = [
    "Affine",
    "CheckResult",
    "Comparison",
    "ELU",
    "Elementwise",
    "GELU",
    "Identity",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "LogSoftmax",
    "ModelFileError",
    "Network",
    "Parallel",
    "ReLU",
    "Residual",
    "SiLU",
    "Sigmoid",
    "Sin",
    "Softmax",
    "Softplus",
    "Tanh",
    "ZeroCurvatureWarning",
    "check_layer",
    "check_network",
    "check_param_grads",
    "from_onnx",
    "from_sklearn",
    "from_torch",
    "get_memory_budget",
    "load",
    "numerical_jacobian",
    "save",
    "set_memory_budget",
    "to_c",
    "to_onnx",
    "to_torch",
]
