"""C99 source for a network's value and Jacobian: the code generator behind :func:`~jacobian_np.to_c`.

The generated function loops over the ``n`` points and, for each, carries the
value ``h`` (width ``w``) and its Jacobian ``t = dh/dx`` (``w`` rows of ``d_in``)
through the layers in forward mode, starting from ``x`` and the identity.  Each
layer kind is one small ``static`` helper, emitted only when the network uses it.
Buffers live on the stack: a pool of slots, each as large as the widest value it
ever holds, reused once a value is dead, so a chain needs two slots however deep
it is.  Weights are ``static const double`` arrays printed with 17 significant
digits, which read back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._export_walk import LayerWalk, as_network, transposed
from .network import Network

#: The static helper functions, by name: C source with no dependencies beyond <math.h> and <float.h>.
#: ``t`` arguments may be NULL, meaning the identity (the Jacobian of the input itself).
_HELPERS = {
    "tangent": """
/* t[j, k] of a Jacobian that may be the identity (t == NULL) */
static double jnp_tangent(const double *t, long j, long k, long d)
{
    return t ? t[j * d + k] : (double)(j == k);
}
""",
    "affine": """
/* y = W h + b (W row-major, w_out x w_in), t_out = W t */
static void jnp_affine(long w_in, long w_out, long d, const double *W, const double *b,
                       const double *h, const double *t, double *y, double *t_out)
{
    long i, j, k;
    for (j = 0; j < w_out; ++j) {
        const double *row = W + j * w_in;
        double *out = t_out + j * d;
        double acc = b ? b[j] : 0.0;
        for (i = 0; i < w_in; ++i) {
            acc += row[i] * h[i];
        }
        y[j] = acc;
        if (!t) {
            for (k = 0; k < d; ++k) {
                out[k] = row[k];
            }
            continue;
        }
        for (k = 0; k < d; ++k) {
            out[k] = 0.0;
        }
        for (i = 0; i < w_in; ++i) {
            const double wji = row[i];
            const double *in = t + i * d;
            for (k = 0; k < d; ++k) {
                out[k] += wji * in[k];
            }
        }
    }
}
""",
    "scale_rows": """
/* t_out = diag(f) t: an elementwise layer's Jacobian applied to t */
static void jnp_scale_rows(long w, long d, const double *f, const double *t, double *t_out)
{
    long j, k;
    for (j = 0; j < w; ++j) {
        for (k = 0; k < d; ++k) {
            t_out[j * d + k] = f[j] * jnp_tangent(t, j, k, d);
        }
    }
}
""",
    "softmax": """
/* y = softmax(h); t_out[j] = y_j (t[j] - sum_i y_i t[i]) */
static void jnp_softmax(long w, long d, const double *h, const double *t, double *y, double *t_out)
{
    long i, j, k;
    double top = h[0], total = 0.0;
    for (j = 1; j < w; ++j) {
        top = h[j] > top ? h[j] : top;
    }
    for (j = 0; j < w; ++j) {
        y[j] = exp(h[j] - top);
        total += y[j];
    }
    for (j = 0; j < w; ++j) {
        y[j] /= total;
    }
    for (k = 0; k < d; ++k) {
        double mean = 0.0;
        for (i = 0; i < w; ++i) {
            mean += y[i] * jnp_tangent(t, i, k, d);
        }
        for (j = 0; j < w; ++j) {
            t_out[j * d + k] = y[j] * (jnp_tangent(t, j, k, d) - mean);
        }
    }
}
""",
    "log_softmax": """
/* y = h - max - log1p(sum of the other exp(h_i - max)); t_out[j] = t[j] - sum_i s_i t[i], s = exp(y) */
static void jnp_log_softmax(long w, long d, const double *h, const double *t, double *y, double *t_out,
                            double *s)
{
    long i, j, k, top = 0;
    double rest = 0.0;
    for (j = 1; j < w; ++j) {
        top = h[j] > h[top] ? j : top;
    }
    for (j = 0; j < w; ++j) {
        y[j] = h[j] - h[top];
        s[j] = exp(y[j]);
        rest += j == top ? 0.0 : s[j];
    }
    for (j = 0; j < w; ++j) {
        y[j] -= log1p(rest);
        s[j] /= 1.0 + rest;
    }
    for (k = 0; k < d; ++k) {
        double mean = 0.0;
        for (i = 0; i < w; ++i) {
            mean += s[i] * jnp_tangent(t, i, k, d);
        }
        for (j = 0; j < w; ++j) {
            t_out[j * d + k] = jnp_tangent(t, j, k, d) - mean;
        }
    }
}
""",
    "layer_norm": """
/* y = (h - mean) / sqrt(var + eps) * weight + bias (biased variance) and its Jacobian applied to t */
static void jnp_layer_norm(long w, long d, double eps, const double *weight, const double *bias,
                           const double *h, const double *t, double *y, double *t_out)
{
    long i, j, k;
    double mean = 0.0, var = 0.0, sigma;
    for (j = 0; j < w; ++j) {
        mean += h[j];
    }
    mean /= (double)w;
    for (j = 0; j < w; ++j) {
        y[j] = h[j] - mean;
        var += y[j] * y[j];
    }
    sigma = sqrt(var / (double)w + eps);
    for (j = 0; j < w; ++j) {
        y[j] /= sigma; /* the normalised value, scaled below */
    }
    for (k = 0; k < d; ++k) {
        double mean_t = 0.0, mean_yt = 0.0;
        for (i = 0; i < w; ++i) {
            const double ti = jnp_tangent(t, i, k, d);
            mean_t += ti;
            mean_yt += y[i] * ti;
        }
        mean_t /= (double)w;
        mean_yt /= (double)w;
        for (j = 0; j < w; ++j) {
            const double g = weight ? weight[j] : 1.0;
            t_out[j * d + k] = g * (jnp_tangent(t, j, k, d) - mean_t - y[j] * mean_yt) / sigma;
        }
    }
    for (j = 0; j < w; ++j) {
        y[j] = y[j] * (weight ? weight[j] : 1.0) + (bias ? bias[j] : 0.0);
    }
}
""",
    "residual": """
/* the block's output (y, t_out) becomes h + scale y and t + scale t_out, in place */
static void jnp_residual(long w, long d, double scale, const double *h, const double *t, double *y,
                         double *t_out)
{
    long j, k;
    for (j = 0; j < w; ++j) {
        y[j] = h[j] + scale * y[j];
        for (k = 0; k < d; ++k) {
            t_out[j * d + k] = jnp_tangent(t, j, k, d) + scale * t_out[j * d + k];
        }
    }
}
""",
    "copy": """
/* copy w values and their Jacobian rows to y and t_out */
static void jnp_copy(long w, long d, const double *h, const double *t, double *y, double *t_out)
{
    long j, k;
    for (j = 0; j < w; ++j) {
        y[j] = h[j];
        for (k = 0; k < d; ++k) {
            t_out[j * d + k] = jnp_tangent(t, j, k, d);
        }
    }
}
""",
    "sigmoid_terms": """
/* e = exp(-|x|); s(|x|) = 1 / (1 + e) and s(-|x|) = e / (1 + e), both without cancellation */
static double jnp_logistic(double x)
{
    const double e = exp(-fabs(x));
    return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}
""",
}

#: Elementwise activations: C statements setting ``y`` (f) and ``f`` (f') from ``x``;
#: ``alpha`` is the layer's parameter.  The same formulas as jacobian_np.activations.
_ACTIVATIONS = {
    "relu": ("", "y = x > 0 ? x : (x <= 0 ? 0.0 : x);\n        f = x > 0 ? 1.0 : (x <= 0 ? 0.0 : x);"),
    "identity": ("", "y = x;\n        f = 1.0;"),
    "sigmoid": (
        "sigmoid_terms",
        "const double e = exp(-fabs(x));\n"
        "        y = jnp_logistic(x);\n"
        "        f = e / ((1.0 + e) * (1.0 + e)); /* s(x) s(-x) */",
    ),
    "tanh": (
        "",
        "double e = exp(-fabs(x));\n"
        "        e *= e; /* exp(-2|x|) without forming 2|x| */\n"
        "        y = tanh(x);\n"
        "        f = 4.0 * e / ((1.0 + e) * (1.0 + e)); /* 1 / cosh(x)^2 */",
    ),
    "softplus": (
        "sigmoid_terms",
        "y = (x > 0 ? x : 0.0) + log1p(exp(-fabs(x)));\n        f = jnp_logistic(x);",
    ),
    "leaky_relu": (
        "",
        "y = x > 0 ? x : alpha * x;\n        f = x > 0 ? 1.0 : (x <= 0 ? alpha : x);",
    ),
    "elu": (
        "",
        "y = x > 0 ? x : alpha * expm1(x);\n        f = x > 0 ? 1.0 : alpha * exp(x);",
    ),
    "gelu": (
        "",
        "const double xc = x < -40.0 ? -40.0 : (x > 40.0 ? 40.0 : x); /* the density underflows beyond */\n"
        "        const double cdf = 0.5 * erfc(-x * 0.70710678118654752440); /* Phi(x) */\n"
        "        y = (x < -40.0 ? -40.0 : x) * cdf;\n"
        "        f = cdf + xc * exp(-0.5 * xc * xc) * 0.39894228040143267794;",
    ),
    "silu": (
        "sigmoid_terms",
        "const double xf = x < -DBL_MAX ? -DBL_MAX : (x > DBL_MAX ? DBL_MAX : x);\n"
        "        const double s = jnp_logistic(x);\n"
        "        y = xf * s;\n"
        "        f = s + xf * s * jnp_logistic(-x);",
    ),
    "sin": ("", "y = sin(x);\n        f = cos(x);"),
}


@dataclass(eq=False)
class _Value:
    """A value and its Jacobian in the generated code: C expressions for ``h`` and ``t``."""

    h: str
    t: str  # "NULL" for the identity
    width: int
    slot: Optional[int] = None  # the buffer slot holding it; None for the input x


class CWriter(LayerWalk[_Value]):
    """Generates the body of ``NAME_forward_jacobian`` layer by layer."""

    owner = "to_c"

    def __init__(self, name: str, d_in: int) -> None:
        self.name = name
        self.d = f"{name.upper()}_D_IN"
        self.d_in = d_in
        self.lines: list[str] = []
        self.constants: list[str] = []
        self.helpers: list[str] = []
        self.slots: list[int] = []  # the width of each slot's h; t holds width * d_in
        self.free: list[int] = []
        self.scratch = 0  # width of the scratch vector for f' and softmax weights

    # --- buffers and constants -----------------------------------------------------

    def alloc(self, width: int) -> _Value:
        slot = min(self.free, key=lambda s: abs(self.slots[s] - width), default=None)
        if slot is None:
            slot = len(self.slots)
            self.slots.append(width)
        else:
            self.free.remove(slot)
            self.slots[slot] = max(self.slots[slot], width)
        return _Value(f"h{slot}", f"t{slot}", width, slot)

    def release(self, value: _Value) -> None:
        if value.slot is not None:
            self.free.append(value.slot)

    def helper(self, name: str) -> None:
        if name not in self.helpers:
            if name not in ("tangent", "sigmoid_terms", "affine"):
                self.helper("tangent")
            self.helpers.append(name)

    def array(self, prefix: str, values: Any) -> str:
        flat = np.asarray(values, dtype=np.float64).ravel()
        name = f"{prefix}{len(self.constants)}"
        body = ",\n    ".join(
            ", ".join(_literal(v) for v in flat[i:i + 4]) for i in range(0, flat.size, 4)
        )
        self.constants.append(f"static const double {name}[{flat.size}] = {{\n    {body}\n}};")
        return name

    def call(self, text: str) -> None:
        self.lines.append(f"        {text}")

    # --- layers ----------------------------------------------------------------------

    def affine(self, layer: Any, v: _Value, path: str) -> _Value:
        self.helper("affine")
        out = self.alloc(layer.d_out)
        W = self.array("W", transposed(layer.W))
        b = "NULL" if layer.b is None else self.array("b", layer.b)
        self.call(
            f"jnp_affine({layer.d_in}, {layer.d_out}, {self.d}, {W}, {b}, {v.h}, {v.t}, {out.h}, {out.t}); "
            f"/* {path} */"
        )
        return out

    def _activation(self, kind: str, layer: Any, v: _Value, path: str) -> _Value:
        needs, _ = _ACTIVATIONS[kind]
        if needs:
            self.helper(needs)
        self.helper("scale_rows")
        function = f"jnp_layer_{kind}"
        if function not in self.helpers:
            self.helpers.append(function)
        out = self.alloc(v.width)
        self.scratch = max(self.scratch, v.width)
        alpha = f", {_literal(layer.alpha)}" if kind in ("leaky_relu", "elu") else ""
        self.call(f"{function}({v.width}, {v.h}, {out.h}, f{alpha}); /* {path} */")
        self.call(f"jnp_scale_rows({v.width}, {self.d}, f, {v.t}, {out.t});")
        return out

    def relu(self, layer: Any, v: _Value, path: str) -> _Value:
        return self._activation("relu", layer, v, path)

    def identity(self, layer: Any, v: _Value, path: str) -> _Value:
        return self._activation("identity", layer, v, path)

    def sigmoid(self, layer: Any, v: _Value, path: str) -> _Value:
        return self._activation("sigmoid", layer, v, path)

    def tanh(self, layer: Any, v: _Value, path: str) -> _Value:
        return self._activation("tanh", layer, v, path)

    def softplus(self, layer: Any, v: _Value, path: str) -> _Value:
        return self._activation("softplus", layer, v, path)

    def leaky_relu(self, layer: Any, v: _Value, path: str) -> _Value:
        return self._activation("leaky_relu", layer, v, path)

    def elu(self, layer: Any, v: _Value, path: str) -> _Value:
        return self._activation("elu", layer, v, path)

    def gelu(self, layer: Any, v: _Value, path: str) -> _Value:
        return self._activation("gelu", layer, v, path)

    def silu(self, layer: Any, v: _Value, path: str) -> _Value:
        return self._activation("silu", layer, v, path)

    def sin(self, layer: Any, v: _Value, path: str) -> _Value:
        return self._activation("sin", layer, v, path)

    def softmax(self, layer: Any, v: _Value, path: str) -> _Value:
        self.helper("softmax")
        out = self.alloc(v.width)
        self.call(f"jnp_softmax({v.width}, {self.d}, {v.h}, {v.t}, {out.h}, {out.t}); /* {path} */")
        return out

    def log_softmax(self, layer: Any, v: _Value, path: str) -> _Value:
        self.helper("log_softmax")
        out = self.alloc(v.width)
        self.scratch = max(self.scratch, v.width)
        self.call(f"jnp_log_softmax({v.width}, {self.d}, {v.h}, {v.t}, {out.h}, {out.t}, f); /* {path} */")
        return out

    def layer_norm(self, layer: Any, v: _Value, path: str) -> _Value:
        self.helper("layer_norm")
        out = self.alloc(v.width)
        weight = "NULL" if layer.weight is None else self.array("g", layer.weight)
        bias = "NULL" if layer.bias is None else self.array("b", layer.bias)
        self.call(
            f"jnp_layer_norm({v.width}, {self.d}, {_literal(layer.eps)}, {weight}, {bias}, "
            f"{v.h}, {v.t}, {out.h}, {out.t}); /* {path} */"
        )
        return out

    def residual(self, layer: Any, v: _Value, path: str) -> _Value:
        self.helper("residual")
        out = self.emit(layer.block, v, f"{path} > block")
        self.call(
            f"jnp_residual({v.width}, {self.d}, {_literal(layer.scale)}, {v.h}, {v.t}, {out.h}, {out.t}); "
            f"/* {path}: x + scale * block(x) */"
        )
        return out

    def parallel(self, layer: Any, v: _Value, path: str) -> _Value:
        self.helper("copy")
        outputs = []
        for index, branch in enumerate(layer.branches):
            outputs.append(self.emit(branch, v, f"{path} > branch {index}"))
        out = self.alloc(sum(o.width for o in outputs))
        offset = 0
        for index, o in enumerate(outputs):
            self.call(
                f"jnp_copy({o.width}, {self.d}, {o.h}, {o.t}, {out.h} + {offset}, {out.t} + {offset} * {self.d}); "
                f"/* {path}: concatenate branch {index} */"
            )
            offset += o.width
            self.release(o)
        return out

    # --- the files -------------------------------------------------------------------

    def function(self, network: Network) -> str:
        x = _Value("xi", "NULL", self.d_in)
        result = self.emit(network, x, "")
        self.helper("copy")
        out_d = f"{self.name.upper()}_D_OUT"
        self.call(f"jnp_copy({out_d}, {self.d}, {result.h}, {result.t}, y + i * {out_d}, J + i * {out_d} * {self.d});")
        declarations = [f"    double h{s}[{w}], t{s}[{w} * {self.d}];" for s, w in enumerate(self.slots)]
        if self.scratch:
            declarations.append(f"    double f[{self.scratch}];")
        return "\n".join(
            [
                f"int {self.name}_forward_jacobian(long n, const double *x, double *y, double *J)",
                "{",
                *declarations,
                "    long i;",
                "    if (n < 0 || (n > 0 && (!x || !y || !J))) {",
                "        return -1;",
                "    }",
                "    for (i = 0; i < n; ++i) {",
                f"        const double *xi = x + i * {self.d};",
                *self.lines,
                "    }",
                "    return 0;",
                "}",
            ]
        )

    def stack_bytes(self) -> int:
        """The bytes of the function's buffers: every slot's value and Jacobian, and the scratch vector."""
        return 8 * (sum(w * (1 + self.d_in) for w in self.slots) + self.scratch)

    def helper_source(self) -> str:
        parts = []
        for name in self.helpers:
            if name.startswith("jnp_layer_"):
                kind = name[len("jnp_layer_"):]
                alpha = ", double alpha" if kind in ("leaky_relu", "elu") else ""
                _, body = _ACTIVATIONS[kind]
                parts.append(
                    f"\n/* {kind}: y = f(x), f = f'(x) */\n"
                    f"static void {name}(long w, const double *h, double *out, double *fprime{alpha})\n"
                    "{\n"
                    "    long j;\n"
                    "    for (j = 0; j < w; ++j) {\n"
                    "        const double x = h[j];\n"
                    "        double y, f;\n"
                    f"        {body}\n"
                    "        out[j] = y;\n"
                    "        fprime[j] = f;\n"
                    "    }\n"
                    "}\n"
                )
            else:
                parts.append(_HELPERS[name])
        return "".join(parts)


def _literal(value: float) -> str:
    """A C double literal that reads back as exactly ``value``."""
    text = repr(float(value))
    return text if any(c in text for c in ".en") else text + ".0"


def generate(net: Any, name: str) -> tuple[str, str]:
    """``(header, source)`` texts for ``name.h`` and ``name.c``."""
    network = as_network(net, "to_c")
    assert network.d_in is not None and network.d_out is not None  # as_network checked
    writer = CWriter(name, network.d_in)
    function = writer.function(network)
    guard = f"{name.upper()}_H"
    macro = name.upper()
    header = "\n".join(
        [
            f"/* {name}.h: the value and input Jacobian of a network exported by jacobian_np.to_c. */",
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            f"#define {macro}_D_IN {network.d_in}",
            f"#define {macro}_D_OUT {network.d_out}",
            "/* the stack the function's buffers take, in bytes (no other memory is allocated) */",
            f"#define {macro}_STACK_BYTES {writer.stack_bytes()}",
            "",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "",
            f"/* For each of the n points x[i] (row-major x[n][{macro}_D_IN]), writes the output",
            f"   y[i] (y[n][{macro}_D_OUT]) and the Jacobian J[i][j][k] = d y[i][j] / d x[i][k]",
            f"   (J[n][{macro}_D_OUT][{macro}_D_IN]).  Returns 0, or -1 if n < 0 or a pointer is NULL.",
            "   No allocation: the buffers are on the stack.  Thread-safe. */",
            f"int {name}_forward_jacobian(long n, const double *x, double *y, double *J);",
            "",
            "#ifdef __cplusplus",
            "}",
            "#endif",
            "",
            f"#endif /* {guard} */",
            "",
        ]
    )
    source = "\n".join(
        [
            f"/* {name}.c: generated by jacobian_np.to_c from",
            f"   {repr(network)[:2000].replace('*/', '* /')}",
            "   Plain C99: compile with  cc -std=c99 -c {name}.c  and link with -lm. */".replace("{name}", name),
            f'#include "{name}.h"',
            "",
            "#include <float.h>",
            "#include <math.h>",
            "#include <stddef.h>",
            "",
            *writer.constants,
            writer.helper_source(),
            function,
            "",
        ]
    )
    return header, source
