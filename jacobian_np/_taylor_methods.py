"""Taylor mode's public methods: derivatives of any order, the biharmonic, and their weight gradients.

:class:`TaylorMethods` is a mixin of :class:`~jacobian_np.Network`: it validates
the arguments, seeds the passes of :mod:`jacobian_np._taylor` and chunks the batch.
It relies on the network's ``layers``, ``d_in``, ``params``, ``_batched`` (the
engine's chunking helper) and ``_auto_chunk_size``.  The math is in
``docs/taylor.md``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Optional, Sequence

import numpy as np
import numpy.typing as npt

from . import _taylor
from ._typing import Array
from ._validation import as_dims, as_input, as_order, as_positive_int, as_shaped
from .errors import ZeroCurvatureWarning
from .layer import Layer
from .layer import zeros as _zeros

Pullback = Callable[[npt.ArrayLike], list[Array]]


class TaylorMethods:
    """Taylor-mode methods of :class:`~jacobian_np.Network` (see ``docs/taylor.md``)."""

    layers: tuple[Layer, ...]
    d_in: Optional[int]
    params: list[Array]
    _batched: Callable[..., tuple]
    _auto_chunk_size: Callable[[Array, int], int]

    def taylor(self, x: npt.ArrayLike, v: npt.ArrayLike, order: int, chunk_size: Optional[int] = None) -> Array:
        """Derivatives of every order along a direction: ``T[k] = d^k/dt^k y(x + t v)`` at ``t = 0``.

        One forward pass of truncated Taylor series (Taylor mode): each layer maps
        the coefficients of its input path to those of its output path, by
        Faà di Bruno's formula for elementwise activations and exact rules for
        the others.  It costs about ``order + 1`` forward passes through the
        matrix products (``docs/taylor.md``), not the ``d_in**order`` of nested
        derivatives.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch (``n`` may be 0).
        v : array_like of shape (d_in,) or the shape of ``x``
            The direction: one for every sample, or one per sample.
        order : int
            The highest derivative, ``>= 0``.  Every built-in layer supports any
            order; a layer without Taylor rules raises ``NotImplementedError``.
        chunk_size : int, optional
            Samples per chunk, as in :meth:`jacobian`; by default chunks fit the
            memory budget.

        Returns
        -------
        T : ndarray of shape (order + 1, d_out) or (order + 1, n, d_out)
            ``T[0] = y``, ``T[1] = J v``, ``T[2] = v^T H v``, ...: the derivatives,
            not divided by ``k!``.

        Raises
        ------
        TypeError
            If ``order`` is not an integer.
        ValueError
            If ``order`` is negative or ``v`` has the wrong shape.
        NotImplementedError
            If a layer lacks Taylor rules to this order (the message names it).

        Warns
        -----
        ZeroCurvatureWarning
            For ``order >= 2`` on a network whose layers are all piecewise linear.

        Examples
        --------
        ``u, u_x, ..., u_xxxx`` of a one-input network in one call:

        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(1, 8)), rng.normal(size=8)), Tanh(), Affine(rng.normal(size=(8, 1)))])
        >>> x = np.linspace(-1, 1, 5)[:, None]
        >>> T = net.taylor(x, [1.0], order=4)
        >>> T.shape
        (5, 5, 1)
        >>> np.allclose(T[0], net.forward(x)), np.allclose(T[2], net.laplacian(x))
        (True, True)
        """
        x = as_input(x, self.d_in, "Network.taylor")
        order = as_order(order, "Network.taylor")
        v = as_shaped(v, x.shape, "v", "Network.taylor", broadcast=True)
        self._warn_if_piecewise_linear("Network.taylor", order)
        rows = _rows(self.layers, x.shape[-1], [1] * order, line=True)
        parts = self._chunks(x, chunk_size, rows, "Network.taylor")
        if len(parts) == 1:
            return _taylor.derivatives_along_line(self.layers, x, v, order)
        # the result is order-first: each chunk is written into its columns, contiguous blocks
        first = _taylor.derivatives_along_line(self.layers, x[parts[0]], v[parts[0]], order)
        T = np.empty(first.shape[:1] + x.shape[:-1] + first.shape[-1:], dtype=first.dtype)
        T[:, parts[0]] = first
        for part in parts[1:]:
            T[:, part] = _taylor.derivatives_along_line(self.layers, x[part], v[part], order)
        return T

    def taylor_and_pullback(self, x: npt.ArrayLike, v: npt.ArrayLike, order: int) -> tuple[Array, Pullback]:
        """:meth:`taylor`, and a function that maps ``grad_T`` to the parameter gradients.

        ``T, pullback = net.taylor_and_pullback(x, v, order)`` then
        ``pullback(grad_T)`` gives the same as
        ``net.taylor_param_grad(x, v, order, grad_T)``, but the Taylor pass runs
        once for both: use it when the loss's gradient depends on ``T`` (a
        training step).  The pullback keeps every layer's coefficients alive, so
        it is not chunked.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(1, 8)), rng.normal(size=8)), Tanh(), Affine(rng.normal(size=(8, 1)))])
        >>> x = rng.normal(size=(16, 1))
        >>> T, pullback = net.taylor_and_pullback(x, [1.0], order=3)
        >>> grads = pullback(2 * T / T[3].size * (np.arange(4) == 3)[:, None, None])  # of mean(u_xxx**2)
        >>> [g.shape for g in grads]
        [(1, 8), (8,), (8, 1)]
        """
        x = as_input(x, self.d_in, "Network.taylor_and_pullback")
        order = as_order(order, "Network.taylor_and_pullback")
        v = as_shaped(v, x.shape, "v", "Network.taylor_and_pullback", broadcast=True)
        self._warn_if_piecewise_linear("Network.taylor_and_pullback", order)
        T, pullback = self._taylor_and_pullback(x, v, order)
        shape = T.shape

        def checked_pullback(grad_T: npt.ArrayLike) -> list[Array]:
            return pullback(as_shaped(grad_T, shape, "grad_T", "pullback"))

        return T, checked_pullback

    def taylor_param_grad(
        self, x: npt.ArrayLike, v: npt.ArrayLike, order: int, grad_T: npt.ArrayLike, chunk_size: Optional[int] = None
    ) -> list[Array]:
        """Gradient of ``sum(grad_T * taylor(x, v, order))`` with respect to each of :attr:`params`.

        Reverse mode over Taylor mode, summed over the batch: each layer's
        ``taylor_vjp`` carries the adjoints of the output coefficients back to its
        input coefficients, its expansion point and its parameters
        (``docs/taylor.md``).  It costs a few Taylor passes.

        Parameters
        ----------
        x, v, order
            As in :meth:`taylor`.
        grad_T : array_like of the shape of ``T``, (order + 1, d_out) or (order + 1, n, d_out)
        chunk_size : int, optional
            As in :meth:`taylor`.

        Returns
        -------
        list of ndarray
            One array per entry of :attr:`params`, of the same shape.

        Raises
        ------
        ValueError, TypeError, NotImplementedError
            As in :meth:`taylor`, and for ``grad_T`` of the wrong shape.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh, check_param_grads
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(2, 6)), rng.normal(size=6)), Tanh(), Affine(rng.normal(size=(6, 1)))])
        >>> x, v = rng.normal(size=(4, 2)), np.array([1.0, 0.0])
        >>> grad_T = rng.normal(size=(4, 4, 1))
        >>> [g.shape for g in net.taylor_param_grad(x, v, 3, grad_T)]
        [(2, 6), (6,), (6, 1)]
        """
        owner = "Network.taylor_param_grad"
        x = as_input(x, self.d_in, owner)
        order = as_order(order, owner)
        v = as_shaped(v, x.shape, "v", owner, broadcast=True)
        d_out = self._width_out(x)
        G = np.moveaxis(as_shaped(grad_T, (order + 1,) + x.shape[:-1] + (d_out,), "grad_T", owner), 0, -2)
        self._warn_if_piecewise_linear(owner, order)
        return self._summed(
            lambda part: self._taylor_and_pullback(x[part], v[part], order)[1](np.moveaxis(G[part], -2, 0)),
            x, chunk_size, _rows(self.layers, x.shape[-1], [1] * order, tape=True), owner,
        )

    def biharmonic(self, x: npt.ArrayLike, dims: Optional[Sequence[int]] = None, chunk_size: Optional[int] = None) -> Array:
        """The biharmonic ``sum_{k, l in dims} d^4 y / dx_k^2 dx_l^2`` of each output, per sample.

        Exact, from fourth derivatives along ``m**2`` directions (``m = len(dims)``):
        ``|z|**4 = sum_k w z_k**4 + sum_{k<l} ((z_k + z_l)**4 + (z_k - z_l)**4) / 6``
        with ``w = 1 - (m - 1) / 3`` holds for every ``z``, so the same weights
        combine the fourth directional derivatives along ``e_k`` and
        ``e_k +- e_l`` into the biharmonic.  One Taylor pass carries the three
        lower coefficients of every direction and, for the fourth, only the sum
        over each group of equally weighted directions (``docs/taylor.md``).

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
        dims : sequence of int, optional
            The inputs to differentiate along (all by default), distinct, in
            ``0..d_in-1``; for example the space variables but not time.
        chunk_size : int, optional
            As in :meth:`taylor`.

        Returns
        -------
        ndarray of shape (d_out,) or (n, d_out)

        Raises
        ------
        ValueError, TypeError
            If ``dims`` is out of range, repeated or not integers.
        NotImplementedError
            If a layer lacks Taylor rules to order 4.

        Warns
        -----
        ZeroCurvatureWarning
            If every layer is piecewise linear.

        Examples
        --------
        ``y = sin(a . x)`` has the biharmonic ``|a|**4 sin(a . x)``, and
        ``a_1**4 sin(a . x)`` over the second input alone:

        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Sin
        >>> a = np.array([[0.5], [-1.5]])
        >>> net = Network([Affine(a), Sin()])
        >>> x = np.array([[0.3, 0.2], [1.0, -1.0]])
        >>> np.allclose(net.biharmonic(x), np.sum(a**2) ** 2 * np.sin(x @ a))
        True
        >>> np.allclose(net.biharmonic(x, dims=[1]), a[1] ** 4 * np.sin(x @ a))
        True
        """
        owner = "Network.biharmonic"
        x = as_input(x, self.d_in, owner)
        dims = as_dims(dims, x.shape[-1], owner)
        self._warn_if_piecewise_linear(owner, 4)
        directions, groups, weights = _biharmonic_directions(x.shape[-1], dims)

        def compute(part: Array) -> tuple[Array]:
            batch = part.shape[:-1]
            R, G = len(directions), len(groups)
            series = [np.broadcast_to(directions.astype(part.dtype), batch + directions.shape)]
            series += [_zeros(part.dtype, batch + (R, part.shape[-1]))] * 2 + [_zeros(part.dtype, batch + (G, part.shape[-1]))]
            _, out, _ = _taylor.taylor_pass(self.layers, part, series, groups)
            top = out[-1]  # (*batch, G, d_out): the fourth coefficients summed per group
            total = top[..., 0, :] * (24 * weights[0])
            for g in range(1, G):
                total += top[..., g, :] * (24 * weights[g])
            return (total,)

        (B,) = self._batched(compute, x, chunk_size, _rows(self.layers, x.shape[-1], [len(directions)] * 3 + [len(groups)]), owner)
        return B

    def laplacian_and_pullback(self, x: npt.ArrayLike, dims: Optional[Sequence[int]] = None) -> tuple[Array, Pullback]:
        """The Laplacian over ``dims``, and a function that maps ``grad_L`` to the parameter gradients.

        ``L, pullback = net.laplacian_and_pullback(x)`` then ``pullback(grad_L)``
        gives the same as ``net.laplacian_param_grad(x, grad_L)``, with one
        forward pass for both: a physics-informed training step.  The forward
        pass is the collapsed one of ``docs/taylor.md``: the first-order
        coefficients of the ``len(dims)`` directions and one summed
        second-order coefficient.  Not chunked (the pullback keeps every
        layer's coefficients alive).

        Examples
        --------
        A Poisson residual ``r = Δu - f`` and the gradient of ``mean(r**2)``:

        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(2, 8)), rng.normal(size=8)), Tanh(), Affine(rng.normal(size=(8, 1)))])
        >>> x = rng.uniform(size=(32, 2))
        >>> L, pullback = net.laplacian_and_pullback(x)
        >>> np.allclose(L, net.laplacian(x))
        True
        >>> r = L - 1.0
        >>> [g.shape for g in pullback(2 * r / len(r))]
        [(2, 8), (8,), (8, 1)]
        """
        owner = "Network.laplacian_and_pullback"
        x = as_input(x, self.d_in, owner)
        dims = as_dims(dims, x.shape[-1], owner)
        self._warn_if_piecewise_linear(owner, 2)
        L, pullback = self._laplacian_and_pullback(x, dims)
        shape = L.shape

        def checked_pullback(grad_L: npt.ArrayLike) -> list[Array]:
            return pullback(as_shaped(grad_L, shape, "grad_L", "pullback"))

        return L, checked_pullback

    def laplacian_param_grad(
        self,
        x: npt.ArrayLike,
        grad_L: npt.ArrayLike,
        dims: Optional[Sequence[int]] = None,
        chunk_size: Optional[int] = None,
    ) -> list[Array]:
        """Gradient of ``sum(grad_L * laplacian(x, dims))`` with respect to each of :attr:`params`.

        Physics-informed training on ``Δu`` or ``u_xx``: with ``grad_L`` the
        gradient of a loss with respect to the per-sample Laplacians, this is the
        loss's gradient with respect to the parameters, summed over the batch.
        Reverse mode over the collapsed Taylor pass (:meth:`laplacian_and_pullback`).

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
        grad_L : array_like of shape (d_out,) or (n, d_out)
        dims : sequence of int, optional
            The inputs of the Laplacian (all by default).
        chunk_size : int, optional
            Samples per chunk; by default chunks fit the memory budget.

        Returns
        -------
        list of ndarray
            One array per entry of :attr:`params`, of the same shape.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh, check_param_grads
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(3, 6)), rng.normal(size=6)), Tanh(), Affine(rng.normal(size=(6, 1)))])
        >>> x = rng.normal(size=(10, 3))
        >>> grads = net.laplacian_param_grad(x, np.ones((10, 1)), dims=[0, 1])  # of sum(u_00 + u_11)
        >>> [g.shape for g in grads]
        [(3, 6), (6,), (6, 1)]
        """
        owner = "Network.laplacian_param_grad"
        x = as_input(x, self.d_in, owner)
        dims = as_dims(dims, x.shape[-1], owner)
        G = as_shaped(grad_L, x.shape[:-1] + (self._width_out(x),), "grad_L", owner)
        self._warn_if_piecewise_linear(owner, 2)
        return self._summed(
            lambda part: self._laplacian_and_pullback(x[part], dims)[1](G[part]),
            x, chunk_size, _rows(self.layers, x.shape[-1], [len(dims), 1], tape=True), owner,
        )

    # --- the passes, validated arguments -------------------------------------------

    def _taylor_and_pullback(self, x: Array, v: Array, order: int) -> tuple[Array, Callable[[Array], list[Array]]]:
        y, out, tape = _taylor.taylor_pass(self.layers, x, _taylor.line(v, order), keep=True)
        T = _taylor.stack_derivatives(y, out)

        def pullback(grad_T: Array) -> list[Array]:
            grads = [grad_T[k][..., None, :] * math.factorial(k) for k in range(1, order + 1)]
            return _taylor.taylor_pullback(self.layers, tape, grad_T[0], grads)

        return T, pullback

    def _laplacian_and_pullback(self, x: Array, dims: tuple[int, ...]) -> tuple[Array, Callable[[Array], list[Array]]]:
        batch, d, R = x.shape[:-1], x.shape[-1], len(dims)
        groups = (R,)
        E = np.eye(d, dtype=x.dtype)[list(dims)]
        series = [np.broadcast_to(E, batch + E.shape), _zeros(x.dtype, batch + (1, d))]
        _, out, tape = _taylor.taylor_pass(self.layers, x, series, groups, keep=True)
        L = 2 * out[1][..., 0, :]  # T[2] = 2 y_2, summed over the directions

        def pullback(grad_L: Array) -> list[Array]:
            grads = [_zeros(out[0].dtype, out[0].shape), 2 * grad_L[..., None, :]]
            return _taylor.taylor_pullback(self.layers, tape, None, grads, groups)

        return L, pullback

    def _summed(self, compute: Callable[[Any], list[Array]], x: Array, chunk_size: Optional[int], rows: int, owner: str) -> list[Array]:
        """``compute(part)`` summed over the parts of the batch (see :meth:`_chunks`)."""
        parts = self._chunks(x, chunk_size, rows, owner)
        total = compute(parts[0])
        for part in parts[1:]:
            for t, g in zip(total, compute(part)):
                t += g
        return total

    def _chunks(self, x: Array, chunk_size: Optional[int], rows: int, owner: str) -> list[Any]:
        """Index expressions that cut the batch into chunks of ``chunk_size`` samples, or by default
        of as many as the memory budget allows for ``rows`` rows per sample; ``[...]`` for one point."""
        if chunk_size is not None:
            chunk_size = as_positive_int(chunk_size, "chunk_size", owner)
        if x.ndim == 1:
            return [Ellipsis]
        chunk = self._auto_chunk_size(x, rows) if chunk_size is None else chunk_size
        return [slice(start, start + chunk) for start in range(0, max(len(x), 1), chunk)]

    def _width_out(self, x: Array) -> int:
        width = x.shape[-1]
        for layer in self.layers:
            width = width if layer.d_out is None else layer.d_out
        return width

    def _warn_if_piecewise_linear(self, owner: str, order: int) -> None:
        if order >= 2 and all(layer.piecewise_linear for layer in self.layers):
            warnings.warn(
                f"{owner}: every layer is piecewise linear ("
                + ", ".join(sorted({type(layer).__name__ for layer in self.layers}))
                + "), so derivatives of order 2 and more are zero almost everywhere. For nonzero "
                "curvature use smooth activations such as Tanh, Softplus, GELU or SiLU.",
                ZeroCurvatureWarning,
                stacklevel=3,
            )


def _rows(layers: Sequence[Layer], d_in: int, counts: list[int], line: bool = False, tape: bool = False) -> int:
    """Rows per sample to charge the memory budget (``Network._auto_chunk_size`` charges
    ``2 * rows * widest`` items per sample) for a Taylor pass whose coefficient ``k`` has
    ``counts[k-1]`` rows per sample.

    Counted in rows of each layer's width: a layer with a constant Jacobian holds its input
    and output coefficients, another layer also the powers of the series (``K (K - 1) / 2``
    more blocks of the widest coefficient); with ``tape`` every layer's input coefficients
    stay alive for the reverse pass.  With ``line``, the trailing constant-Jacobian layers
    write the result (which is not charged) and hold only their stacked input.
    """
    widths, width = [], d_in
    for layer in layers:
        out = width if layer.d_out is None else layer.d_out
        widths.append((width, out))
        width = out
    stop = len(layers)
    while line and stop and layers[stop - 1].constant_jacobian:
        stop -= 1
    K, total = len(counts), sum(counts)
    powers = K * (K - 1) // 2 * max(counts, default=0)
    peak = [
        total * (w_in + w_out) if layer.constant_jacobian else (2 * total + powers) * max(w_in, w_out)
        for layer, (w_in, w_out) in zip(layers[:stop], widths)
    ]
    if stop < len(layers):
        peak.append((total + 1) * widths[stop][0])
    need = max(peak, default=0) + (total * sum(w_in for w_in, _ in widths) if tape else 0)
    widest = max(max(pair) for pair in widths)
    return max(1, -(-need // (2 * widest)))


def _biharmonic_directions(d: int, dims: tuple[int, ...]) -> tuple[Array, tuple[int, ...], list[float]]:
    """Directions ``e_k`` and ``e_k +- e_l`` (``k < l`` in ``dims``), their groups and weights.

    ``sum_k w z_k**4 + sum_{k<l} ((z_k + z_l)**4 + (z_k - z_l)**4) / 6 = |z|**4``
    with ``w = 1 - (m - 1) / 3``: the fourth directional derivatives along them,
    so weighted, add up to the biharmonic.  The group of the ``e_k`` is left out
    when ``w = 0`` (``m = 4``).
    """
    m = len(dims)
    eye = np.eye(d)
    axes = [eye[k] for k in dims]
    pairs = [axes[a] + sign * axes[b] for a in range(m) for b in range(a + 1, m) for sign in (1.0, -1.0)]
    blocks, groups, weights = [], [], []
    w = 1 - (m - 1) / 3
    if w != 0:
        blocks += axes
        groups.append(m)
        weights.append(w)
    if pairs:
        blocks += pairs
        groups.append(len(pairs))
        weights.append(1 / 6)
    return np.array(blocks), tuple(groups), weights
