"""PyTorch modules for a network: the builder behind :func:`~jacobian_np.to_torch`.

Built-in layers become the standard ``torch.nn`` modules.  The few that PyTorch
lacks (``Sin``, a residual connection, parallel branches) are the small modules
defined here, at module level so that ``torch.save`` of a whole model can pickle
them by name.  PyTorch is imported only when this module is, and only
:func:`~jacobian_np.to_torch` imports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._export_walk import LayerWalk, as_network, network_dtype

try:
    import torch
except ImportError:  # pragma: no cover - to_torch raises ImportError before importing this module
    torch = None  # type: ignore[assignment,unused-ignore]

if torch is not None:

    class Sin(torch.nn.Module):
        """``sin(x)``, elementwise."""

        def forward(self, x: Any) -> Any:
            return torch.sin(x)

    class Residual(torch.nn.Module):
        """``x + scale * block(x)``."""

        def __init__(self, block: Any, scale: float = 1.0) -> None:
            super().__init__()
            self.block = block
            self.scale = scale

        def forward(self, x: Any) -> Any:
            if self.scale == 1:
                return x + self.block(x)
            return x + self.scale * self.block(x)

        def extra_repr(self) -> str:
            return f"scale={self.scale!r}"

    class Parallel(torch.nn.Module):
        """The branches applied to the same input, their outputs concatenated on the last axis."""

        def __init__(self, branches: Any) -> None:
            super().__init__()
            self.branches = torch.nn.ModuleList(branches)

        def forward(self, x: Any) -> Any:
            return torch.cat([branch(x) for branch in self.branches], dim=-1)


#: Softplus above this threshold is x in PyTorch; beyond 40 the difference,
#: log1p(exp(-x)) < 4.3e-18, is below half an ulp of x even in float64.
SOFTPLUS_THRESHOLD = 40.0


class TorchWriter(LayerWalk[Any]):
    """Builds the module for each layer; ``value`` is unused (modules are not values)."""

    owner = "to_torch"

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = torch.float32 if dtype == np.float32 else torch.float64

    def tensor(self, array: Any) -> Any:
        return torch.nn.Parameter(torch.tensor(np.asarray(array), dtype=self.dtype))

    def network(self, network: Any, value: Any, path: str) -> Any:
        modules = [
            self.emit(layer, value, f"{path} > layer {i}" if path else f"layer {i}")
            for i, layer in enumerate(network.layers)
        ]
        return torch.nn.Sequential(*modules)

    def affine(self, layer: Any, value: Any, path: str) -> Any:
        linear = torch.nn.Linear(layer.d_in, layer.d_out, bias=layer.b is not None, dtype=self.dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.asarray(layer.W).T)))
            if layer.b is not None:
                linear.bias.copy_(torch.from_numpy(np.asarray(layer.b)))
        return linear

    def relu(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.ReLU()

    def sigmoid(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.Sigmoid()

    def tanh(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.Tanh()

    def identity(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.Identity()

    def softplus(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.Softplus(beta=1.0, threshold=SOFTPLUS_THRESHOLD)

    def leaky_relu(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.LeakyReLU(negative_slope=layer.alpha)

    def elu(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.ELU(alpha=layer.alpha)

    def gelu(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.GELU()

    def silu(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.SiLU()

    def sin(self, layer: Any, value: Any, path: str) -> Any:
        return Sin()

    def softmax(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.Softmax(dim=-1)

    def log_softmax(self, layer: Any, value: Any, path: str) -> Any:
        return torch.nn.LogSoftmax(dim=-1)

    def layer_norm(self, layer: Any, value: Any, path: str) -> Any:
        has_weight, has_bias = layer.weight is not None, layer.bias is not None
        norm = torch.nn.LayerNorm(
            layer.d, eps=layer.eps, elementwise_affine=has_weight or has_bias, bias=has_bias, dtype=self.dtype
        )
        with torch.no_grad():
            if has_weight:
                norm.weight.copy_(torch.from_numpy(np.asarray(layer.weight)))
            if has_bias:
                norm.bias.copy_(torch.from_numpy(np.asarray(layer.bias)))
        return norm

    def residual(self, layer: Any, value: Any, path: str) -> Any:
        return Residual(self.emit(layer.block, value, f"{path} > block"), float(layer.scale))

    def parallel(self, layer: Any, value: Any, path: str) -> Any:
        return Parallel([self.emit(b, value, f"{path} > branch {i}") for i, b in enumerate(layer.branches)])


def build(net: Any) -> Any:
    network = as_network(net, "to_torch")
    module = TorchWriter(network_dtype(network)).emit(network, None, "")
    return module.eval()
