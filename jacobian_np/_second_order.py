"""Second-order entry points: ``hessian``, ``laplacian`` and ``hessian_diagonal``.

Forward over forward mode (``Layer.push_second``): one pass carries, with the
values, first tangents ``T`` and second tangents ``S`` of pairs of directions
(``docs/second_order.md``).  The Hessian uses the pairs ``k <= l`` of the input
directions; the Hessian diagonal the pairs ``(k, k)``; the Laplacian collapses
those into one summed row (the forward Laplacian), exact over unit directions or
a Hutchinson estimate over random ones.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

from ._chain import require
from ._plans import second_order_plan_for
from ._typing import Array
from ._validation import as_input, hutchinson_directions, input_dims, method_and_samples
from .errors import ZeroCurvatureWarning


class SecondOrderMethods:
    """The second-order methods of :class:`~jacobian_np.Network` (see the module)."""

    layers: Any
    d_in: Optional[int]
    piecewise_linear: bool
    _trace: Any
    _batched: Any
    _forward_stop: int
    push_second: Any

    def hessian(self, x: npt.ArrayLike, chunk_size: Optional[int] = None) -> Array:
        """Second derivatives of the outputs with respect to the inputs, per sample.

        Forward over forward mode: one pass carries, alongside the values, the
        ``d_in`` first tangents and the ``d_in (d_in + 1) / 2`` second tangents of
        the pairs ``k <= l``; the other half is filled by symmetry.  Each affine
        layer costs one matrix product for each block.  See ``docs/second_order.md``.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
            One point or a batch (``n`` may be 0).
        chunk_size : int, optional
            Samples per chunk, as in :meth:`jacobian`; by default chunks fit the
            memory budget.

        Returns
        -------
        H : ndarray of shape (d_out, d_in, d_in) or (n, d_out, d_in, d_in)
            ``H[i, j, k, l] = d^2 y[i, j] / dx[i, k] dx[i, l]``, exactly symmetric
            in ``k, l``.

        Raises
        ------
        NotImplementedError
            If a layer lacks second-order support (the message names it).

        Warns
        -----
        ZeroCurvatureWarning
            If every layer is piecewise linear (ReLU, LeakyReLU, Identity, Affine):
            the result is then zero almost everywhere.

        See Also
        --------
        laplacian : its trace, much cheaper than the whole Hessian.
        hessian_diagonal : only the terms ``k == l``, without the others.
        jacobian : the first derivatives.
        jacobian_np.dask.hessian : the same for a dataset larger than memory.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> net = Network([Affine([[1.0, 2.0]]), Tanh(), Affine([[1.0], [1.0]])])
        >>> x = np.array([[0.3], [-0.2]])
        >>> H = net.hessian(x)
        >>> H.shape
        (2, 1, 1, 1)
        >>> t1, t2 = np.tanh(x), np.tanh(2 * x)  # y = tanh(x) + tanh(2x)
        >>> np.allclose(H[:, 0, 0, 0], (-2 * t1 * (1 - t1**2) - 8 * t2 * (1 - t2**2))[:, 0])
        True
        """
        x = self._second_order_input(x, "hessian")
        d = x.shape[-1]
        first, second = _upper_pairs(d)
        unit_rows = _unit_rows(x, range(d))
        where = np.empty((d, d), dtype=np.intp)  # which pair holds H[k, l]
        where[first, second] = where[second, first] = np.arange(len(first))

        def compute(part: Array) -> tuple[Array]:
            S = self._second_tangents(part, unit_rows, (first, second) if d > 1 else None, False)
            H = np.take(S, where.ravel(), axis=-2)  # (*batch, d * d, d_out)
            return (np.ascontiguousarray(np.swapaxes(H, -1, -2)).reshape(S.shape[:-2] + (S.shape[-1], d, d)),)

        # per sample: d tangents and d (d + 1) / 2 second tangents, then the d * d entries twice
        return self._batched(compute, x, chunk_size, d + len(first) + 2 * d * d, "Network.hessian")[0]

    def laplacian(
        self,
        x: npt.ArrayLike,
        dims: Optional[Sequence[int]] = None,
        method: str = "exact",
        samples: Optional[int] = None,
        seed: Any = None,
        *,
        chunk_size: Optional[int] = None,
    ) -> Array:
        """The Laplacian of each output, ``sum_k d^2 y_j / dx_k^2`` over ``k`` in ``dims``, per sample.

        ``method="exact"`` is the forward Laplacian (collapsed Taylor mode): one
        pass carries the values, the tangents of the unit directions of ``dims``
        and a single second-order row that collects ``sum_k D^2 f[e_k, e_k]`` as
        it goes, so it costs about ``len(dims) + 2`` forward passes and never forms
        the Hessian.  ``method="hutchinson"`` replaces the unit directions by
        ``samples`` random Rademacher directions ``v`` (entries +-1 on ``dims``,
        0 elsewhere) per sample and returns ``mean_s v_s^T H v_s``, an unbiased
        estimate that costs about ``samples + 2`` forward passes
        (``docs/taylor.md``).

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
        dims : sequence of int, optional
            The inputs to differentiate along (for example the space variables
            but not time); all inputs by default.
        method : {"exact", "hutchinson"}
        samples : int, optional
            Directions per sample; required for ``"hutchinson"``.
        seed : int or numpy.random.Generator, optional
            For ``"hutchinson"``: the directions are drawn with
            ``numpy.random.default_rng(seed)``, so a seed makes them reproducible.
        chunk_size : int, optional
            Samples per chunk, as in :meth:`jacobian`.

        Returns
        -------
        ndarray of shape (d_out,) or (n, d_out)

        Raises
        ------
        ValueError
            If ``dims`` is out of range or repeats an input, or for a bad
            ``method`` or ``samples``.
        NotImplementedError
            If a layer lacks second-order support (the message names it).

        Warns
        -----
        ZeroCurvatureWarning
            As in :meth:`hessian`.

        See Also
        --------
        hessian : all second derivatives.
        hessian_diagonal : the terms of the sum, one by one.
        divergence : the first-order counterpart for vector fields.
        jacobian_np.dask.laplacian : the same for a dataset larger than memory.
        to_onnx : export a network with its Laplacian (``laplacian=True``).

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(3, 16))), Tanh(), Affine(rng.normal(size=(16, 1)))])
        >>> X = rng.normal(size=(5, 3))
        >>> lap = net.laplacian(X)
        >>> lap.shape
        (5, 1)
        >>> H = net.hessian(X)
        >>> np.allclose(lap, np.trace(H, axis1=-2, axis2=-1))
        True
        >>> np.allclose(net.laplacian(X, dims=[0, 2]), H[..., 0, 0] + H[..., 2, 2])
        True
        >>> estimate = net.laplacian(X, method="hutchinson", samples=4000, seed=0)
        >>> bool(np.all(np.abs(estimate - lap) < 0.1 * (1 + np.abs(lap))))
        True
        """
        x = self._second_order_input(x, "laplacian")
        dims = input_dims(dims, x.shape[-1], "Network.laplacian")
        method, samples = method_and_samples(method, samples, "Network.laplacian")
        if method == "exact":
            unit_rows = _unit_rows(x, dims)
            return self._batched(
                lambda part: (self._second_tangents(part, unit_rows, None, True)[..., 0, :],),
                x, chunk_size, len(dims) + 1, "Network.laplacian",
            )[0]
        directions = hutchinson_directions(x, samples, dims, seed)  # drawn whole: the same whatever the chunks

        def estimate(part: Array, V: Array) -> tuple[Array]:
            S = self._second_tangents(part, V.astype(part.dtype), None, True)
            return (S[..., 0, :] / samples,)

        return self._batched(estimate, x, chunk_size, samples + 1, "Network.laplacian", directions)[0]

    def hessian_diagonal(
        self, x: npt.ArrayLike, *, dims: Optional[Sequence[int]] = None, chunk_size: Optional[int] = None
    ) -> Array:
        """The second derivatives ``d^2 y_j / dx_k^2`` for ``k`` in ``dims``, per sample.

        One forward-over-forward pass with the tangents of the unit directions of
        ``dims`` and the second tangents of the pairs ``(k, k)``: about
        ``2 len(dims) + 1`` forward passes, without the off-diagonal terms of the
        Hessian.  Summed over its last axis it is :meth:`laplacian` with the same
        ``dims``.

        Parameters
        ----------
        x : array_like of shape (d_in,) or (n, d_in)
        dims : sequence of int, optional
            The inputs, in the order wanted; all by default.
        chunk_size : int, optional
            Samples per chunk, as in :meth:`jacobian`.

        Returns
        -------
        ndarray of shape (d_out, len(dims)) or (n, d_out, len(dims))

        Raises
        ------
        ValueError
            If ``dims`` is out of range or repeats an input.

        See Also
        --------
        hessian : every second derivative, the off-diagonal ones too.
        laplacian : the sum of these terms, cheaper when only the sum is needed.

        Examples
        --------
        >>> import numpy as np
        >>> from jacobian_np import Affine, Network, Tanh
        >>> rng = np.random.default_rng(0)
        >>> net = Network([Affine(rng.normal(size=(3, 16))), Tanh(), Affine(rng.normal(size=(16, 2)))])
        >>> X = rng.normal(size=(5, 3))
        >>> D = net.hessian_diagonal(X, dims=[2, 0])
        >>> D.shape
        (5, 2, 2)
        >>> H = net.hessian(X)
        >>> np.allclose(D, np.stack([H[..., 2, 2], H[..., 0, 0]], axis=-1))
        True
        """
        x = self._second_order_input(x, "hessian_diagonal")
        dims = input_dims(dims, x.shape[-1], "Network.hessian_diagonal")
        seed_rows = _unit_rows(x, dims)
        (S,) = self._batched(
            lambda part: (self._second_tangents(part, seed_rows, None, False),),
            x, chunk_size, 2 * len(dims) + 1, "Network.hessian_diagonal",
        )
        return np.ascontiguousarray(np.swapaxes(S, -1, -2))

    def _second_order_input(self, x: npt.ArrayLike, kind: str) -> Array:
        """Validate ``x``, check the layers' second-order support, warn about zero curvature."""
        x = as_input(x, self.d_in, f"Network.{kind}")
        require(self, ("curvature",), f"Network.{kind}", "An Elementwise layer implements it through fsecond.")
        if self.piecewise_linear:
            names = sorted({type(layer).__name__ for layer in _leaves(self)})
            warnings.warn(
                f"Network.{kind}: every layer is piecewise linear ({', '.join(names)}), so second "
                "derivatives are zero almost everywhere. For nonzero curvature use smooth "
                "activations such as Tanh, Softplus, GELU or SiLU.",
                ZeroCurvatureWarning,
                stacklevel=3,
            )
        return x

    def _second_tangents(self, x: Array, T: Array, pairs: Any, collapse: bool) -> Array:
        """Second tangents ``(*batch, P, d_out)`` of the pairs of rows of ``T``."""
        if pairs is None:  # an execution plan when one applies (see _plans)
            plan = second_order_plan_for(self, x, T, collapse)
            if plan is not None:
                return plan(x, T)
        # the final layers with constant Jacobians need no values
        _, cache = self._trace(x, self._forward_stop)
        T = np.broadcast_to(T, x.shape[:-1] + T.shape[-2:])
        _, S = self.push_second(T, None, cache, pairs, collapse, False)
        if S is None:  # every layer has a constant Jacobian: the network is affine
            rows = 1 if collapse else (T.shape[-2] if pairs is None else len(pairs[0]))
            width = self.footprint(x.shape[-1])[0]  # type: ignore[attr-defined]
            return np.zeros(x.shape[:-1] + (rows, width), dtype=x.dtype)
        return S


def _unit_rows(x: Array, dims: Sequence[int]) -> Array:
    """The unit directions of ``dims`` as rows ``(len(dims), d_in)`` (broadcast over the batch);
    read-only, and for up to 64 inputs made once (4 of W3's 10 us of checks and set-up per call)."""
    if x.shape[-1] > 64:
        return np.eye(x.shape[-1], dtype=x.dtype)[list(dims)]
    return _small_unit_rows(x.shape[-1], tuple(dims), x.dtype)


@functools.lru_cache(maxsize=16)
def _small_unit_rows(d: int, dims: tuple, dtype: np.dtype) -> Array:
    rows = np.eye(d, dtype=dtype)[list(dims)]
    rows.flags.writeable = False  # shared by every call
    return rows


@functools.lru_cache(maxsize=16)
def _upper_pairs(d: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The pairs ``k <= l`` of ``d`` inputs, as ``np.triu_indices(d)`` (cached)."""
    first, second = np.triu_indices(d)
    first.flags.writeable = second.flags.writeable = False  # shared by every call
    return first, second


def _leaves(layer: Any) -> list:
    children = getattr(layer, "children", None)
    return [layer] if children is None else [leaf for child in children for leaf in _leaves(child)]
