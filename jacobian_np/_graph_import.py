"""From a dataflow graph of tensor operations to layers: what from_torch and from_onnx share.

A front end (``torch.fx`` for PyTorch, the node list for ONNX) translates each
operation into a :class:`Node` of this small vocabulary:

- ``"input"``: the graph input, of shape ``(n, d_in)``;
- ``"layer"``: a :class:`Layer` applied to its one input; ``"identity"``;
- ``"add"``, ``"sub"``, ``"mul"``, ``"div"``, ``"neg"``: arithmetic, each operand a
  :class:`Node` or a constant array (a scalar or one value per feature);
- ``"cat"``: concatenation on the last axis;
- ``"erf"``, ``"sqrt"``, ``"pow"``, ``"mean"``, ``"var"`` (over the last axis, kept),
  ``"greater"``, ``"where"``: only as parts of the patterns below.

:class:`Structure` then reads the graph back from its output.  A node with one
computed operand is a step of a chain; where two paths meet (an ``add`` or a
``cat``) the chain up to the meeting point is the nearest common dominator of the
operands, the point every path from the input passes through: ``x + c * f(x)``
becomes ``Residual(f, c)``, a concatenation of branches ``Parallel``, a sum of
two branches ``Parallel`` followed by the ``Affine`` ``[I; +-I]``.  Multiplying
by constants and adding constants are folded exactly into the neighbouring
``Affine`` (or ``LayerNorm``) weights.  The patterns exporters write are fused:
``x * sigmoid(x)`` (SiLU), ``x * (1 + erf(x / sqrt 2)) / 2`` (GELU),
``where(x > threshold, x, softplus(x))`` (PyTorch's Softplus), and
``(x - mean) / sqrt(var + eps)`` (layer normalisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from ._typing import Array
from .activations import GELU, Identity, SiLU, Sigmoid, Softplus
from .affine import Affine
from .composite import Parallel, Residual
from .layer import Layer
from .network import Network
from .normalization import LayerNorm


@dataclass(eq=False)
class Node:
    """One operation of the graph; ``where`` names it in messages."""

    op: str
    inputs: tuple[Any, ...]  # Node or a constant ndarray
    where: str
    layer: Optional[Layer] = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def tensors(self) -> list["Node"]:
        return [x for x in self.inputs if isinstance(x, Node)]


@dataclass
class _Diag:
    """``x * scale + shift`` feature by feature, not yet folded into a neighbouring layer."""

    scale: Array
    shift: Array
    width: Optional[int]
    where: str

    def then(self, other: "_Diag") -> "_Diag":
        return _Diag(self.scale * other.scale, self.shift * other.scale + other.shift,
                     self.width or other.width, other.where)

    def is_identity(self) -> bool:
        return bool(np.all(self.scale == 1) and np.all(self.shift == 0))

    def uniform_scale(self) -> Optional[float]:
        """The scale, if it is one number and there is no shift."""
        if np.all(self.shift == 0) and np.all(self.scale == self.scale.reshape(-1)[0]):
            return float(self.scale.reshape(-1)[0])
        return None


Item = Union[Layer, _Diag]


class Structure:
    """The layers computing a graph's output from its input."""

    def __init__(self, output: Node, owner: str, supported: str, dtype: Any, input_width: Optional[int] = None):
        self.owner, self.supported, self.dtype = owner, supported, np.dtype(dtype)
        self.input_width = input_width
        self.order = _topological(output)
        self.position = {id(node): i for i, node in enumerate(self.order)}
        inputs = [node for node in self.order if node.op == "input"]
        if not inputs:
            raise ValueError(f"{owner}: the output does not depend on the input.")
        self.input = inputs[0]
        self.idom: dict[int, Node] = {}
        for node in self.order:
            if node is self.input:
                self.idom[id(node)] = node
                continue
            parents = node.tensors()
            if not parents:
                raise ValueError(
                    f"{owner}: {node.where} does not depend on the input; constants must be weights "
                    "(parameters, buffers or initializers)."
                )
            dominator = parents[0]
            for parent in parents[1:]:
                dominator = self._meet(dominator, parent)
            self.idom[id(node)] = dominator
        self.output = output
        self._widths: dict[int, Optional[int]] = {}

    # --- the public result ---------------------------------------------------------------

    def layers(self) -> list[Layer]:
        layers = self.finish(self.chain(self.input, self.output))
        return layers or [Identity()]

    # --- dominators and widths -------------------------------------------------------------

    def _meet(self, a: Node, b: Node) -> Node:
        while a is not b:
            while self.position[id(a)] > self.position[id(b)]:
                a = self.idom[id(a)]
            while self.position[id(b)] > self.position[id(a)]:
                b = self.idom[id(b)]
        return a

    def width(self, node: Node) -> Optional[int]:
        """The width of a node's output where the graph fixes it, else None."""
        key = id(node)
        if key not in self._widths:
            self._widths[key] = None  # guards against cycles, which a DAG does not have
            self._widths[key] = self._width(node)
        return self._widths[key]

    def _width(self, node: Node) -> Optional[int]:
        if node.op == "input":
            return self.input_width
        if node.op == "cat":
            widths = [self.width(x) for x in node.tensors()]
            return None if None in widths else sum(w for w in widths if w is not None)
        if node.op == "layer" and node.layer is not None:
            d_out = getattr(node.layer, "d_out", None)
            if d_out is not None:
                return int(d_out)
        for constant in node.inputs:
            if isinstance(constant, np.ndarray) and constant.ndim >= 1 and constant.shape[-1] > 1:
                return int(constant.shape[-1])
        for x in node.tensors():
            width = self.width(x)
            if width is not None:
                return width
        return None

    # --- reading chains back from their end ------------------------------------------------

    def chain(self, start: Node, end: Node) -> list[Item]:
        """The items computing ``end`` from ``start``, which dominates it."""
        pieces: list[list[Item]] = []
        node = end
        while node is not start:
            if node.op == "input":  # pragma: no cover - dominance rules it out
                raise AssertionError(f"{node.where} escapes the region from {start.where}")
            items, node = self.step(node)
            pieces.append(items)
        return [item for items in reversed(pieces) for item in items]

    def step(self, node: Node) -> tuple[list[Item], Node]:
        """The items of one operation and the node it reads from."""
        op, tensors = node.op, node.tensors()
        if op == "layer" and node.layer is not None:
            return [node.layer], tensors[0]
        if op == "identity":
            return [], tensors[0]
        if op in ("add", "sub", "mul", "div", "neg") and len(tensors) == 1:
            return [self._diag(node)], tensors[0]
        fused = self._fuse(node)
        if fused is not None:
            return fused
        if op in ("add", "sub") and len(tensors) == 2:
            return self._sum(node), self.idom[id(node)]
        if op == "cat":
            return self._concatenation(node), self.idom[id(node)]
        raise ValueError(f"{self.owner}: {self._unsupported(node)}; supported: {self.supported}.")

    def _unsupported(self, node: Node) -> str:
        if node.op == "mul" and len(node.tensors()) == 2:
            return (f"{node.where} multiplies two computed tensors, which is supported only as "
                    "x * sigmoid(x) (SiLU) or x * (1 + erf(x / sqrt(2))) / 2 (GELU)")
        if node.op == "div" and len(node.tensors()) == 2:
            return f"{node.where} divides two computed tensors, which is supported only in (x - mean) / sqrt(var + eps)"
        if node.op == "where":
            return (f"{node.where} is supported only as PyTorch writes Softplus: where(x > threshold, x, "
                    "softplus(x)) with threshold >= 20")
        if node.op == "div":
            return f"{node.where} divides a constant by a computed tensor, which is not affine"
        return f"unsupported operation {node.where}"

    def _diag(self, node: Node) -> _Diag:
        (x,) = node.tensors()
        constants = [c for c in node.inputs if not isinstance(c, Node)]
        if node.op == "neg":
            scale, shift = np.asarray(-1.0), np.asarray(0.0)
        else:
            c = self._feature_constant(constants[0], node, x)
            first = node.inputs[0] is x
            if node.op == "add":
                scale, shift = np.asarray(1.0), c
            elif node.op == "sub":
                scale, shift = (np.asarray(1.0), -c) if first else (np.asarray(-1.0), c)
            elif node.op == "mul":
                scale, shift = c, np.asarray(0.0)
            elif first:  # div
                scale, shift = 1 / c, np.asarray(0.0)
            else:
                raise ValueError(f"{self.owner}: {self._unsupported(node)}; supported: {self.supported}.")
        return _Diag(np.asarray(scale), np.asarray(shift), self.width(x), node.where)

    def _feature_constant(self, c: Any, node: Node, x: Node) -> Array:
        """A constant operand as a scalar or a vector over the features, or raise."""
        c = np.asarray(c)
        width = self.width(x)
        ok = c.ndim <= 2 and all(n == 1 for n in c.shape[:-1])
        if ok and c.ndim >= 1 and c.shape[-1] != 1 and width is not None and c.shape[-1] != width:
            ok = False
        if not ok:
            expected = f"({width},), (1, {width})" if width is not None else "(d,), (1, d)"
            raise ValueError(
                f"{self.owner}: {node.where} combines the data with a constant of shape {c.shape}; "
                f"expected a scalar or one value per feature: (), (1,), {expected}."
            )
        return c.reshape(-1) if c.ndim >= 1 and c.shape[-1] != 1 else c.reshape(())

    # --- joins -----------------------------------------------------------------------------

    def _block(self, items: list[Item]) -> Layer:
        layers = self.finish(items)
        if not layers:
            return Identity()
        return layers[0] if len(layers) == 1 else Network(layers)

    def _sum(self, node: Node) -> list[Item]:
        a, b = node.tensors()
        start = self.idom[id(node)]
        sign = -1.0 if node.op == "sub" else 1.0
        if a is start or b is start:
            other = b if a is start else a
            items = _merge(self.chain(start, other))
            scale = 1.0 if node.op == "add" else -1.0  # x - f(x), and f(x) - x = -(x - f(x))
            if items and isinstance(items[-1], _Diag) and items[-1].uniform_scale() is not None:
                scale *= items[-1].uniform_scale()  # type: ignore[operator]
                items = items[:-1]
            residual: list[Item] = [Residual(self._block(items), scale=scale)]
            if b is start and node.op == "sub":
                residual.append(self._scalar(-1.0, node, start))
            return residual
        width = self.width(a) or self.width(b)
        if width is None:
            raise ValueError(
                f"{self.owner}: {node.where} adds two branches whose width the graph does not fix; put a "
                "Linear layer (or MatMul) before them."
            )
        branches = [self._block(self.chain(start, x)) for x in (a, b)]
        eye = np.eye(width, dtype=self.dtype)
        if all(branch.d_in is None for branch in branches):  # fix the width: x @ I is exactly x
            branches[0] = Network([Affine(eye), branches[0]])
        return [Parallel(branches), Affine(np.concatenate([eye, sign * eye]))]

    def _concatenation(self, node: Node) -> list[Item]:
        start = self.idom[id(node)]
        branches = [self._block(self.chain(start, x)) for x in node.tensors()]
        if len(branches) == 1:
            return [branches[0]]
        return [Parallel(branches)]

    # --- fused patterns --------------------------------------------------------------------

    def _fuse(self, node: Node) -> Optional[tuple[list[Item], Node]]:
        if node.op == "mul" and len(node.tensors()) == 2:
            return self._fuse_product(node)
        if node.op == "div" and len(node.tensors()) == 2:
            return self._fuse_layer_norm(node)
        if node.op == "where":
            return self._fuse_softplus(node)
        return None

    def _fuse_product(self, node: Node) -> Optional[tuple[list[Item], Node]]:
        p, q = node.tensors()
        (k1, x1), (k2, x2) = _peel(p), _peel(q)
        for (x, other) in ((x1, x2), (x2, x1)):
            if other.op == "layer" and type(other.layer) is Sigmoid and other.inputs[0] is x:
                return [SiLU(), self._scalar(k1 * k2, node, x)], x
            argument = self._erf_argument(other)
            if argument is not None:
                k, inner = _peel(argument)
                if inner is x and abs(k * math.sqrt(2) - 1) <= 8 * _eps(argument):
                    return [GELU(), self._scalar(2 * k1 * k2, node, x)], x
        return None

    def _erf_argument(self, node: Node) -> Optional[Node]:
        """``e`` if ``node`` is ``1 + erf(e)`` (either order), else None."""
        if node.op != "add" or len(node.tensors()) != 1:
            return None
        (erf,) = node.tensors()
        constant = next(c for c in node.inputs if not isinstance(c, Node))
        if erf.op != "erf" or np.size(constant) != 1 or float(np.asarray(constant).reshape(-1)[0]) != 1:
            return None
        return erf.tensors()[0]

    def _scalar(self, value: float, node: Node, x: Node) -> _Diag:
        return _Diag(np.asarray(value), np.asarray(0.0), self.width(x), node.where)

    def _fuse_softplus(self, node: Node) -> Optional[tuple[list[Item], Node]]:
        if len(node.inputs) != 3 or not all(isinstance(x, Node) for x in node.inputs[::2]):
            return None
        condition, x, soft = node.inputs
        if not (isinstance(condition, Node) and condition.op == "greater" and condition.inputs[0] is x):
            return None
        threshold = condition.inputs[1]
        if isinstance(threshold, Node) or np.size(threshold) != 1:
            return None
        if not (isinstance(soft, Node) and soft.op == "layer" and type(soft.layer) is Softplus
                and soft.inputs[0] is x):
            return None
        if float(np.asarray(threshold).reshape(-1)[0]) < 20:
            raise ValueError(
                f"{self.owner}: {node.where} is Softplus with threshold={float(np.asarray(threshold).reshape(-1)[0])}; "
                "PyTorch's Softplus is the identity above the threshold and jacobian_np's Softplus is exact, so "
                "only threshold >= 20 (where they differ by less than 2.1e-9) is supported."
            )
        return [Softplus()], x

    def _fuse_layer_norm(self, node: Node) -> Optional[tuple[list[Item], Node]]:
        numerator, denominator = node.inputs
        x = _centred_input(numerator)
        if x is None or not isinstance(denominator, Node) or denominator.op != "sqrt":
            return None
        (inside,) = denominator.tensors()
        if inside.op != "add" or len(inside.tensors()) != 1:
            return None
        (variance,) = inside.tensors()
        eps = next(c for c in inside.inputs if not isinstance(c, Node))
        if np.size(eps) != 1 or not _is_variance(variance, x):
            return None
        width = self.width(x)
        if width is None:
            raise ValueError(
                f"{self.owner}: {node.where} normalises a tensor whose width the graph does not fix; put a "
                "Linear layer (or MatMul) before it."
            )
        ones, zeros = np.ones(width, self.dtype), np.zeros(width, self.dtype)
        return [LayerNorm(width, eps=float(np.asarray(eps).reshape(-1)[0]), weight=ones, bias=zeros)], x

    # --- folding the constant maps -----------------------------------------------------------

    def finish(self, items: list[Item]) -> list[Layer]:
        """The layers of a chain, with each ``x * scale + shift`` folded into a neighbour."""
        items = _merge(items)
        layers: list[Layer] = []
        for index, item in enumerate(items):
            if not isinstance(item, _Diag):
                layers.append(item)
                continue
            following = items[index + 1] if index + 1 < len(items) else None
            previous = layers[-1] if layers else None
            if isinstance(previous, Affine):
                layers[-1] = Affine(previous.W * item.scale.astype(previous.W.dtype), _folded_bias(previous, item))
            elif previous is not None and type(previous) is LayerNorm:
                layers[-1] = _scaled_layer_norm(previous, item)
            elif isinstance(following, Affine):
                W = following.W
                scale = np.broadcast_to(item.scale.astype(W.dtype), (W.shape[0],))
                shift = np.broadcast_to(item.shift.astype(W.dtype), (W.shape[0],))
                bias = shift @ W + (0 if following.b is None else following.b)
                items[index + 1] = Affine(scale[:, None] * W, bias)
            elif not item.is_identity():
                layers.append(self._diag_affine(item))
        return layers

    def _diag_affine(self, item: _Diag) -> Affine:
        width = item.width
        if width is None:
            raise ValueError(
                f"{self.owner}: {item.where} scales or shifts a tensor whose width the graph does not fix "
                "and no Linear layer is next to it; put one before or after it."
            )
        scale = np.broadcast_to(item.scale.astype(self.dtype), (width,))
        shift = np.broadcast_to(item.shift.astype(self.dtype), (width,))
        return Affine(np.diag(scale), None if not np.any(shift) else shift)


def _topological(output: Node) -> list[Node]:
    """Every node the output depends on, each after its inputs (iterative depth-first search)."""
    order: list[Node] = []
    state: dict[int, int] = {}  # 1: on the stack, 2: done
    stack: list[tuple[Node, int]] = [(output, 0)]
    while stack:
        node, index = stack.pop()
        tensors = node.tensors()
        if index == 0:
            if state.get(id(node)) == 2:
                continue
            state[id(node)] = 1
        if index < len(tensors):
            stack.append((node, index + 1))
            child = tensors[index]
            if state.get(id(child)) != 2:
                stack.append((child, 0))
        else:
            state[id(node)] = 2
            order.append(node)
    return order


def _merge(items: list[Item]) -> list[Item]:
    merged: list[Item] = []
    for item in items:
        if isinstance(item, _Diag) and merged and isinstance(merged[-1], _Diag):
            merged[-1] = merged[-1].then(item)
        else:
            merged.append(item)
    return merged


def _folded_bias(affine: Affine, item: _Diag) -> Optional[Array]:
    """The bias of ``affine`` followed by ``x * scale + shift``: ``b * scale + shift``."""
    dtype = affine.W.dtype
    shift = np.broadcast_to(item.shift.astype(dtype), (affine.d_out,))
    if affine.b is None:
        return None if not np.any(shift) else shift.copy()
    return affine.b * item.scale.astype(dtype) + shift


def _scaled_layer_norm(norm: Any, item: _Diag) -> Any:
    d = norm.d
    dtype = norm.weight.dtype if norm.weight is not None else item.scale.dtype
    weight = np.ones(d, dtype) if norm.weight is None else norm.weight
    bias = np.zeros(d, dtype) if norm.bias is None else norm.bias
    weight = np.broadcast_to(weight * item.scale.astype(dtype), (d,))
    bias = np.broadcast_to(bias * item.scale.astype(dtype) + item.shift.astype(dtype), (d,))
    return type(norm)(d, eps=norm.eps, weight=weight, bias=bias)


def _peel(node: Node) -> tuple[float, Node]:
    """``(k, x)`` with ``node = k * x``, peeling multiplications and divisions by scalars."""
    k = 1.0
    while node.op in ("mul", "div", "neg") and len(node.tensors()) == 1:
        (x,) = node.tensors()
        constants = [c for c in node.inputs if not isinstance(c, Node)]
        if node.op == "neg":
            k = -k
        elif np.size(constants[0]) != 1 or (node.op == "div" and node.inputs[0] is not x):
            break
        else:
            c = float(np.asarray(constants[0]).reshape(-1)[0])
            k = k * c if node.op == "mul" else k / c
        node = x
    return k, node


def _eps(node: Node) -> float:
    """Relative rounding of the constants near ``node``: float32 constants round to 6e-8."""
    dtypes = [np.asarray(c).dtype for c in node.inputs if not isinstance(c, Node)]
    return float(np.finfo(np.float32).eps) if np.dtype(np.float32) in dtypes else float(np.finfo(np.float64).eps)


def _centred_input(node: Any) -> Optional[Node]:
    """``x`` if ``node`` is ``x - mean(x)``, else None."""
    if not isinstance(node, Node) or node.op != "sub" or len(node.tensors()) != 2:
        return None
    x, mean = node.inputs
    if isinstance(mean, Node) and mean.op == "mean" and mean.inputs[0] is x:
        return x
    return None


def _is_variance(node: Node, x: Node) -> bool:
    """Whether ``node`` is the biased variance of ``x`` over the last axis."""
    if node.op == "var":
        return node.inputs[0] is x
    if node.op != "mean":
        return False
    (square,) = node.tensors()
    if square.op == "pow":
        base, exponent = square.inputs
        ok = not isinstance(exponent, Node) and np.size(exponent) == 1 and float(np.asarray(exponent).reshape(-1)[0]) == 2
    elif square.op == "mul" and len(square.tensors()) == 2:
        base, other = square.inputs
        ok = other is base or _centred_input(other) is x
    else:
        return False
    return ok and _centred_input(base) is x
