"""Taylor mode's entry points: derivatives of any order, the biharmonic, and their weight gradients.

Taylor mode (``Layer.push_taylor``): one pass carries, with the values, the
normalised Taylor coefficients of paths through the input space; each layer maps
those of its input path to those of its output path by its ``taylor`` rule.  Its
reverse (``Layer.pull_taylor``, each layer's ``taylor_vjp``) gives the weight
gradients of losses on the derivatives.  The math and the cost model are in
``docs/taylor.md``; the series arithmetic in :mod:`jacobian_np._series`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Optional, Sequence

import numpy as np
import numpy.typing as npt

from ._chain import require
from ._chunking import chunk_length
from ._second_order import _leaves
from ._series import zeros
from ._steps import LayerSteps
from ._typing import Array
from ._validation import as_input, as_order, direction, input_dims
from .errors import ZeroCurvatureWarning
from .layer import Layer

Pullback = Callable[[npt.ArrayLike], list[Array]]


class TaylorMethods:
    """The Taylor-mode methods of :class:`~jacobian_np.Network` (see the module)."""

    layers: tuple[Layer, ...]
    d_in: Optional[int]
    piecewise_linear: bool
    _forward_stop: int
    _trace: Any
    _batched: Any
    _per_sample_bytes: Any
    forward_with_cache: Any
    push_taylor: Any
    pull_taylor: Any
    footprint: Any

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

        See Also
        --------
        jvp : the first derivative alone, along one direction.
        biharmonic : fourth derivatives summed over pairs of inputs.
        taylor_param_grad : the gradient of a loss on T with respect to the parameters.
        jacobian_np.dask.taylor : the same for a dataset larger than memory.

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
        owner = "Network.taylor"
        x = _taylor_input(self, x, owner, order)
        order = as_order(order, owner)
        v = direction(v, x.shape, owner, "v")
        chunk = chunk_length(self._per_sample_bytes(x, _rows(self.layers, x.shape[-1], [1] * order, line=True)), chunk_size, owner)
        if x.ndim == 1 or len(x) <= chunk:
            return self._derivatives_along_line(x, v, order)
        # the result is order-first: each chunk is written into its columns, contiguous blocks
        T: Optional[Array] = None
        for start in range(0, len(x), chunk):
            part = slice(start, start + chunk)
            T_part = self._derivatives_along_line(x[part], v[part], order)
            if T is None:
                T = np.empty(T_part.shape[:1] + x.shape[:-1] + T_part.shape[-1:], dtype=T_part.dtype)
            T[:, part] = T_part
        return T  # type: ignore[return-value]

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

        See Also
        --------
        laplacian : second derivatives summed over the inputs.
        taylor : directional derivatives of any order.
        jacobian_np.dask.biharmonic : the same for a dataset larger than memory.

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
        x = _taylor_input(self, x, owner, 4)
        dims = input_dims(dims, x.shape[-1], owner)
        directions, groups, weights = _biharmonic_directions(x.shape[-1], dims)

        def compute(part: Array) -> tuple[Array]:
            batch, width, R = part.shape[:-1], part.shape[-1], len(directions)
            series = [np.broadcast_to(directions.astype(part.dtype), batch + directions.shape)]
            series += [zeros(part.dtype, batch + (R, width))] * 2 + [zeros(part.dtype, batch + (len(groups), width))]
            _, cache = self._trace(part, self._forward_stop)  # the final constant Jacobians need no values
            top = self.push_taylor(series, cache, groups)[0][-1]  # the fourth coefficients summed per group
            total = top[..., 0, :] * (24 * weights[0])
            for g in range(1, len(groups)):
                total += top[..., g, :] * (24 * weights[g])
            return (total,)

        rows = _rows(self.layers, x.shape[-1], [len(directions)] * 3 + [len(groups)])
        (B,) = self._batched(compute, x, chunk_size, rows, owner)
        return B



    # --- the passes, on validated arguments ----------------------------------------

    def _derivatives_along_line(self, x: Array, v: Array, order: int) -> Array:
        """``T`` of shape ``(order + 1, *batch, d_out)`` for the line ``x + t v``.

        The trailing layers with constant Jacobians (and the default Taylor rules)
        form an affine map ``A z = J z + c``: they map the stacked
        ``[z_0, 1! z_1, ..., K! z_K]`` in one call each, whose result is ``T`` once
        ``c = A(0)`` is added to its first row: no separate value pass through them
        and no copy of the (often widest) output.
        """
        layers, stop = self.layers, len(self.layers)
        while stop and layers[stop - 1].constant_jacobian and _default_taylor(layers[stop - 1]):
            stop -= 1
        y, caches = self._trace(x, stop)
        series = _line(v, order)
        for layer, cache in zip(layers[:stop], caches):
            series, _ = layer.push_taylor(series, cache, None)
        if stop == len(layers):
            return _stack_derivatives(y, series)
        block = np.stack([y] + [y_k[..., 0, :] * math.factorial(k) for k, y_k in enumerate(series, 1)])
        offset = np.zeros((1, y.shape[-1]), dtype=y.dtype)
        for layer in layers[stop:]:
            block = layer.tangent(block, None)  # a constant Jacobian does not read the cache
            offset = layer.forward_with_cache(offset)[0]
        if not block.flags.writeable:
            block = block.copy()
        block[0] += offset[0]
        return block




def _default_taylor(layer: Layer) -> bool:
    """Whether the layer's Taylor rule and step are the generic ones (a constant Jacobian's:
    ``tangent`` on every coefficient), which :meth:`TaylorMethods._derivatives_along_line` fuses."""
    return type(layer).taylor is Layer.taylor and type(layer).push_taylor is LayerSteps.push_taylor


def _line(v: Array, order: int) -> list[Array]:
    """The coefficients of the line ``x + t v``, one path per sample: ``[v, 0, ..., 0]``."""
    if not order:
        return []
    direction = v[..., None, :]
    return [direction] + [zeros(v.dtype, direction.shape)] * (order - 1)


def _stack_derivatives(y: Array, out: list[Array]) -> Array:
    """``T`` of shape ``(K + 1, *batch, d_out)``: ``y`` and ``k! y_k`` of the one path per sample."""
    T = np.empty((len(out) + 1,) + y.shape, dtype=np.result_type(y, *out))
    T[0] = y
    for k, y_k in enumerate(out, 1):
        np.multiply(y_k[..., 0, :], math.factorial(k), out=T[k])
    return T


def _rows(layers: Sequence[Layer], d_in: int, counts: list[int], line: bool = False, tape: bool = False) -> int:
    """Rows per sample to charge the memory budget (``Network._per_sample_bytes`` charges
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
        out = layer.footprint(width)[0]
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


def _biharmonic_directions(d: int, dims: Sequence[int]) -> tuple[Array, tuple[int, ...], list[float]]:
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


def _taylor_input(net: Any, x: npt.ArrayLike, owner: str, order: Any, params: bool = False) -> Array:
    """Validate ``x``, check the layers' Taylor rules, warn about zero curvature from order 2."""
    x = as_input(x, net.d_in, owner)
    rules = ("taylor", "taylor_vjp", "param_grad") if params else ("taylor",)
    require(net, rules, owner)
    if isinstance(order, (int, np.integer)) and order >= 2 and net.piecewise_linear:
        names = sorted({type(layer).__name__ for layer in _leaves(net)})
        warnings.warn(
            f"{owner}: every layer is piecewise linear ({', '.join(names)}), so derivatives of order 2 "
            "and more are zero almost everywhere. For nonzero curvature use smooth activations such "
            "as Tanh, Softplus, GELU or SiLU.",
            ZeroCurvatureWarning,
            stacklevel=3,
        )
    return x

def _width_out(net: Any, x: Array) -> int:
    return net.footprint(x.shape[-1])[0]

