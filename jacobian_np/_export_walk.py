"""The recursive walk over a network's layers that every exporter shares.

An exporter subclasses :class:`LayerWalk` and supplies one method per built-in
layer kind; :meth:`LayerWalk.emit` dispatches on the layer's *exact* type, so a
user-defined layer, or a subclass of a built-in one (which may override its
rules), is refused with an error naming it and where it sits.  Composite layers
(``Network``, ``Residual``, ``Parallel``) call :meth:`emit` on their parts.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Optional, TypeVar

import numpy as np

from ._typing import Array
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
from .composite import Parallel, Residual
from .layer import Layer
from .network import Network
from .normalization import LayerNorm

Value = TypeVar("Value")

#: Elementwise activations, by exact type, with the name of their exporter method.
ACTIVATIONS: dict[type, str] = {
    ReLU: "relu",
    Sigmoid: "sigmoid",
    Tanh: "tanh",
    Identity: "identity",
    Softplus: "softplus",
    LeakyReLU: "leaky_relu",
    ELU: "elu",
    GELU: "gelu",
    SiLU: "silu",
    Sin: "sin",
}


def as_network(net: Any, owner: str) -> Network:
    """``net`` as a :class:`Network` with known widths, or raise naming what is wrong."""
    if isinstance(net, Network):
        network = net
    elif isinstance(net, Layer):
        network = Network([net])
    else:
        raise TypeError(f"{owner} expects a jacobian_np Network (or Layer); got {type(net).__name__}.")
    if network.d_in is None or network.d_out is None:
        raise ValueError(
            f"{owner}: the network has no fixed input width (it has no layer that fixes it, such as "
            "Affine), so the exported model's shapes are unknown; put an Affine layer in it."
        )
    return network


def network_dtype(network: Network) -> np.dtype:
    """float32 when every parameter is float32, else float64 (also for a network without any)."""
    dtypes = {np.dtype(p.dtype) for p in network.params}
    return np.dtype(np.float32) if dtypes == {np.dtype(np.float32)} else np.dtype(np.float64)


def describe(path: str, layer: Any) -> str:
    return f"{path} ({type(layer).__name__})"


class LayerWalk(Generic[Value]):
    """Dispatch each layer, by exact type, to the exporter's method for it.

    Subclasses define ``affine``, ``softmax``, ``log_softmax``, one method per name
    in :data:`ACTIVATIONS` (taking ``(layer, value, path)``), and for the composite
    layers ``residual``, ``parallel`` and ``layer_norm``.  ``network`` has a
    default: the layers in order.
    """

    owner = "export"

    def emit(self, layer: Layer, value: Value, path: str) -> Value:
        handler = self._handler(layer, path)
        return handler(layer, value, path)

    def network(self, network: Network, value: Value, path: str) -> Value:
        current = value
        for index, layer in enumerate(network.layers):
            result = self.emit(layer, current, f"{path} > layer {index}" if path else f"layer {index}")
            if current is not value:
                self.release(current)
            current = result
        return current

    def release(self, value: Value) -> None:
        """Called once a value computed inside the walk is no longer needed (C reuses its buffers)."""

    def _handler(self, layer: Layer, path: str) -> Callable[[Any, Value, str], Value]:
        kind = type(layer)
        name = handler_name(kind)
        if name is None:
            where = describe(path, layer) if path else type(layer).__name__
            parents = [base.__name__ for base in kind.__mro__[1:] if base.__module__.startswith("jacobian_np.")]
            what = (
                f"a subclass of {parents[0]}, which may change its rules"
                if parents and parents[0] not in ("Layer", "Elementwise")
                else "a user-defined layer"
            )
            raise TypeError(
                f"{self.owner}: {where} is {what}; only the built-in layers can be exported "
                "(Affine, the activations, Softmax, LogSoftmax, LayerNorm, Network, Residual, Parallel)."
            )
        return getattr(self, name)


def handler_name(kind: type) -> Optional[str]:
    """The exporter method for layers of exactly this type, or None for a type that is not built in."""
    return ACTIVATIONS.get(kind) or _STRUCTURAL.get(kind)


#: The other built-in layers, by exact type, with the name of their exporter method.
_STRUCTURAL: dict[type, str] = {
    Affine: "affine",
    Softmax: "softmax",
    LogSoftmax: "log_softmax",
    LayerNorm: "layer_norm",
    Network: "network",
    Residual: "residual",
    Parallel: "parallel",
}


def transposed(W: Array) -> Array:
    """``W.T`` as a C-contiguous float64 copy: row ``j`` holds the weights into output ``j``."""
    return np.ascontiguousarray(np.asarray(W, dtype=np.float64).T)
