"""Activation layers.

Elementwise activations supply ``f`` and ``fprime`` side by side; the shared
:class:`~jacobian_np.Elementwise` base does the broadcasting.  Derivatives use forms
that neither overflow at ``|x| = 1e4`` nor lose relative accuracy in the tails
(``sigmoid'(40)`` is about ``4.2e-18``, not 0).  See ``docs/layers.md`` for the
derivations.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from ._typing import Array, Cache
from .layer import Elementwise, Layer, _diagonal


class ReLU(Elementwise):
    """Rectified linear unit, ``f(x) = max(x, 0)``.

    Notes
    -----
    ``f'(x) = 1`` for ``x > 0`` and ``0`` for ``x <= 0``: the derivative at the kink
    is taken to be 0, as in PyTorch and JAX.  ``f'(NaN)`` is NaN, so a NaN input
    shows up in its own row of the Jacobian instead of looking like a zero
    derivative.

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

    def f(self, x: Array) -> Array:
        return np.maximum(x, 0)

    def fprime(self, x: Array, y: Array) -> Array:
        return np.heaviside(x, 0)


class Sigmoid(Elementwise):
    """Logistic sigmoid, ``f(x) = 1 / (1 + exp(-x))``.

    Notes
    -----
    ``f'(x) = f(x) f(-x)``: both factors are computed accurately by ``expit``
    and only multiplied, so the result keeps full relative accuracy in the tails.
    The common ``s * (1 - s)`` returns 0 for ``x > 37`` because ``1 - s`` rounds
    to 0.

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
        # Three ufunc calls, reusing y = s(x): on small inputs, where per-call
        # overhead dominates, twice as fast as the np.exp form used by Tanh; above a
        # few hundred elements slower, like the expit in the forward pass.
        d = -x
        expit(d, d)  # s(-x), in place
        d *= y  # s(x) s(-x)
        return d


class Tanh(Elementwise):
    """Hyperbolic tangent, ``f(x) = tanh(x)``.

    Notes
    -----
    ``f'(x) = 1 / cosh(x)**2 = 4 e / (1 + e)**2`` with ``e = exp(-2|x|)``: as
    ``e <= 1`` nothing overflows and nothing cancels.  The common ``1 - tanh(x)**2``
    returns 0 for ``|x| > 19`` and loses relative accuracy long before.

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
        # In place, positional out: NumPy's exp is vectorised (about 1 ns per element
        # against 5 for scipy's expit), and only one temporary is allocated.
        e = np.abs(x)
        np.multiply(e, -2, e)
        np.exp(e, e)  # e = exp(-2|x|) <= 1
        d = e + 1
        np.multiply(d, d, d)
        np.divide(e, d, e)
        np.multiply(e, 4, e)
        return e


class Softmax(Layer):
    """Softmax over the last axis, ``y_j = exp(x_j) / sum_k exp(x_k)``.

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

    def jacobian(self, y: Array, cache: Cache) -> Array:
        s = cache
        J = s[..., :, None] * -s[..., None, :]
        _diagonal(J)[...] += s
        return J
