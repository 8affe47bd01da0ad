"""Activation layers.

Elementwise activations supply ``f``, ``fprime`` (f') and ``fsecond`` (f'') side by
side; the shared :class:`~jacobian_np.Elementwise` base does the broadcasting.
Derivatives use forms that neither overflow nor warn for any finite input (in
particular at ``|x| = 1e4``) and keep full relative accuracy in the tails
(``sigmoid'(40)`` is about ``4.2e-18``, not 0).  Each class's Notes give f, f' and
f''; ``docs/layers.md`` has the derivations.

The formulas use Python-float constants only, so float32 inputs give float32
results, and never write into their inputs (in-place operations act on freshly
allocated temporaries).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional

import numpy as np
from scipy.special import expit, ndtr

from ._typing import Array, Cache
from ._validation import as_finite_real
from ._blocks import diagonal_view
from ._steps import fused
from .layer import Elementwise, Layer


class ReLU(Elementwise):
    """Rectified linear unit, ``f(x) = max(x, 0)``.

    See Also
    --------
    LeakyReLU : a slope ``alpha`` instead of 0 for ``x <= 0``, so the derivative is nonzero there.
    ELU, GELU, SiLU : curved alternatives, with nonzero second derivatives.
    Softplus : a smooth ReLU, ``log(1 + exp(x))``.
    ZeroCurvatureWarning : why a ReLU network's Hessian and Laplacian are zero.

    Notes
    -----
    ``f'(x) = 1`` for ``x > 0`` and ``0`` for ``x <= 0``: the derivative at the kink
    is taken to be 0, as in PyTorch and JAX.  ``f'(NaN)`` is NaN, so a NaN input
    shows up in its own row of the Jacobian instead of looking like a zero
    derivative.  ``f''(x) = 0`` (the kink's Dirac delta is ignored).

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import ReLU
    >>> y, cache = ReLU().forward(np.array([-1.0, 0.0, 2.0]))
    >>> y
    array([0., 0., 2.])
    >>> ReLU().jacobian(y, cache)
    array([[0., 0., 0.],
           [0., 0., 0.],
           [0., 0., 1.]])
    """

    piecewise_linear = True

    def f(self, x: Array) -> Array:
        return np.maximum(x, 0)

    def fprime(self, x: Array, y: Array) -> Array:
        return np.heaviside(x, 0)

    def fsecond(self, x: Array, y: Array) -> Array:
        return np.zeros_like(x)

    @fused("fprime", "fsecond")
    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        return _piecewise_linear_derivatives(self.fprime(x, y), order)


class Sigmoid(Elementwise):
    """Logistic sigmoid, ``f(x) = 1 / (1 + exp(-x))``.

    See Also
    --------
    Tanh : the same curve centred at 0, ``tanh(x) = 2 s(2 x) - 1``.
    SiLU : the sigmoid as a gate, ``x * s(x)``.
    Softplus : its antiderivative: ``softplus' = s``.
    Softmax : the generalisation to several classes, ``softmax([x, 0])[0] = s(x)``.

    Notes
    -----
    ``f'(x) = f(x) f(-x)``: both factors are computed accurately by ``expit``
    and only multiplied, so the result keeps full relative accuracy in the tails.
    The common ``s * (1 - s)`` returns 0 for ``x > 37`` because ``1 - s`` rounds
    to 0.

    ``f''(x) = f'(x) (1 - 2 f(x)) = -f'(x) tanh(x / 2)``, using
    ``1 - 2 s(x) = s(-x) - s(x) = -tanh(x / 2)``.  ``tanh`` has full relative
    accuracy everywhere, also near 0 where ``1 - 2 s`` cancels, and is bounded, so
    the product keeps the relative accuracy of ``f'``.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Sigmoid
    >>> layer = Sigmoid()
    >>> y, cache = layer.forward(np.array([0.0, 40.0]))
    >>> y
    array([0.5, 1. ])
    >>> d = np.diagonal(layer.jacobian(y, cache))
    >>> print(d[0], np.isclose(d[1], np.exp(-40.0), rtol=1e-15))
    0.25 True
    """

    def f(self, x: Array) -> Array:
        return expit(x)

    def fprime(self, x: Array, y: Array) -> Array:
        return _sigmoid_prime(x, y)

    def fsecond(self, x: Array, y: Array) -> Array:
        return self._fsecond_from(self.fprime(x, y), x)

    @fused("fprime", "fsecond")
    def fprimes(self, x: Array, y: Array) -> tuple[Array, Array]:
        d = self.fprime(x, y)
        return d, self._fsecond_from(d, x)

    @staticmethod
    def _fsecond_from(d: Array, x: Array) -> Array:
        d2 = x * -0.5
        np.tanh(d2, d2)  # -tanh(x/2) = 1 - 2 s(x)
        d2 *= d
        return d2

    @fused("fprime", "fsecond")
    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        return _logistic_derivatives(x, y, order)


class Tanh(Elementwise):
    """Hyperbolic tangent, ``f(x) = tanh(x)``.

    See Also
    --------
    Sigmoid : the same curve on ``(0, 1)``, ``s(x) = (1 + tanh(x / 2)) / 2``.
    Sin : a periodic smooth activation (SIREN).
    Elementwise : the base class; an activation like this one supplies ``f``, ``f'``, ``f''``.

    Notes
    -----
    ``f'(x) = 1 / cosh(x)**2 = 4 e / (1 + e)**2`` with ``e = exp(-2|x|)``: as
    ``e <= 1`` nothing overflows and nothing cancels (within 6 ulp of the exact
    value in float64, 8 in float32).
    The common ``1 - tanh(x)**2`` returns 0 for ``|x| > 19`` and loses relative
    accuracy long before.

    ``f''(x) = -2 tanh(x) f'(x)``: a product of two accurately computed factors,
    so it inherits their relative accuracy.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Tanh
    >>> layer = Tanh()
    >>> y, cache = layer.forward(np.array([0.0, 20.0]))
    >>> d = np.diagonal(layer.jacobian(y, cache))
    >>> print(d[0], np.isclose(d[1], 4 * np.exp(-40.0), rtol=1e-15))
    1.0 True
    """

    def f(self, x: Array) -> Array:
        return np.tanh(x)

    def fprime(self, x: Array, y: Array) -> Array:
        # 4 e / (1 + e)**2 with e = exp(-2|x|) <= 1: nothing overflows, nothing cancels.  The
        # shorter 1 / cosh(x)**2 was tried: within 4.4 ulp on NumPy 2.4, but 6.2 ulp on
        # NumPy 1.24, whose cosh is less accurate (this form: 4.1 there).  In place, one
        # temporary.
        e = np.copysign(x, -1)  # -|x| in one call
        np.exp(e, e)
        np.multiply(e, e, e)  # e = exp(-2|x|) <= 1, without forming 2|x|, which can overflow
        d = e + 1
        np.multiply(d, d, d)
        np.divide(e, d, e)
        np.multiply(e, 4, e)
        return e

    def fsecond(self, x: Array, y: Array) -> Array:
        return self._fsecond_from(self.fprime(x, y), y)

    @fused("fprime", "fsecond")
    def fprimes(self, x: Array, y: Array) -> tuple[Array, Array]:
        d = self.fprime(x, y)
        return d, self._fsecond_from(d, y)

    @staticmethod
    def _fsecond_from(d: Array, y: Array) -> Array:
        d2 = d * y
        d2 *= -2
        return d2

    @fused("fprime", "fsecond")
    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        # f^(k) = sech^2(x) R_k(tanh x): f' accurate as above, R_k(+-1) = (-2)^(k-1) != 0
        if order < 1:
            return []
        sech2 = self.fprime(x, y)
        square = y * y if order > 2 else None
        return [sech2] + [_polyval(_tanh_polynomial(k), y, square=square) * sech2 for k in range(2, order + 1)]


class Softmax(Layer):
    """Softmax over the last axis, ``y_j = exp(x_j) / sum_k exp(x_k)``.

    See Also
    --------
    LogSoftmax : its logarithm, finite where the softmax underflows to 0.
    Sigmoid : the two-class case, ``softmax([x, 0])[0] = s(x)``.
    Layer : the protocol it implements directly: every output depends on every input,
        so it is not :class:`Elementwise`.

    Notes
    -----
    The maximum of each row is subtracted before exponentiating, so large inputs do
    not overflow.  With ``s = softmax(x)`` the Jacobian of one sample is

    ``J = diag(s) - s s^T``, that is ``J[j, k] = s_j (delta_jk - s_k)``,

    and ``backward`` applies it without forming it (``J`` is symmetric, so forward
    mode's ``tangent`` is the same operation):
    ``dx = s * (dy - (dy . s))`` row by row, where ``dy . s`` is the sum over the
    last axis of ``dy * s``.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Softmax
    >>> y, cache = Softmax().forward(np.array([0.0, 0.0]))
    >>> y
    array([0.5, 0.5])
    >>> Softmax().jacobian(y, cache)
    array([[ 0.25, -0.25],
           [-0.25,  0.25]])
    """

    def forward(self, x: Array) -> tuple[Array, Cache]:
        s = x - x.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        return s, s

    def backward(self, dy: Array, cache: Cache) -> Array:
        s = cache[..., None, :]
        dx = dy * s
        dx -= s * dx.sum(axis=-1, keepdims=True)
        return dx

    def tangent(self, dx: Array, cache: Cache) -> Array:
        return self.backward(dx, cache)

    def curvature(self, u: Array, v: Array, cache: Cache) -> Array:
        # D^2 s[u, v] = s * (w - <s, w>) = tangent(w), w = (u - <s, u>) * (v - <s, v>)
        s = cache[..., None, :]
        w = _centred(u, s)
        w *= _centred(v, s)
        return self.tangent(w, cache)

    def tangent_grad(self, w: Array, u: Array, cache: Cache) -> Array:
        # <w, D^2 s[u, v]> = <q, v - <s, v>> with q = (J w) * (u - <s, u>), J symmetric
        s = cache[..., None, :]
        q = self.tangent(w, cache)
        q *= _centred(u, s)
        q -= q.sum(axis=-1, keepdims=True) * s
        return q.sum(axis=-2)

    @fused("backward")
    def jacobian(self, y: Array, cache: Cache) -> Array:
        s = cache
        J = s[..., :, None] * -s[..., None, :]
        diagonal_view(J)[...] += s
        return J

    def taylor(self, series: list[Array], cache: Cache) -> list[Array]:
        # y = E / D with E = s exp(h(t)) and D = sum(E), D_0 = 1: see _softmax_series
        return _softmax_series(cache, series)[0]

    def taylor_vjp(
        self, series: list[Array], grads: list[Array], cache: Cache
    ) -> tuple[Optional[Array], list[Array], list[Array]]:
        # grad x_m = sum_{k >= m} [t^(k-m)] J(t) grads_k with the symmetric J(t) = diag(y(t)) - y(t) y(t)^T:
        # [t^i] J(t) w = y_i * w - sum_{a+b=i} y_a <y_b, w>
        K = len(series)
        if not K:
            return None, [], []
        y = [cache[..., None, :]] + _softmax_series(cache, series)[0]
        dots = [[_dot(y[b], grads[k - 1]) for k in range(1, K + 1)] for b in range(K + 1)]  # dots[b][k-1]
        grad = []
        for m in range(K + 1):
            total: Any = 0
            for k in range(max(m, 1), K + 1):
                term = y[k - m] * grads[k - 1]
                for a in range(k - m + 1):
                    term -= y[a] * dots[k - m - a][k - 1]
                total = total + term
            grad.append(total)
        return grad[0].sum(axis=-2), grad[1:], []


class LogSoftmax(Layer):
    """Logarithm of the softmax over the last axis, ``y_j = x_j - log(sum_k exp(x_k))``.

    See Also
    --------
    Softmax : its exponential, ``exp(y)``, which is also the cache.
    Layer : the protocol it implements directly, as its Jacobian is not diagonal.

    Notes
    -----
    With ``m = x_i = max_k x_k``, the layer computes

    ``y = (x - m) - log1p(r)``,  ``r = sum_{k != i} exp(x_k - m)``:

    every exponent is ``<= 0``, so nothing overflows, and ``1 + r >= 1``, so its
    logarithm is finite.  Taking the logarithm of :class:`Softmax`'s output instead
    would give ``-inf`` wherever the softmax underflows to 0 (``x = [0, -1000]``
    has ``y = [0, -1000]``).  Summing the terms other than the maximum's
    ``exp(0) = 1`` separately and using ``log1p`` keeps the largest output, which is
    close to 0 when one input dominates, accurate relative to its size: for
    ``x = [40, 0]`` it is ``-log1p(exp(-40))``, about ``-4.2e-18``, where
    ``log(sum_k exp(x_k - m))`` rounds to 0.

    With ``s = exp(y) = softmax(x)``, ``d y_j / d x_k = delta_jk - s_k``, so the
    Jacobian of one sample is

    ``J = I - 1 s^T`` (every row is ``e_j - s``),

    and the layer applies it without forming it: ``backward`` computes
    ``dx = dy - (sum_j dy_j) s`` row by row, and ``tangent`` (forward mode,
    ``J dx``) computes ``dy = dx - (dx . s)``, where ``dx . s`` is the sum over the
    last axis of ``dx * s``.  Unlike the softmax Jacobian, ``J`` is not
    symmetric.  The cache is ``s``.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import LogSoftmax, Softmax
    >>> layer = LogSoftmax()
    >>> y, cache = layer.forward(np.array([0.0, -1000.0]))
    >>> y
    array([    0., -1000.])
    >>> Softmax().forward(np.array([0.0, -1000.0]))[0]  # its log would be -inf
    array([1., 0.])
    >>> print(layer.forward(np.array([40.0, 0.0]))[0][0])
    -4.248354255291589e-18
    >>> layer.jacobian(*layer.forward(np.array([0.0, 0.0])))
    array([[ 0.5, -0.5],
           [-0.5,  0.5]])
    """

    def forward(self, x: Array) -> tuple[Array, Cache]:
        top = x.argmax(axis=-1)[..., None]  # one maximum per row
        y = x - np.take_along_axis(x, top, axis=-1)
        s = np.exp(y)  # exponents <= 0, and exactly 1 at the maximum
        np.put_along_axis(s, top, 0, axis=-1)
        rest = s.sum(axis=-1, keepdims=True)  # the other terms, not rounded to 1 + rest
        np.put_along_axis(s, top, 1, axis=-1)
        s /= rest + 1
        y -= np.log1p(rest)
        return y, s

    def backward(self, dy: Array, cache: Cache) -> Array:
        dx = dy.sum(axis=-1, keepdims=True) * cache[..., None, :]
        np.subtract(dy, dx, out=dx)
        return dx

    def tangent(self, dx: Array, cache: Cache) -> Array:
        dy = dx * cache[..., None, :]
        np.subtract(dx, dy.sum(axis=-1, keepdims=True), out=dy)
        return dy

    def curvature(self, u: Array, v: Array, cache: Cache) -> Array:
        # D^2 y[u, v] = -<s, (u - <s, u>) * (v - <s, v>)>, the same for every output
        s = cache[..., None, :]
        w = _centred(u, s)
        w *= _centred(v, s)
        w *= s
        return np.broadcast_to(-w.sum(axis=-1, keepdims=True), w.shape[:-1] + cache.shape[-1:]).copy()

    def tangent_grad(self, w: Array, u: Array, cache: Cache) -> Array:
        # <w, D^2 y[u, v]> = <q, v - <s, v>> with q = -(sum_j w_j) s * (u - <s, u>)
        s = cache[..., None, :]
        q = _centred(u, s)
        q *= s
        q *= -w.sum(axis=-1, keepdims=True)
        q -= q.sum(axis=-1, keepdims=True) * s
        return q.sum(axis=-2)

    @fused("backward")
    def jacobian(self, y: Array, cache: Cache) -> Array:
        s = cache
        return np.eye(s.shape[-1], dtype=s.dtype) - s[..., None, :]

    def taylor(self, series: list[Array], cache: Cache) -> list[Array]:
        # y = x - log D with D(t) = sum(s exp(h(t))), D_0 = 1: the log series of D
        K = len(series)
        denominators = _softmax_series(cache, series)[1]
        logs: list[Array] = []
        for k in range(1, K + 1):  # l_k = D_k - sum_{j<k} (j/k) l_j D_(k-j)
            total = denominators[k - 1]
            for j in range(1, k):
                total = total - logs[j - 1] * denominators[k - j - 1] * (j / k)
            logs.append(total)
        return [x_k - l_k for x_k, l_k in zip(series, logs)]

    def taylor_vjp(
        self, series: list[Array], grads: list[Array], cache: Cache
    ) -> tuple[Optional[Array], list[Array], list[Array]]:
        # J(t)^T w = w - s(t) sum(w), with s(t) = softmax(x(t)):
        # grad x_m = grads_m - sum_{k >= max(m, 1)} s_(k-m) sum(grads_k)
        K = len(series)
        if not K:
            return None, [], []
        s = [cache[..., None, :]] + _softmax_series(cache, series)[0]
        sums = [g_k.sum(axis=-1, keepdims=True) for g_k in grads]
        grad = []
        for m in range(K + 1):
            total = -sum(s[k - m] * sums[k - 1] for k in range(max(m, 1), K + 1))
            grad.append(total if m == 0 else total + grads[m - 1])
        return grad[0].sum(axis=-2), grad[1:], []


class Identity(Elementwise):
    """The identity, ``f(x) = x``.

    Useful as a placeholder (a network with no hidden activation) and in tests.

    See Also
    --------
    LeakyReLU : ``alpha = 1`` gives the identity too, ``alpha = 0`` the ReLU.
    Affine : affine layers joined by an identity compose to a single affine map.
    Elementwise : the base class, for writing other activations.

    Notes
    -----
    ``f'(x) = 1`` and ``f''(x) = 0``.  ``forward`` returns a copy of ``x``, never
    ``x`` itself, so that writing into the output cannot change the caller's array.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Identity
    >>> x = np.array([1.0, -2.0])
    >>> y, cache = Identity().forward(x)
    >>> y, y is x
    (array([ 1., -2.]), False)
    >>> Identity().jacobian(y, cache)
    array([[1., 0.],
           [0., 1.]])
    """

    piecewise_linear = True

    def f(self, x: Array) -> Array:
        return x.copy()

    def fprime(self, x: Array, y: Array) -> Array:
        return np.ones_like(x)

    def fsecond(self, x: Array, y: Array) -> Array:
        return np.zeros_like(x)

    @fused("fprime", "fsecond")
    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        return _piecewise_linear_derivatives(self.fprime(x, y), order)


class Softplus(Elementwise):
    """Softplus, ``f(x) = log(1 + exp(x))``, a smooth ReLU.

    See Also
    --------
    ReLU : the piecewise-linear function it smooths, ``max(x, 0)``.
    Sigmoid : its derivative, ``f' = s``.
    ELU, GELU, SiLU : other curved variants of the ReLU.

    Notes
    -----
    ``f(x) = logaddexp(0, x) = max(x, 0) + log1p(exp(-|x|))``: no overflow, and
    full relative accuracy in the left tail, where ``f(x)`` is about ``exp(x)``.

    ``f'(x) = exp(x) / (1 + exp(x)) = s(x)``, the logistic sigmoid, computed by
    ``expit``.

    ``f''(x) = s'(x) = s(x) s(-x)``, the product of two accurately computed
    factors, as in :class:`Sigmoid`: it keeps full relative accuracy in both tails
    (``s(x) (1 - s(x))`` is 0 for ``x > 37``).

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Softplus
    >>> layer = Softplus()
    >>> y, cache = layer.forward(np.array([0.0, -50.0, 50.0]))
    >>> bool(np.allclose(y, [np.log(2.0), np.exp(-50.0), 50.0], rtol=1e-15))
    True
    >>> np.diagonal(layer.jacobian(y, cache))
    array([5.00000000e-01, 1.92874985e-22, 1.00000000e+00])
    >>> f2 = layer.fsecond(*cache)  # s'(50) = exp(-50) / (1 + exp(-50))**2, not 0
    >>> bool(np.isclose(f2[2], np.exp(-50.0), rtol=1e-15))
    True
    """

    def f(self, x: Array) -> Array:
        return np.logaddexp(0, x)

    def fprime(self, x: Array, y: Array) -> Array:
        return expit(x)

    def fsecond(self, x: Array, y: Array) -> Array:
        return _sigmoid_prime(x, expit(x))

    @fused("fprime", "fsecond")
    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        # f' is the logistic s, so f^(k) = s^(k-1)
        if order < 1:
            return []
        s = expit(x)
        return [s] + _logistic_derivatives(x, s, order - 1)


class LeakyReLU(Elementwise):
    """Leaky rectified linear unit, ``f(x) = x`` for ``x > 0`` and ``alpha * x`` otherwise.

    Parameters
    ----------
    alpha : float, default 0.01
        The slope for ``x <= 0``; any finite real number.

    Raises
    ------
    TypeError
        If ``alpha`` is not a real number (booleans are refused too).
    ValueError
        If ``alpha`` is NaN or infinite.

    See Also
    --------
    ReLU : the case ``alpha = 0``.
    Identity : the case ``alpha = 1``.
    ELU : a smooth negative part that saturates at ``-alpha`` instead.
    ZeroCurvatureWarning : its second derivatives are zero, like every piecewise-linear layer's.

    Notes
    -----
    ``f'(x) = 1`` for ``x > 0`` and ``alpha`` for ``x <= 0``: the derivative at the
    kink is taken to be ``f'(0) = alpha``, the left derivative, as in PyTorch.
    ``f'(NaN)`` is NaN, as for :class:`ReLU`.  ``f''(x) = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import LeakyReLU
    >>> layer = LeakyReLU(alpha=0.1)
    >>> layer
    LeakyReLU(alpha=0.1)
    >>> y, cache = layer.forward(np.array([-2.0, 0.0, 3.0, np.nan]))
    >>> y
    array([-0.2,  0. ,  3. ,  nan])
    >>> np.diagonal(layer.jacobian(y, cache))
    array([0.1, 0.1, 1. , nan])
    """

    piecewise_linear = True

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = as_finite_real(alpha, "alpha", "LeakyReLU")

    def f(self, x: Array) -> Array:
        y = np.minimum(x, 0)  # min, not x: alpha = 0 times x = inf would be NaN
        y *= self.alpha
        np.copyto(y, x, where=x > 0)
        return y

    def fprime(self, x: Array, y: Array) -> Array:
        d = np.heaviside(x, self.alpha)  # 0 below, alpha at 0, 1 above, NaN for NaN
        d[x < 0] = self.alpha
        return d

    def fsecond(self, x: Array, y: Array) -> Array:
        return np.zeros_like(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha!r})"

    @fused("fprime", "fsecond")
    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        return _piecewise_linear_derivatives(self.fprime(x, y), order)


class ELU(Elementwise):
    """Exponential linear unit, ``f(x) = x`` for ``x > 0`` and ``alpha * (exp(x) - 1)`` otherwise.

    Parameters
    ----------
    alpha : float, default 1.0
        The negative saturation value, ``f(-inf) = -alpha``; any finite real number.

    Raises
    ------
    TypeError
        If ``alpha`` is not a real number (booleans are refused too).
    ValueError
        If ``alpha`` is NaN or infinite.

    See Also
    --------
    ReLU, LeakyReLU : piecewise linear, with ``f'' = 0``.
    Softplus, GELU, SiLU : smooth everywhere, where ELU's ``f''`` jumps at 0.

    Notes
    -----
    ``f(x) = alpha * expm1(x)`` for ``x <= 0``: ``expm1`` keeps full relative
    accuracy near 0, where ``exp(x) - 1`` cancels.  The exponential is taken of
    ``min(x, 0)``, so it cannot overflow where ``x > 0`` discards it.

    ``f'(x) = 1`` for ``x > 0`` and ``alpha * exp(x)`` for ``x <= 0`` (so
    ``f'(0) = alpha``, the left derivative; ELU is differentiable at 0 only when
    ``alpha = 1``).  The shortcut ``f(x) + alpha`` cancels in the left tail and is
    not used.

    ``f''(x) = 0`` for ``x > 0`` and ``alpha * exp(x)`` for ``x <= 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import ELU
    >>> layer = ELU(alpha=0.5)
    >>> layer
    ELU(alpha=0.5)
    >>> y, cache = layer.forward(np.array([-50.0, 0.0, 2.0]))
    >>> y
    array([-0.5,  0. ,  2. ])
    >>> d = np.diagonal(layer.jacobian(y, cache))
    >>> bool(d[0] == 0.5 * np.exp(-50.0)), d[1:]
    (True, array([0.5, 1. ]))
    >>> layer.fsecond(*cache)[1:]
    array([0.5, 0. ])
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = as_finite_real(alpha, "alpha", "ELU")

    def f(self, x: Array) -> Array:
        y = np.minimum(x, 0)
        np.expm1(y, y)
        y *= self.alpha
        np.copyto(y, x, where=x > 0)
        return y

    def fprime(self, x: Array, y: Array) -> Array:
        d = self._alpha_exp(x)
        d[x > 0] = 1
        return d

    def fsecond(self, x: Array, y: Array) -> Array:
        d = self._alpha_exp(x)
        d[x > 0] = 0
        return d

    def _alpha_exp(self, x: Array) -> Array:
        """``alpha * exp(min(x, 0))``: the left branch of f' and f'', never overflowing."""
        d = np.minimum(x, 0)
        np.exp(d, d)
        d *= self.alpha
        return d

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha!r})"

    @fused("fprime", "fsecond")
    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        # every derivative of alpha * expm1(x) is alpha * exp(x); of x, only the first is nonzero
        if order < 1:
            return []
        higher = self._alpha_exp(x)
        first = higher.copy()
        first[x > 0] = 1
        higher[x > 0] = 0
        return [first] + [higher] * (order - 1)


class GELU(Elementwise):
    """Gaussian error linear unit (exact form), ``f(x) = x * Phi(x)``.

    ``Phi`` is the standard normal distribution function and ``phi`` its density:
    ``Phi(x) = erfc(-x / sqrt(2)) / 2`` and ``phi(x) = exp(-x**2 / 2) / sqrt(2 pi)``.

    See Also
    --------
    SiLU : the sigmoid gate instead of ``Phi``; GELU is close to ``x * s(1.702 x)``.
    ReLU : the limit it approaches for large ``|x|``.
    ELU, Softplus : other curved variants of the ReLU.

    Notes
    -----
    ``f'(x) = Phi(x) + x phi(x)`` and ``f''(x) = 2 phi(x) + x phi'(x) = phi(x) (2 - x**2)``,
    using ``Phi' = phi`` and ``phi'(x) = -x phi(x)``.

    ``Phi`` is computed by ``scipy.special.ndtr``, which evaluates
    ``erfc(|x| / sqrt(2)) / 2`` in the left tail: full relative accuracy where
    ``1 + erf(x / sqrt(2))`` would cancel to 0 (``Phi(-10)`` is about ``7.6e-24``).
    For ``x < -1`` the term ``x phi(x)`` dominates ``Phi(x)`` (their ratio is about
    ``-x**2``), so the sum cancels little: ``f'(-10)``, about ``-7.6e-22``, comes
    out with full relative accuracy.  Rounding ``x**2`` before ``exp`` costs a
    relative error of up to ``eps * x**2 / 2`` (about ``1e-14`` at ``|x| = 10`` and
    ``1e-13`` near the underflow), like the rounding of ``x / sqrt(2)`` inside
    ``ndtr``.

    ``phi(x)`` underflows to 0 for ``|x| > 38.6`` (earlier in float32), so the
    derivatives evaluate ``phi`` at ``x`` clipped to ``[-40, 40]``: this changes no
    result, keeps ``x**2`` far from overflow for every finite ``x``, and gives the
    limits ``f'(+-inf) = 1, 0`` and ``f''(+-inf) = 0`` instead of NaN.  For the same
    reason ``f`` multiplies ``Phi(x)`` by ``max(x, -40)``, so ``f(-inf) = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import GELU
    >>> layer = GELU()
    >>> y, cache = layer.forward(np.array([-1.0, 0.0, 1.0]))
    >>> y.round(6)
    array([-0.158655,  0.      ,  0.841345])
    >>> np.diagonal(layer.jacobian(y, cache)).round(6)
    array([-0.083315,  0.5     ,  1.083315])
    >>> y, cache = layer.forward(np.array([-10.0]))
    >>> print(f"{layer.fprime(*cache)[0]:.6e}")
    -7.618400e-22
    """

    def f(self, x: Array) -> Array:
        y = np.maximum(x, -_GAUSSIAN_CLIP)  # x wherever Phi(x) > 0; f(-inf) = -40 * 0
        y *= ndtr(x)
        return y

    def fprime(self, x: Array, y: Array) -> Array:
        xc, _, d = _normal_density(x)
        d *= xc
        d += ndtr(x)
        return d

    def fsecond(self, x: Array, y: Array) -> Array:
        _, square, d = _normal_density(x)
        np.subtract(2, square, square)
        d *= square
        return d

    @fused("fprime", "fsecond")
    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        # f^(k) = x Phi^(k) + k Phi^(k-1) = (-1)^(k-1) phi(x) (He_k(x) - He_(k-2)(x)) for k >= 2,
        # with phi^(m) = (-1)^m He_m phi (Hermite polynomials); x clipped where phi = 0
        if order < 1:
            return []
        xc, square, phi = _normal_density(x)
        return [self.fprime(x, y)] + [_polyval(_gelu_polynomial(k), xc, square=square) * phi for k in range(2, order + 1)]


class SiLU(Elementwise):
    """Sigmoid linear unit (swish), ``f(x) = x * s(x)`` with the logistic ``s(x) = 1 / (1 + exp(-x))``.

    See Also
    --------
    Sigmoid : the gate ``s(x)``, whose derivatives this layer's are built from.
    GELU : the Gaussian gate ``Phi(x)`` instead of ``s(x)``.
    ReLU : the limit it approaches for large ``|x|``.

    Notes
    -----
    With ``s'(x) = s(x) s(-x)`` and ``s''(x) = -s'(x) tanh(x / 2)`` (see
    :class:`Sigmoid`):

    ``f'(x) = s(x) + x s'(x) = s(x) + x s(x) s(-x)``

    ``f''(x) = 2 s'(x) + x s''(x) = s(x) s(-x) (2 - x tanh(x / 2))``

    Every factor is computed accurately (``expit``, ``tanh``) and ``1 - s(x)`` is
    never formed, so nothing rounds to 0 in the tails, and the sums cancel
    little there: in ``f' = s(x) (1 + x s(-x))`` the second term dominates for
    ``x < -2``, and ``2 - x tanh(x / 2)`` is about ``2 - |x|``.  ``f'(-40)``, about
    ``-1.7e-16``, keeps full relative accuracy.

    Infinite ``x`` is clipped to the largest finite number of its dtype where it
    multiplies a factor that underflows to 0, so ``f(-inf) = 0``,
    ``f'(+-inf) = 1, 0`` and ``f''(+-inf) = 0`` instead of NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import SiLU
    >>> layer = SiLU()
    >>> y, cache = layer.forward(np.array([-1.0, 0.0, 1.0]))
    >>> y.round(6)
    array([-0.268941,  0.      ,  0.731059])
    >>> np.diagonal(layer.jacobian(y, cache)).round(6)
    array([0.072329, 0.5     , 0.927671])
    >>> layer.fsecond(*cache).round(6)
    array([0.302366, 0.5     , 0.302366])
    """

    def f(self, x: Array) -> Array:
        y = np.maximum(x, -np.finfo(x.dtype).max)  # f(-inf) = -max * 0, not NaN
        y *= expit(x)
        return y

    def fprime(self, x: Array, y: Array) -> Array:
        s = expit(x)
        d = -x
        expit(d, d)  # s(-x)
        d *= _finite(x)
        d *= s  # x s(x) s(-x)
        d += s
        return d

    def fsecond(self, x: Array, y: Array) -> Array:
        d = _sigmoid_prime(x, expit(x))
        xc = _finite(x)
        t = xc * 0.5
        np.tanh(t, t)
        t *= xc  # x tanh(x/2)
        np.subtract(2, t, t)
        d *= t
        return d

    @fused("fprime", "fsecond")
    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        # f^(k) = x s^(k) + k s^(k-1) = s(x) s(-x) (x R_k(tau) + 2k R_(k-1)(tau)) / 2^(k-1) for k >= 2,
        # tau = tanh(x/2) (see _logistic_derivatives); x clipped where s(x) s(-x) = 0
        if order < 1:
            return []
        q = _sigmoid_prime(x, expit(x))
        tau = x * 0.5
        np.tanh(tau, tau)
        xc = np.clip(x, -_LOGISTIC_CLIP, _LOGISTIC_CLIP)
        square = tau * tau
        out = [self.fprime(x, y)]
        below = _polyval(_tanh_polynomial(1), tau)
        for k in range(2, order + 1):
            R_k = _polyval(_tanh_polynomial(k), tau, square=square)
            d = xc * R_k
            d += below * (2 * k)
            d *= q
            d *= 1 / 2 ** (k - 1)
            out.append(d)
            below = R_k
        return out


class Sin(Elementwise):
    """Sine, ``f(x) = sin(x)``, as in sinusoidal representation networks (SIREN).

    See Also
    --------
    Affine : SIREN's ``sin(omega_0 (x W + b))`` is this layer after
        ``Affine(omega_0 * W, omega_0 * b)``.
    Tanh : the other common smooth activation for networks differentiated twice.
    Network.laplacian : second derivatives, nonzero through ``f'' = -sin(x)``.

    Notes
    -----
    ``f'(x) = cos(x)`` and ``f''(x) = -sin(x) = -f(x)``, which reuses the output.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Sin
    >>> layer = Sin()
    >>> y, cache = layer.forward(np.array([0.0, np.pi / 2]))
    >>> np.diagonal(layer.jacobian(y, cache)).round(12)
    array([1., 0.])
    >>> layer.fsecond(*cache).round(12)
    array([-0., -1.])
    """

    def f(self, x: Array) -> Array:
        return np.sin(x)

    def fprime(self, x: Array, y: Array) -> Array:
        return np.cos(x)

    def fsecond(self, x: Array, y: Array) -> Array:
        return np.negative(y)


#: 1 / sqrt(2 pi), the normal density at 0.

    @fused("fprime", "fsecond")
    def derivatives(self, x: Array, y: Array, order: int) -> list[Array]:
        # cos, -sin, -cos, sin, and again
        cos = np.cos(x)
        cycle = [cos, np.negative(y), np.negative(cos), y]
        return [cycle[k % 4] for k in range(order)]
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
#: exp(-x**2 / 2) underflows to 0 beyond |x| = 38.6 in float64 (14 in float32):
#: clipping |x| here changes no normal density, and x**2 cannot overflow.
_GAUSSIAN_CLIP = 40.0


def _normal_density(x: Array) -> tuple[Array, Array, Array]:
    """``(xc, xc**2, phi(x))`` with ``xc = x`` clipped to ``+-_GAUSSIAN_CLIP``, where
    ``phi`` has underflowed anyway: no overflow for any ``x``, infinities included."""
    xc = np.clip(x, -_GAUSSIAN_CLIP, _GAUSSIAN_CLIP)
    square = xc * xc
    phi = square * -0.5
    np.exp(phi, phi)
    phi *= _INV_SQRT_2PI
    return xc, square, phi


def _sigmoid_prime(x: Array, s: Array) -> Array:
    """``s'(x) = s(x) s(-x)`` given ``s = expit(x)``: full relative accuracy in both tails."""
    # Three ufunc calls, reusing s: on small inputs, where per-call overhead
    # dominates, twice as fast as the np.exp form used by Tanh; above a few hundred
    # elements slower, like the expit in the forward pass.
    d = -x
    expit(d, d)  # s(-x), in place
    d *= s  # s(x) s(-x)
    return d


def _centred(u: Array, s: Array) -> Array:
    """``u - <s, u>`` over the last axis: ``u`` minus its mean under the weights ``s``."""
    return u - (u * s).sum(axis=-1, keepdims=True)


def _finite(x: Array) -> Array:
    """A copy of ``x`` with +-inf replaced by the largest finite numbers of its dtype."""
    big = np.finfo(x.dtype).max
    return np.clip(x, -big, big)


#: s(x) s(-x) underflows to 0 beyond |x| = 746 (104 in float32): clipping x there
#: changes no logistic derivative and keeps polynomials in x finite.
_LOGISTIC_CLIP = 1000.0


def _logistic_derivatives(x: Array, s: Array, order: int) -> list[Array]:
    """``[s', ..., s^(order)]`` of the logistic ``s = expit(x)``, accurate in both tails.

    ``s(x) = (1 + tanh(x/2)) / 2``, so ``s^(k)(x) = tanh^(k)(x/2) / 2^(k+1)
    = s(x) s(-x) R_k(tanh(x/2)) / 2^(k-1)``: the accurate ``s(x) s(-x)`` times a
    polynomial that is ``+-1`` at ``tanh(x/2) = +-1``, so nothing cancels in the tails.
    """
    if order < 1:
        return []
    q = _sigmoid_prime(x, s)
    tau = x * 0.5
    np.tanh(tau, tau)
    square = tau * tau if order > 2 else None
    return [q] + [_polyval(_tanh_polynomial(k), tau, 1 / 2 ** (k - 1), square) * q for k in range(2, order + 1)]


def _piecewise_linear_derivatives(first: Array, order: int) -> list[Array]:
    """``[f', 0, 0, ...]``: one zero array, shared."""
    if order < 1:
        return []
    return [first] + [np.zeros_like(first)] * (order - 1)


@functools.lru_cache(maxsize=None)
def _tanh_polynomial(k: int) -> tuple[int, ...]:
    """Coefficients (lowest degree first) of ``R_k`` with ``tanh^(k)(x) = sech^2(x) R_k(tanh x)``.

    ``R_1 = 1`` and, as ``d tanh / dx = 1 - tanh^2``, ``R_(k+1)(t) = -2 t R_k(t) +
    (1 - t^2) R_k'(t)``: ``R_2 = -2t``, ``R_3 = 6t^2 - 2``.  Exact integers.
    """
    coeffs = [1]
    for _ in range(k - 1):
        new = [0] * (len(coeffs) + 1)
        for i, c in enumerate(coeffs):
            new[i + 1] -= 2 * c + i * c
            if i:
                new[i - 1] += i * c
        coeffs = new
    return tuple(coeffs)


@functools.lru_cache(maxsize=None)
def _hermite_polynomial(k: int) -> tuple[int, ...]:
    """Coefficients of the probabilists' Hermite polynomial ``He_k``: ``phi^(k) = (-1)^k He_k phi``."""
    below: tuple[int, ...] = (1,)
    current: tuple[int, ...] = (0, 1)
    if k == 0:
        return below
    for n in range(1, k):  # He_(n+1) = x He_n - n He_(n-1)
        shifted = (0,) + current
        below, current = current, tuple(a - n * (below[i] if i < len(below) else 0) for i, a in enumerate(shifted))
    return current


@functools.lru_cache(maxsize=None)
def _gelu_polynomial(k: int) -> tuple[int, ...]:
    """``(-1)^(k-1) (He_k - He_(k-2))``, for ``GELU^(k) = phi(x)`` times it, ``k >= 2``."""
    high, low = _hermite_polynomial(k), _hermite_polynomial(k - 2)
    sign = -1 if k % 2 == 0 else 1
    return tuple(sign * (a - (low[i] if i < len(low) else 0)) for i, a in enumerate(high))


def _polyval(coeffs: tuple[int, ...], t: Array, scale: float = 1.0, square: Optional[Array] = None) -> Array:
    """``scale * sum_i coeffs[i] t^i`` in a new array of ``t``'s dtype.

    Horner's rule, in ``t**2`` for the even and odd polynomials (all of ours):
    half the operations.  ``square`` may pass ``t**2`` when it is already known.
    """
    odd = len(coeffs) > 1 and not any(coeffs[0::2])
    if not (odd or not any(coeffs[1::2])):
        return _horner(coeffs, t, scale)
    half = coeffs[1::2] if odd else coeffs[0::2]
    if len(half) == 1:
        return t * (half[0] * scale) if odd else np.full_like(t, half[0] * scale)
    result = _horner(half, t * t if square is None else square, scale)
    if odd:
        result *= t
    return result


def _horner(coeffs: tuple[int, ...], t: Array, scale: float) -> Array:
    if len(coeffs) == 1:
        return np.full_like(t, coeffs[0] * scale)
    result = t * (coeffs[-1] * scale)
    result += coeffs[-2] * scale
    for c in coeffs[-3::-1]:
        result *= t
        result += c * scale
    return result


def _softmax_series(s: Array, series: list[Array]) -> tuple[list[Array], list[Array]]:
    """Taylor coefficients of ``softmax(x(t))`` and of its denominator, given ``s = softmax(x_0)``.

    With ``h(t) = sum_k x_k t^k``, ``E(t) = s exp(h(t))`` (the exponential's series
    by ``g_k = sum_{j=1..k} (j/k) x_j g_(k-j)``, ``g_0 = 1``) and its sum over the
    last axis ``D(t)``, ``D_0 = 1``, the softmax is ``y = E / D``:
    ``y_k = E_k - sum_{j=1..k} D_j y_(k-j)``.  Returns ``([y_1..y_K], [D_1..D_K])``,
    of shapes ``(*batch, R, d)`` and ``(*batch, R, 1)``.
    """
    s = s[..., None, :]
    exps: list[Array] = []
    ys: list[Array] = []
    denominators: list[Array] = []
    K = len(series)
    for k in range(1, K + 1):
        g_k = series[k - 1]
        for j in range(1, k):
            g_k = g_k + series[j - 1] * exps[k - j - 1] * (j / k)
        exps.append(g_k)
        E_k = s * g_k
        denominators.append(E_k.sum(axis=-1, keepdims=True))
        y_k = E_k - denominators[k - 1] * s
        for j in range(1, k):
            y_k -= denominators[j - 1] * ys[k - j - 1]
        ys.append(y_k)
    return ys, denominators


def _dot(a: Array, b: Array) -> Array:
    """``<a, b>`` over the last axis, kept as an axis of length 1."""
    return (a * b).sum(axis=-1, keepdims=True)
