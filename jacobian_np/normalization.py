"""Layer normalisation."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from ._chunking import positive_int
from ._typing import Array, Cache
from ._validation import as_parameter, check_last_axis
from .layer import Layer


class LayerNorm(Layer):
    """Layer normalisation over the last axis, ``y = (x - mean) / sqrt(var + eps) * weight + bias``.

    The variance is the biased one (divided by ``d``), as in ``torch.nn.LayerNorm``.

    Parameters
    ----------
    d : int
        The width normalised over.
    eps : float, default 1e-5
        Added to the variance; positive.
    weight, bias : array_like of shape (d,), optional
        The elementwise affine map after normalising; ones and zeros by default.
        Copied.  They are the layer's :attr:`params` (weight, then bias).

    Raises
    ------
    ValueError
        If ``d`` is not positive, ``eps`` not positive and finite, or ``weight`` or
        ``bias`` of the wrong shape or not finite.
    TypeError
        If ``d`` is not an integer.

    See Also
    --------
    Residual : the usual home of a layer normalisation, a pre-norm block.
    Affine : the dense layer around it.
    check_layer : compare its derivatives with finite differences, as below.
    from_torch : imports ``torch.nn.LayerNorm`` over the last axis as this layer.

    Notes
    -----
    With ``c = x - mean(x)``, ``r = 1 / sqrt(mean(c**2) + eps)`` and ``h = c r``
    (so ``h`` has mean 0), the derivative along ``u`` is

    ``Dh[u] = r (P u - h (h . u) / d)``,  ``P u = u - mean(u)``,

    that is ``J = diag(weight) r (I - 1 1^T / d - h h^T / d)``.  ``backward`` applies
    it to rows without forming it: with ``g = dy * weight``,
    ``dx = r (g - mean(g) - h mean(g h))``; ``tangent`` is ``weight * Dh[u]``.
    The second derivative is

    ``D^2 h[u, v] = -(r^2 / d) (a_v c_u + a_u c_v + h (c_u . c_v) - 3 h a_u a_v / d)``

    with ``c_u = P u`` and ``a_u = h . u``; ``curvature`` is ``weight * D^2 h[u, v]``.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import LayerNorm, check_layer
    >>> layer = LayerNorm(4)
    >>> y, cache = layer.forward(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> bool(np.isclose(y.mean(), 0.0)), bool(np.isclose(y.var(), 1.0, rtol=1e-4))
    (True, True)
    >>> bool(check_layer(LayerNorm(4, weight=[1.0, 2.0, 3.0, 4.0]), np.linspace(-1, 2, 8).reshape(2, 4), second_order=True))
    True
    """

    def __init__(
        self,
        d: int,
        eps: float = 1e-5,
        weight: Optional[npt.ArrayLike] = None,
        bias: Optional[npt.ArrayLike] = None,
    ) -> None:
        self.d = positive_int(d, "LayerNorm", "d")
        if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer, np.floating)):
            raise TypeError(f"LayerNorm expects eps to be a positive number; got {eps!r}.")
        if not (np.isfinite(eps) and eps > 0):
            raise ValueError(f"LayerNorm expects eps to be positive and finite; got {eps!r}.")
        self.eps = float(eps)
        self.weight = np.ones(self.d) if weight is None else as_parameter(weight, "weight", (self.d,), "LayerNorm")
        self.bias = np.zeros(self.d) if bias is None else as_parameter(bias, "bias", (self.d,), "LayerNorm")
        if self.weight.dtype != self.bias.dtype:
            dtype = np.promote_types(self.weight.dtype, self.bias.dtype)
            self.weight, self.bias = self.weight.astype(dtype), self.bias.astype(dtype)
        self.d_in = self.d_out = self.d

    @property
    def params(self) -> list[Array]:
        return [self.weight, self.bias]

    def forward(self, x: Array) -> tuple[Array, Cache]:
        check_last_axis(x, self.d, "LayerNorm")
        c = x - x.mean(axis=-1, keepdims=True)
        r = 1 / np.sqrt((c * c).mean(axis=-1, keepdims=True) + self.eps)
        h = c * r
        y = h * self.weight
        y += self.bias
        return y, (h, r)

    def _dh(self, u: Array, cache: Cache) -> Array:
        """``Dh[u]`` for rows ``u`` of shape ``(*batch, K, d)``."""
        h, r = (a[..., None, :] for a in cache)
        out = u - u.mean(axis=-1, keepdims=True)
        out -= h * ((h * u).sum(axis=-1, keepdims=True) / self.d)
        out *= r
        return out

    def backward(self, dy: Array, cache: Cache) -> Array:
        return self._dh(dy * self.weight, cache)  # J is diag(weight) times a symmetric matrix

    def tangent(self, dx: Array, cache: Cache) -> Array:
        out = self._dh(dx, cache)
        out *= self.weight
        return out

    def _second(self, u: Array, v: Array, cache: Cache) -> Array:
        h, r = (a[..., None, :] for a in cache)
        cu, cv = u - u.mean(axis=-1, keepdims=True), v - v.mean(axis=-1, keepdims=True)
        au, av = (h * u).sum(axis=-1, keepdims=True), (h * v).sum(axis=-1, keepdims=True)
        out = av * cu
        out += au * cv
        out += h * ((cu * cv).sum(axis=-1, keepdims=True) - 3 * au * av / self.d)
        out *= -(r * r) / self.d
        return out

    def curvature(self, u: Array, v: Array, cache: Cache) -> Array:
        out = self._second(u, v, cache)
        out *= self.weight
        return out

    def tangent_grad(self, w: Array, u: Array, cache: Cache) -> Array:
        # gradient in v of sum_k <g_k, D^2 h[u_k, v]>, g = w * weight
        h, r = (a[..., None, :] for a in cache)
        g = w * self.weight
        cu = u - u.mean(axis=-1, keepdims=True)
        au = (h * u).sum(axis=-1, keepdims=True)
        g_cu = (g * cu).sum(axis=-1, keepdims=True)
        g_h = (g * h).sum(axis=-1, keepdims=True)
        out = g_cu * h
        out += au * (g - g.mean(axis=-1, keepdims=True))
        out += g_h * cu
        out -= (3 / self.d) * g_h * au * h
        out *= -(r * r) / self.d
        return out.sum(axis=-2)

    def param_grad(self, dy: Array, cache: Cache) -> list[Array]:
        h, _ = cache
        return [(dy * h).reshape(-1, self.d).sum(axis=0), dy.reshape(-1, self.d).sum(axis=0)]

    def tangent_param_grad(self, dT: Array, T: Array, cache: Cache) -> list[Array]:
        dW = (dT * self._dh(T, cache)).reshape(-1, self.d).sum(axis=0)
        return [dW, np.zeros_like(self.bias)]

    def cost(self, rows: int, width_in: int, width_out: int) -> int:
        return 6 * rows * width_in

    def __repr__(self) -> str:
        extra = "" if self.eps == 1e-5 else f", eps={self.eps!r}"
        return f"LayerNorm({self.d}{extra})"

    def taylor(self, series: list[Array], cache: Cache) -> list[Array]:
        # y = h weight + bias with h = c r: the series of c (linear), of the variance and of
        # its inverse square root (see _taylor_series)
        h, _ = self._taylor_series(series, cache)
        return [h_k * self.weight for h_k in h[1:]]

    def taylor_vjp(
        self, series: list[Array], grads: list[Array], cache: Cache
    ) -> tuple[Optional[Array], list[Array], list[Array]]:
        # the adjoint of x_m is sum_{k >= m} [t^(k-m)] J(t)^T grads_k, and along the path
        # J(t)^T g = r(t) (q - h(t) m(t)) with q = P (g weight), m(t) = mean(g weight h(t))
        K = len(series)
        if not K:
            return None, [], [np.zeros_like(self.weight), np.zeros_like(self.bias)]
        h, r = self._taylor_series(series, cache)
        adjoints: list[Any] = [0] * (K + 1)
        for k in range(1, K + 1):
            g = grads[k - 1] * self.weight
            q = g - g.mean(axis=-1, keepdims=True)
            m = [(g * h[b]).mean(axis=-1, keepdims=True) for b in range(k + 1)]
            hm = [sum(h[b] * m[j - b] for b in range(j + 1)) for j in range(k + 1)]  # series of h(t) m(t)
            for n in range(k + 1):
                adjoints[k - n] = adjoints[k - n] + r[n] * q - sum(r[a] * hm[n - a] for a in range(n + 1))
        dW = sum((g_k * h_k).reshape(-1, self.d).sum(axis=0) for g_k, h_k in zip(grads, h[1:]))
        return adjoints[0].sum(axis=-2), adjoints[1:], [dW, np.zeros_like(self.bias)]

    def _taylor_series(self, series: list[Array], cache: Cache) -> tuple[list[Array], list[Array]]:
        """Normalised Taylor coefficients ``h_0..h_K`` and ``r_0..r_K`` along the paths.

        In units of the expansion point, ``c' = (x - mean(x)) r_0`` (so ``c'_0 = h_0``),
        the variance plus ``eps`` is ``s' = mean(c'^2) r_0^2``-scaled to ``s'_0 = 1``
        and ``u = s'^(-1/2)`` follows from ``s' u' = -u s'' / 2``:
        ``u_k = sum_{j=1..k} (-j/2 - (k - j)) s'_j u_(k-j) / k``.  Then ``h = c' u``
        and ``r = r_0 u``.
        """
        h0, r0 = cache
        r0 = r0[..., None, :]
        c = [h0[..., None, :]] + [(x_k - x_k.mean(axis=-1, keepdims=True)) * r0 for x_k in series]
        u: list[Any] = [np.ones_like(r0)]
        s: list[Any] = [np.ones_like(r0)]
        for k in range(1, len(series) + 1):
            square = sum(c[i] * c[k - i] for i in range(k + 1))
            s.append(square.mean(axis=-1, keepdims=True))
            u.append(sum((-0.5 * j - (k - j)) * s[j] * u[k - j] for j in range(1, k + 1)) / k)
        h = [sum(c[i] * u[k - i] for i in range(k + 1)) for k in range(len(series) + 1)]
        return h, [r0 * u_k for u_k in u]
