"""An ONNX graph for a network's value and Jacobian: the builder behind :func:`~jacobian_np.to_onnx`.

The graph carries the value ``h`` of shape ``(n, w)`` and its Jacobian
``t = dh/dx`` of shape ``(n, w, d_in)`` through the layers in forward mode, from
``x`` and the identity (kept symbolic, ``None``, until a layer needs it as a
tensor).  Only standard operators of opset 17 with float and double kernels in
ONNX Runtime are used.  Where ONNX Runtime has no double kernel (``Erf``,
``Softplus``, ``Elu``) or an inaccurate one (``Sigmoid``, about 1e-8 relative in
double), the function is composed from ``Exp``, ``Log``, ``Where`` and arithmetic,
with the same accurate forms as :mod:`jacobian_np.activations`; ``log1p`` and
``expm1``, which ONNX lacks, use the classical corrections of Goldberg and Kahan
(exact to a few ulp); the normal distribution function uses a Chebyshev series for
``log(erfc(z) / t)`` in ``t = 2 / (2 + z)`` (as in Numerical Recipes' ``erfccheb``),
its coefficients fitted to :func:`scipy.special.erfcx` when the model is written.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
from numpy.polynomial import chebyshev
from scipy.special import erfcx

from ._export_walk import LayerWalk, as_network, network_dtype, transposed
from ._typing import Array

#: opset 17: Unsqueeze takes its axes as an input, ReduceMean as an attribute.
OPSET = 17
#: The IR version that goes with opset 17, which every ONNX Runtime since 1.12 reads.
IR_VERSION = 8


@dataclass(eq=False)
class _Value:
    h: str
    t: Optional[str]  # None: the identity
    width: int
    lap: Optional[str] = None  # the Laplacian of h, sum_k d^2 h / dx_k^2, if asked for; None: zero


Operand = Union[str, float, Array]


class OnnxWriter(LayerWalk[_Value]):
    """Builds the nodes and initializers of the exported graph."""

    owner = "to_onnx"

    def __init__(self, onnx: Any, dtype: np.dtype, d_in: int, laplacian: bool = False) -> None:
        self.onnx = onnx
        self.laplacian = laplacian
        self.dtype = np.dtype(dtype)
        self.d_in = d_in
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._scalars: dict[float, str] = {}
        self._names: set[str] = set()
        self._batch: Optional[str] = None

    # --- graph building --------------------------------------------------------------

    def _fresh(self, stem: str) -> str:
        name, index = stem, 0
        while name in self._names:
            index += 1
            name = f"{stem}_{index}"
        self._names.add(name)
        return name

    def const(self, value: Any, stem: str = "c", dtype: Any = None) -> str:
        """An initializer holding ``value`` (scalars are shared)."""
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        if array.ndim == 0 and dtype is None:
            key = float(array)
            if key in self._scalars and not math.isnan(key):
                return self._scalars[key]
        name = self._fresh(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        if array.ndim == 0 and dtype is None:
            self._scalars[float(array)] = name
        return name

    def op(self, op_type: str, *inputs: Operand, stem: Optional[str] = None, **attrs: Any) -> str:
        names = [x if isinstance(x, str) else self.const(x) for x in inputs]
        output = self._fresh(stem or op_type.lower())
        self.nodes.append(
            self.onnx.helper.make_node(op_type, names, [output], name=self._fresh(f"node_{output}"), **attrs)
        )
        return output

    def unsqueeze(self, a: str, axis: int) -> str:
        return self.op("Unsqueeze", a, self.const([axis], "axes", np.int64))

    def batch_shape(self, *tail: int) -> str:
        """The shape ``(n, *tail)`` as an int64 tensor, n read from x."""
        if self._batch is None:
            shape = self.op("Shape", "x")
            self._batch = self.op(
                "Slice", shape, self.const([0], "start", np.int64), self.const([1], "end", np.int64), stem="n"
            )
        return self.op("Concat", self._batch, self.const(list(tail), "dims", np.int64), axis=0)

    def eye(self, width: int) -> str:
        return self.const(np.eye(width, dtype=self.dtype)[None], "eye")

    def tangent(self, v: _Value) -> str:
        """``v.t`` as a tensor that broadcasts to ``(n, w, d_in)`` (the identity as a constant)."""
        return self.eye(v.width) if v.t is None else v.t

    def full_tangent(self, v: _Value) -> str:
        """``v.t`` of shape exactly ``(n, w, d_in)``."""
        if v.t is not None:
            return v.t
        return self.op("Expand", self.eye(v.width), self.batch_shape(v.width, self.d_in))

    def zeros(self, width: int) -> str:
        return self.op("Expand", self.const(np.zeros((1, width), self.dtype), "zeros"), self.batch_shape(width))

    def square_sum(self, v: _Value) -> str:
        """``sum_k t[:, j, k]**2``, shape ``(n, w)`` (1 for the identity)."""
        if v.t is None:
            return self.const(1.0)
        return self.op("ReduceSum", self.op("Mul", v.t, v.t), self.const([2], "axes", np.int64), keepdims=0)

    def weighted_sum(self, s: str, a: str) -> str:
        """``sum_j s_j a_j`` over the last axis, kept: shape ``(n, 1)``."""
        return self.op("ReduceSum", self.op("Mul", s, a), self.const([1], "axes", np.int64), keepdims=1)

    def plus(self, a: Optional[str], b: Optional[str]) -> Optional[str]:
        """``a + b`` where None is zero."""
        return b if a is None else a if b is None else self.op("Add", a, b)

    def where_positive(self, x: str, then: Operand, otherwise: Operand) -> str:
        return self.op("Where", self.op("Greater", x, 0.0), then, otherwise)

    # --- accurate elementary functions -------------------------------------------------

    def log1p(self, u: str) -> str:
        """``log(1 + u)`` for ``u >= 0``: ``log(w) u / (w - 1)`` with ``w = 1 + u`` (Goldberg)."""
        w = self.op("Add", u, 1.0)
        ratio = self.op("Div", self.op("Mul", self.op("Log", w), u), self.op("Sub", w, 1.0))
        return self.op("Where", self.op("Equal", w, 1.0), u, ratio)

    def expm1(self, m: str) -> str:
        """``exp(m) - 1``: ``(u - 1) m / log(u)`` with ``u = exp(m)`` (Kahan)."""
        u = self.op("Exp", m)
        um1 = self.op("Sub", u, 1.0)
        ratio = self.op("Div", self.op("Mul", um1, m), self.op("Log", u))
        inner = self.op("Where", self.op("Equal", um1, -1.0), -1.0, ratio)
        return self.op("Where", self.op("Equal", u, 1.0), m, inner)

    def sigmoid_parts(self, x: str) -> tuple[str, str, str]:
        """``(s(x), s(-x), s(x) s(-x))`` from ``e = exp(-|x|)``, with no cancellation."""
        e = self.op("Exp", self.op("Neg", self.op("Abs", x)))
        one_plus = self.op("Add", e, 1.0)
        big = self.op("Reciprocal", one_plus)  # s(|x|)
        small = self.op("Div", e, one_plus)  # s(-|x|)
        nonnegative = self.op("GreaterOrEqual", x, 0.0)
        s = self.op("Where", nonnegative, big, small)
        s_neg = self.op("Where", nonnegative, small, big)
        return s, s_neg, self.op("Mul", big, small)

    def normal_cdf(self, x: str) -> str:
        """``Phi(x) = erfc(-x / sqrt 2) / 2``, accurate in both tails."""
        z = self.op("Mul", self.op("Abs", x), 1 / math.sqrt(2))
        t = self.op("Div", 2.0, self.op("Add", z, 2.0))
        u = self.op("Sub", self.op("Mul", t, 2.0), 1.0)
        coefficients = _erfc_chebyshev()
        u2 = self.op("Mul", u, 2.0)
        b1: Operand = float(coefficients[-1])
        b2: Optional[Operand] = None
        for c in coefficients[-2:0:-1]:  # Clenshaw: b_k = 2u b_{k+1} - b_{k+2} + c_k
            term = self.op("Mul", u2, b1) if isinstance(b1, str) else self.op("Mul", u2, float(b1))
            if b2 is not None:
                term = self.op("Sub", term, b2)
            b1, b2 = self.op("Add", term, float(c)), b1
        series = self.op("Add", self.op("Sub", self.op("Mul", u, b1), b2 if b2 is not None else 0.0),
                         float(coefficients[0]))
        erfc = self.op("Mul", t, self.op("Exp", self.op("Sub", series, self.op("Mul", z, z))))
        half = self.op("Mul", erfc, 0.5)  # Phi(-|x|)
        return self.op("Where", self.op("Less", x, 0.0), half, self.op("Sub", 1.0, half))

    # --- layers ----------------------------------------------------------------------

    def affine(self, layer: Any, v: _Value, path: str) -> _Value:
        W = self.const(np.asarray(layer.W, dtype=self.dtype), "W")
        if layer.b is None:
            h = self.op("MatMul", v.h, W)
        else:
            h = self.op("Gemm", v.h, W, self.const(np.asarray(layer.b, dtype=self.dtype), "b"))
        WT = np.asarray(transposed(layer.W), dtype=self.dtype)
        if v.t is None:
            t = self.op("Expand", self.const(WT[None], "WT"), self.batch_shape(layer.d_out, self.d_in))
        else:
            t = self.op("MatMul", self.const(WT, "WT"), v.t)
        lap = None if v.lap is None else self.op("MatMul", v.lap, W)
        return _Value(h, t, layer.d_out, lap)

    def _scaled(self, v: _Value, h: str, fprime: str, fsecond: Callable[[], Optional[str]] = lambda: None) -> _Value:
        """An elementwise layer: ``t' = f' t`` and, if asked for, ``lap' = f' lap + f'' sum_k t_k**2``."""
        lap = None
        if self.laplacian:
            second = fsecond()
            first = None if v.lap is None else self.op("Mul", fprime, v.lap)
            lap = self.plus(first, None if second is None else self.op("Mul", second, self.square_sum(v)))
        return _Value(h, self.op("Mul", self.tangent(v), self.unsqueeze(fprime, 2)), v.width, lap)

    def relu(self, layer: Any, v: _Value, path: str) -> _Value:
        positive = self.op("Greater", v.h, 0.0)
        fprime = self.op("Cast", positive, to=self.onnx.helper.np_dtype_to_tensor_dtype(self.dtype))
        return self._scaled(v, self.op("Relu", v.h), fprime)

    def identity(self, layer: Any, v: _Value, path: str) -> _Value:
        return _Value(self.op("Identity", v.h), v.t, v.width, v.lap)

    def sigmoid(self, layer: Any, v: _Value, path: str) -> _Value:
        s, _, fprime = self.sigmoid_parts(v.h)
        # f'' = f' (1 - 2 s) = -f' tanh(x / 2)
        return self._scaled(v, s, fprime, lambda: self.op("Mul", fprime, self.op("Neg", self.op(
            "Tanh", self.op("Mul", v.h, 0.5)))))

    def tanh(self, layer: Any, v: _Value, path: str) -> _Value:
        e = self.op("Exp", self.op("Neg", self.op("Abs", v.h)))
        e2 = self.op("Mul", e, e)  # exp(-2|x|) without forming 2|x|
        denominator = self.op("Add", e2, 1.0)
        fprime = self.op("Div", self.op("Mul", e2, 4.0), self.op("Mul", denominator, denominator))
        y = self.op("Tanh", v.h)
        return self._scaled(v, y, fprime, lambda: self.op("Mul", self.op("Mul", y, fprime), -2.0))

    def softplus(self, layer: Any, v: _Value, path: str) -> _Value:
        e = self.op("Exp", self.op("Neg", self.op("Abs", v.h)))
        y = self.op("Add", self.op("Relu", v.h), self.log1p(e))
        s, _, s_prime = self.sigmoid_parts(v.h)
        return self._scaled(v, y, s, lambda: s_prime)

    def leaky_relu(self, layer: Any, v: _Value, path: str) -> _Value:
        alpha = float(layer.alpha)
        y = self.where_positive(v.h, v.h, self.op("Mul", v.h, alpha))
        return self._scaled(v, y, self.where_positive(v.h, 1.0, alpha))

    def elu(self, layer: Any, v: _Value, path: str) -> _Value:
        alpha = float(layer.alpha)
        m = self.op("Min", v.h, 0.0)
        y = self.where_positive(v.h, v.h, self.op("Mul", self.expm1(m), alpha))
        left = self.op("Mul", self.op("Exp", m), alpha)
        fprime = self.where_positive(v.h, 1.0, left)
        return self._scaled(v, y, fprime, lambda: self.where_positive(v.h, 0.0, left))

    def gelu(self, layer: Any, v: _Value, path: str) -> _Value:
        cdf = self.normal_cdf(v.h)
        y = self.op("Mul", self.op("Max", v.h, -40.0), cdf)
        xc = self.op("Clip", v.h, -40.0, 40.0)  # the density underflows beyond
        density = self.op("Mul", self.op("Exp", self.op("Mul", self.op("Mul", xc, xc), -0.5)),
                          1 / math.sqrt(2 * math.pi))
        fprime = self.op("Add", cdf, self.op("Mul", xc, density))
        return self._scaled(v, y, fprime, lambda: self.op("Mul", density, self.op("Sub", 2.0, self.op("Mul", xc, xc))))

    def silu(self, layer: Any, v: _Value, path: str) -> _Value:
        big = float(np.finfo(self.dtype).max)
        xf = self.op("Clip", v.h, -big, big)
        s, _, s_prime = self.sigmoid_parts(v.h)

        def fsecond() -> str:  # s(x) s(-x) (2 - x tanh(x / 2))
            x_tanh = self.op("Mul", xf, self.op("Tanh", self.op("Mul", xf, 0.5)))
            return self.op("Mul", s_prime, self.op("Sub", 2.0, x_tanh))

        return self._scaled(v, self.op("Mul", xf, s), self.op("Add", s, self.op("Mul", xf, s_prime)), fsecond)

    def sin(self, layer: Any, v: _Value, path: str) -> _Value:
        y = self.op("Sin", v.h)
        return self._scaled(v, y, self.op("Cos", v.h), lambda: self.op("Neg", y))

    def softmax(self, layer: Any, v: _Value, path: str) -> _Value:
        s = self.op("Softmax", v.h, axis=-1)
        t = self.tangent(v)
        mean = self.op("MatMul", self.unsqueeze(s, 1), t)  # (n, 1, d_in): sum_i s_i t_i
        centred = self.op("Sub", t, mean)
        lap = None
        if self.laplacian:  # D^2 s[u, u] = s (w - <s, w>) with w = (u - <s, u>)**2; plus J lap
            total = self.plus(v.lap, self.square_sum(_Value(v.h, centred, v.width)))
            assert total is not None
            lap = self.op("Mul", s, self.op("Sub", total, self.weighted_sum(s, total)))
        return _Value(s, self.op("Mul", self.unsqueeze(s, 2), centred), v.width, lap)

    def log_softmax(self, layer: Any, v: _Value, path: str) -> _Value:
        y = self.op("LogSoftmax", v.h, axis=-1)
        t = self.tangent(v)
        s = self.op("Exp", y)
        mean = self.op("MatMul", self.unsqueeze(s, 1), t)
        centred = self.op("Sub", t, mean)
        lap = None
        if self.laplacian:  # D^2 y[u, u] = -<s, (u - <s, u>)**2>, the same for every output; plus J lap
            total = self.plus(v.lap, self.square_sum(_Value(v.h, centred, v.width)))
            assert total is not None
            lap = self.op("Sub", v.lap if v.lap is not None else 0.0, self.weighted_sum(s, total))
            if v.lap is None:
                lap = self.op("Expand", lap, self.batch_shape(v.width))
        return _Value(y, centred, v.width, lap)

    def layer_norm(self, layer: Any, v: _Value, path: str) -> _Value:
        centred = self.op("Sub", v.h, self.op("ReduceMean", v.h, axes=[-1], keepdims=1))
        variance = self.op("ReduceMean", self.op("Mul", centred, centred), axes=[-1], keepdims=1)
        sigma = self.op("Sqrt", self.op("Add", variance, float(layer.eps)))
        normal = self.op("Div", centred, sigma)
        t = self.tangent(v)
        mean_t = self.op("ReduceMean", t, axes=[1], keepdims=1)
        mean_yt = self.op("Div", self.op("MatMul", self.unsqueeze(normal, 1), t), float(v.width))
        dt = self.op("Sub", self.op("Sub", t, mean_t), self.op("Mul", self.unsqueeze(normal, 2), mean_yt))
        dt = self.op("Div", dt, self.unsqueeze(sigma, 2))
        lap = self._layer_norm_laplacian(v, t, mean_t, mean_yt, normal, sigma) if self.laplacian else None
        y = normal
        if layer.weight is not None:
            weight = np.asarray(layer.weight, dtype=self.dtype)
            y = self.op("Mul", y, self.const(weight, "ln_weight"))
            dt = self.op("Mul", dt, self.const(weight[:, None], "ln_weight_column"))
            lap = None if lap is None else self.op("Mul", lap, self.const(weight, "ln_weight"))
        if layer.bias is not None:
            y = self.op("Add", y, self.const(np.asarray(layer.bias, dtype=self.dtype), "ln_bias"))
        return _Value(y, dt, v.width, lap)

    def _layer_norm_laplacian(self, v: _Value, t: str, mean_t: str, mean_yt: str, h: str, sigma: str) -> str:
        """``Dh[lap] + sum_k D^2 h[t_k, t_k]`` of the normalised ``h`` (before the weight).

        With ``r = 1 / sigma``, ``c_k = t_k - mean(t_k)`` and ``a_k = h . t_k``:
        ``Dh[u] = r (P u - h (h . u) / d)`` and
        ``sum_k D^2 h[t_k, t_k] = -(r**2 / d) (2 sum_k a_k c_k + h sum_k |c_k|**2 - 3 h sum_k a_k**2 / d)``.
        """
        d = float(v.width)
        r = self.op("Reciprocal", sigma)
        c = self.op("Sub", t, mean_t)  # (n, w, d_in)
        a = self.op("Mul", mean_yt, d)  # (n, 1, d_in)
        cross = self.op("ReduceSum", self.op("Mul", c, a), self.const([2], "axes", np.int64), keepdims=0)
        c2 = self.op("ReduceSum", self.op("Mul", c, c), self.const([1, 2], "axes", np.int64), keepdims=0)
        a2 = self.op("ReduceSum", self.op("Mul", a, a), self.const([1, 2], "axes", np.int64), keepdims=0)
        inner = self.op("Sub", self.unsqueeze(c2, 1), self.op("Mul", self.unsqueeze(a2, 1), 3 / d))
        second = self.op("Add", self.op("Mul", cross, 2.0), self.op("Mul", h, inner))
        lap = self.op("Mul", second, self.op("Div", self.op("Mul", r, r), -d))
        if v.lap is not None:
            centred = self.op("Sub", v.lap, self.op("ReduceMean", v.lap, axes=[-1], keepdims=1))
            projected = self.op("Sub", centred, self.op("Mul", h, self.op("Div", self.weighted_sum(h, v.lap), d)))
            lap = self.op("Add", lap, self.op("Mul", projected, r))
        return lap

    def residual(self, layer: Any, v: _Value, path: str) -> _Value:
        out = self.emit(layer.block, v, f"{path} > block")
        scale = float(layer.scale)
        h, t, lap = out.h, self.full_tangent(out), out.lap
        if scale != 1:
            h, t = self.op("Mul", h, scale), self.op("Mul", t, scale)
            lap = None if lap is None else self.op("Mul", lap, scale)
        return _Value(self.op("Add", v.h, h), self.op("Add", self.tangent(v), t), v.width, self.plus(v.lap, lap))

    def parallel(self, layer: Any, v: _Value, path: str) -> _Value:
        outputs = [self.emit(branch, v, f"{path} > branch {i}") for i, branch in enumerate(layer.branches)]
        h = self.op("Concat", *(o.h for o in outputs), axis=1)
        t = self.op("Concat", *(self.full_tangent(o) for o in outputs), axis=1)
        lap = None
        if any(o.lap is not None for o in outputs):
            lap = self.op("Concat", *(self.zeros(o.width) if o.lap is None else o.lap for o in outputs), axis=1)
        return _Value(h, t, sum(o.width for o in outputs), lap)


@functools.lru_cache(maxsize=None)
def _erfc_chebyshev(degree: int = 24) -> tuple[float, ...]:
    """Chebyshev coefficients of ``g(u) = log(erfc(z) / t)`` with ``t = 2 / (2 + z) = (u + 1) / 2``.

    ``erfc(z) = t exp(-z**2 + g(u))`` for ``z >= 0``.  ``g`` is smooth on
    ``[-1, 1]`` (``u = -1`` is ``z = inf``, where ``erfcx(z) / t`` tends to
    ``1 / (2 sqrt(pi))``); 25 terms reach about 2e-15 relative for ``z < 3``, where
    the rounding of ``z**2`` starts to dominate.
    """

    def g(u: Any) -> Any:
        t = (u + 1) / 2
        safe = np.where(t > 0, t, 1.0)
        z = 2 / safe - 2
        return np.where(t > 0, np.log(erfcx(z) / safe), math.log(0.5 / math.sqrt(math.pi)))

    return tuple(float(c) for c in chebyshev.chebinterpolate(g, degree))


def build(net: Any, onnx: Any, laplacian: bool = False) -> Any:
    """The ``onnx.ModelProto`` computing ``y`` and ``J`` (and ``L``, the Laplacian of ``y``, if asked for)."""
    network = as_network(net, "to_onnx")
    assert network.d_in is not None and network.d_out is not None  # as_network checked
    dtype = network_dtype(network)
    writer = OnnxWriter(onnx, dtype, network.d_in, laplacian)
    writer._names.update({"x", "y", "J", "L"})
    result = writer.emit(network, _Value("x", None, network.d_in), "")
    helper = onnx.helper
    writer.nodes.append(helper.make_node("Identity", [result.h], ["y"], name="output_y"))
    writer.nodes.append(helper.make_node("Identity", [writer.full_tangent(result)], ["J"], name="output_J"))
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    outputs = [
        helper.make_tensor_value_info("y", elem, ["n", network.d_out]),
        helper.make_tensor_value_info("J", elem, ["n", network.d_out, network.d_in]),
    ]
    if laplacian:
        lap = result.lap if result.lap is not None else writer.zeros(network.d_out)
        writer.nodes.append(helper.make_node("Identity", [lap], ["L"], name="output_L"))
        outputs.append(helper.make_tensor_value_info("L", elem, ["n", network.d_out]))
    graph = helper.make_graph(
        writer.nodes,
        "jacobian_np",
        [helper.make_tensor_value_info("x", elem, ["n", network.d_in])],
        outputs,
        initializer=writer.initializers,
    )
    model = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="jacobian_np",
        doc_string=f"y and J = dy/dx of {network!r}",
    )
    onnx.checker.check_model(model)
    return model
