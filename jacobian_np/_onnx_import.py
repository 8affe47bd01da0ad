"""ONNX graphs as dataflow graphs, for :func:`~jacobian_np.from_onnx`.

Each node of the graph becomes a :class:`~._graph_import.Node`; initializers and
``Constant`` nodes are the constants.  :class:`~._graph_import.Structure` turns the
result into layers, fusing the patterns exporters write (``Sigmoid`` then ``Mul``
for SiLU, ``Softplus`` with its threshold ``Where``, the ``Erf`` form of GELU, the
decomposed layer normalisation) and reading residual ``Add`` and ``Concat`` as
composite layers.  Messages name the node (by name, or by its position in the
graph) and its operator.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, cast

import numpy as np

from ._graph_import import Node, Structure
from ._typing import Array
from ._validation import as_float_array
from .activations import ELU, GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Sin, Softmax, Softplus, Tanh
from .affine import Affine
from .layer import Layer
from .network import Network
from .normalization import LayerNorm

#: ONNX float attributes are float32, defaults included: LeakyRelu's alpha is float32(0.01).
LEAKY_RELU_ALPHA = float(np.float32(0.01))
ACTIVATIONS: dict[str, Callable[[dict[str, Any]], Layer]] = {
    "Relu": lambda attrs: ReLU(),
    "Sigmoid": lambda attrs: Sigmoid(),
    "Tanh": lambda attrs: Tanh(),
    "Softplus": lambda attrs: Softplus(),
    "Sin": lambda attrs: Sin(),
    "LeakyRelu": lambda attrs: LeakyReLU(attrs.get("alpha", LEAKY_RELU_ALPHA)),
    "Elu": lambda attrs: ELU(attrs.get("alpha", 1.0)),
}
#: Operators read only as parts of a fused pattern.
PATTERN_PARTS = {"Erf": "erf", "Sqrt": "sqrt", "Pow": "pow", "ReduceMean": "mean", "Greater": "greater", "Where": "where"}
ARITHMETIC = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Neg": "neg"}
SUPPORTED = (
    "Gemm, MatMul, Add, Sub, Mul, Div, Neg (with constants, residual Add, and the patterns below), Concat, "
    "Relu, Sigmoid, Tanh, Softmax, LogSoftmax, Softplus, LeakyRelu, Elu, Gelu, Sin, LayerNormalization, "
    "Identity, Flatten, Dropout, Constant; and the patterns x * Sigmoid(x) (SiLU), x * (1 + Erf(x / sqrt 2)) / 2 "
    "(GELU), Where(x > threshold, x, Softplus(x)) and (x - ReduceMean(x)) / Sqrt(ReduceMean(d * d) + eps) "
    "(layer normalisation)"
)


def _generic(op: str) -> Callable[[Any, list[Any], dict[str, Any], str], Node]:
    """The translator of an operator that maps to one graph operation, its operands kept."""

    def translate(node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        return Node(op, tuple(operands), where)

    return translate


class OnnxGraph:
    """Translates an ONNX graph, node by node, and reads the network from it."""

    def __init__(self, proto: Any, onnx: Any) -> None:
        self.onnx = onnx
        self.graph = proto.graph
        self.opset = max((op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")), default=1)
        self.constants: dict[str, Array] = {
            init.name: onnx.numpy_helper.to_array(init) for init in self.graph.initializer
        }
        self.nodes = []
        self.positions: dict[int, int] = {}  # id(node) -> index in graph.node, for messages
        for index, node in enumerate(self.graph.node):
            self.positions[id(node)] = index
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.constants[node.output[0]] = self._constant_value(node)
            else:
                self.nodes.append(node)
        inputs = [value for value in self.graph.input if value.name not in self.constants]
        if len(inputs) != 1 or len(self.graph.output) != 1:
            raise ValueError(
                "from_onnx: the graph must have one input and one output; got "
                f"inputs {[v.name for v in inputs]} and outputs {[v.name for v in self.graph.output]}."
            )
        self.input, self.output = inputs[0], self.graph.output[0].name
        self.d_in = self._input_width(self.input)
        elem = self.input.type.tensor_type.elem_type
        self.dtype = np.float32 if elem == onnx.TensorProto.FLOAT else np.float64

    def network(self) -> Network:
        producers = {name: node for node in self.nodes for name in node.output if name}
        if self.input.name != self.output and not any(self.input.name in node.input for node in self.nodes):
            raise ValueError(
                f"from_onnx: tensor {self.input.name!r} is used by no node and is not the graph output "
                f"{self.output!r}; the graph must compute its output from its input."
            )
        needed = self._ancestors(self.output, producers)
        left = [self._describe(node) for node in self.nodes if id(node) not in needed]
        if left:
            raise ValueError(
                f"from_onnx: {', '.join(left)} not on a path from the input {self.input.name!r} "
                f"to the output {self.output!r}; every node must contribute to the output."
            )
        values: dict[str, Node] = {self.input.name: Node("input", (), f"the input {self.input.name!r}")}
        for node in self.nodes:
            self._translate(node, values)
        if self.output not in values:
            raise ValueError(f"from_onnx: the output {self.output!r} is a constant, not computed from the input.")
        structure = Structure(values[self.output], "from_onnx", SUPPORTED, self.dtype, self.d_in)
        network = Network(structure.layers())
        if self.d_in is not None and network.d_in is not None and network.d_in != self.d_in:
            raise ValueError(
                f"from_onnx: the graph input {self.input.name!r} has width {self.d_in}, but the first "
                f"weight expects {network.d_in}."
            )
        return network

    def _ancestors(self, name: str, producers: dict[str, Any]) -> set[int]:
        seen: set[int] = set()
        stack = [name]
        while stack:
            node = producers.get(stack.pop())
            if node is not None and id(node) not in seen:
                seen.add(id(node))
                stack.extend(x for x in node.input if x)
        return seen

    # --- translation ---------------------------------------------------------------------

    def _translate(self, node: Any, values: dict[str, Node]) -> None:
        op, where = node.op_type, self._describe(node)
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(
                f"from_onnx: unsupported operator {node.domain + '.' + op!r} ({self._name(node)}); "
                f"supported (default domain): {SUPPORTED}."
            )
        outputs = [name for name in node.output if name]
        if outputs[1:] and any(self._is_used(name) for name in outputs[1:]):
            raise ValueError(f"from_onnx: {where} has a second output that is used; only its first output can be.")
        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        operands = [values.get(name, self.constants.get(name)) if name else None for name in node.input]
        for name, operand in zip(node.input, operands):
            if name and operand is None:  # pragma: no cover - onnx.checker rules out unknown names
                raise ValueError(f"from_onnx: {where} reads {name!r}, which no node computes.")
        if not any(isinstance(x, Node) for x in operands):
            raise ValueError(
                f"from_onnx: {where} does not depend on the input; constants must be initializers or "
                "Constant nodes."
            )
        translate = self._translators().get(op)
        if translate is None:
            raise ValueError(f"from_onnx: unsupported operator {op!r} ({self._name(node)}); supported: {SUPPORTED}.")
        values[node.output[0]] = translate(node, operands, attrs, where)

    def _translators(self) -> dict[str, Callable[[Any, list[Any], dict[str, Any], str], Node]]:
        table: dict[str, Callable[[Any, list[Any], dict[str, Any], str], Node]] = {
            "Gemm": self._gemm,
            "MatMul": self._matmul,
            "Softmax": self._softmax,
            "LogSoftmax": self._softmax,
            "Gelu": self._gelu,
            "Flatten": self._flatten,
            "Dropout": self._dropout,
            "Identity": lambda node, ops, attrs, where: Node("identity", (self._data(node, ops, where),), where),
            "Concat": self._concat,
            "LayerNormalization": self._layer_norm,
            "ReduceMean": self._reduce_mean,
        }
        for op in ACTIVATIONS:
            table[op] = self._activation
        for op, name in {**PATTERN_PARTS, **ARITHMETIC}.items():
            table.setdefault(op, _generic(name))
        return table

    def _data(self, node: Any, operands: list[Any], where: str, position: int = 0, form: str = "") -> Node:
        """The computed operand, which must be the only one and at ``position``."""
        computed = [i for i, x in enumerate(operands) if isinstance(x, Node)]
        if computed != [position]:
            inputs = list(node.input)
            if len(computed) > 1:
                name = inputs[computed[1]]
                raise ValueError(
                    f"from_onnx: {where} combines {inputs[computed[0]]!r} with the computed tensor {name!r}; "
                    "supported: the data and constant weights (initializers)."
                )
            expected = form or f"the data as input {position}"
            raise ValueError(
                f"from_onnx: {where} takes {inputs[computed[0]]!r} as input {computed[0]} of {inputs}; "
                f"supported: {expected}."
            )
        return cast(Node, operands[position])

    def _activation(self, node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        return Node("layer", (self._data(node, operands, where),), where, ACTIVATIONS[node.op_type](attrs))

    def _gemm(self, node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        x = self._data(node, operands, where)
        if attrs.get("transA", 0):
            raise ValueError(
                f"from_onnx: {where} has transA=1, which transposes the input batch; only transA=0 "
                "(y = x @ B + C) is supported."
            )
        B = self._weight(node.input[1], where)
        W = B.T if attrs.get("transB", 0) else B
        alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
        if alpha != 1:
            W = W * alpha
        b = None
        if len(node.input) > 2 and node.input[2]:
            b = self._bias(node.input[2], W.shape[1], where)
            if beta != 1:
                b = b * beta
        return Node("layer", (x,), where, Affine(np.ascontiguousarray(W), b))

    def _matmul(self, node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        x = self._data(node, operands, where, 0, "x @ W with a constant W")
        return Node("layer", (x,), where, Affine(self._weight(node.input[1], where)))

    def _softmax(self, node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        x = self._data(node, operands, where)
        axis = attrs.get("axis", -1 if self.opset >= 13 else 1)
        if axis not in (-1, 1):
            raise ValueError(
                f"from_onnx: {where} has axis={axis}; only the last axis of the (n, d) input "
                "(axis=-1 or axis=1) is supported."
            )
        return Node("layer", (x,), where, Softmax() if node.op_type == "Softmax" else LogSoftmax())

    def _gelu(self, node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        x = self._data(node, operands, where)
        if attrs.get("approximate", "none") != "none":
            raise ValueError(
                f"from_onnx: {where} has approximate={attrs['approximate']!r}; only the exact GELU "
                "(approximate='none') is supported."
            )
        return Node("layer", (x,), where, GELU())

    def _flatten(self, node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        x = self._data(node, operands, where)
        if attrs.get("axis", 1) not in (1, -1):
            raise ValueError(
                f"from_onnx: {where} has axis={attrs['axis']}; only axis=1 (the identity on inputs "
                "of shape (n, d)) is supported."
            )
        return Node("identity", (x,), where)

    def _dropout(self, node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        x = self._data(node, operands, where)
        training = node.input[2] if len(node.input) > 2 else ""
        if training and bool(np.any(self.constants[training])):
            raise ValueError(f"from_onnx: {where} has training_mode=True; only inference (False) is supported.")
        return Node("identity", (x,), where)

    def _concat(self, node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        if attrs.get("axis") not in (-1, 1):
            raise ValueError(f"from_onnx: {where} has axis={attrs.get('axis')}; only the last axis (-1 or 1) is supported.")
        if not all(isinstance(x, Node) for x in operands):
            raise ValueError(f"from_onnx: {where} concatenates a constant; only computed tensors are supported.")
        return Node("cat", tuple(operands), where)

    def _layer_norm(self, node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        x = self._data(node, operands, where)
        if attrs.get("axis", -1) not in (-1, 1):
            raise ValueError(f"from_onnx: {where} has axis={attrs['axis']}; only the last axis (-1 or 1) is supported.")
        scale = as_float_array(self.constants[node.input[1]], f"from_onnx: {where} scale")
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = as_float_array(self.constants[node.input[2]], f"from_onnx: {where} bias")
        if scale.ndim != 1 or (bias is not None and bias.shape != scale.shape):
            raise ValueError(
                f"from_onnx: {where} has scale of shape {scale.shape} and bias of shape "
                f"{None if bias is None else bias.shape}; expected two vectors of the input's width."
            )
        bias = np.zeros_like(scale) if bias is None else bias
        eps = float(attrs.get("epsilon", np.float32(1e-5)))
        return Node("layer", (x,), where, LayerNorm(scale.size, eps=eps, weight=scale, bias=bias))

    def _reduce_mean(self, node: Any, operands: list[Any], attrs: dict[str, Any], where: str) -> Node:
        x = self._data(node, operands, where)
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(a) for a in np.asarray(self.constants[node.input[1]]).reshape(-1)]
        if list(axes or []) not in ([-1], [1]) or not attrs.get("keepdims", 1):
            raise ValueError(
                f"from_onnx: {where} has axes={axes} and keepdims={attrs.get('keepdims', 1)}; it is supported "
                "only over the last axis with keepdims=1, as part of a layer normalisation."
            )
        return Node("mean", (x,), where)

    # --- constants -------------------------------------------------------------------------

    def _weight(self, name: str, where: str) -> Array:
        W = as_float_array(self.constants[name], f"from_onnx: {where} weight {name!r}")
        if W.ndim != 2:
            raise ValueError(f"from_onnx: {where} has weight {name!r} of shape {W.shape}; expected 2-D.")
        return W

    def _bias(self, name: str, d_out: int, where: str) -> Array:
        """A constant that broadcasts against ``(n, d_out)`` without changing its shape, as ``(d_out,)``."""
        c = as_float_array(self.constants[name], f"from_onnx: {where} bias {name!r}")
        if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1) or (c.ndim >= 1 and c.shape[-1] not in (1, d_out)):
            raise ValueError(
                f"from_onnx: {where} has bias {name!r} of shape {c.shape}; expected a shape that broadcasts "
                f"to ({d_out},): ({d_out},), (1, {d_out}), (1,) or ()."
            )
        return np.broadcast_to(c.reshape(-1), (d_out,)).copy() if c.size == 1 else c.reshape(d_out)

    def _constant_value(self, node: Any) -> Array:
        helper = self.onnx.helper
        for attr in node.attribute:
            value = helper.get_attribute_value(attr)
            if attr.name == "value":
                return np.asarray(self.onnx.numpy_helper.to_array(value))
            if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
                return np.asarray(value)
        raise ValueError(
            f"from_onnx: {self._describe(node)} holds a sparse or string constant; only dense numeric "
            "constants are supported."
        )

    def _is_used(self, name: str) -> bool:
        return name == self.output or any(name in node.input for node in self.nodes)

    def _input_width(self, value: Any) -> Optional[int]:
        """The declared width of a 2-D graph input; ValueError for another declared rank."""
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            return None
        dims = tensor.shape.dim
        if len(dims) != 2:
            raise ValueError(
                f"from_onnx: the graph input {value.name!r} has {len(dims)} dimensions; only inputs "
                "of shape (n, d_in) are supported."
            )
        return int(dims[1].dim_value) if dims[1].HasField("dim_value") else None

    def _name(self, node: Any) -> str:
        """``node 'name'``, or ``node i`` (its position in the graph) for an unnamed node."""
        if node.name:
            return f"node {node.name!r}"
        return f"node {self.positions[id(node)]}"

    def _describe(self, node: Any) -> str:
        return f"{self._name(node)} ({node.op_type})"
