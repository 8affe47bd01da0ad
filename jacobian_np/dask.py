"""Per-sample derivatives of datasets larger than memory, on Dask.

Each function here takes a :class:`dask.array.Array` ``X`` of shape ``(n, d_in)``,
chunked along its rows, and returns Dask arrays, lazily: nothing is computed
until you call ``.compute()``, ``.persist()``, ``da.store`` or ``.to_zarr``.  The
samples are independent, so each block of rows goes through the network's own
in-memory method (``net.jacobian``, ``net.hessian``, ...) on its own, and the
results equal the in-memory ones.  The results are chunked along rows exactly as
``X`` is; columns split into several chunks are merged first, because each
sample needs its whole input vector.

The work of a block is one call of a module-level function on plain NumPy
objects, so the graph pickles and runs on any scheduler: threads, processes or
``dask.distributed``.  Worker processes limit their BLAS to ``blas_threads``
threads (one by default, through ``threadpoolctl``), so that workers, not BLAS,
share out the cores, and use the memory budget
(:func:`jacobian_np.set_memory_budget`) that was in force when the graph was
built.  The process that builds the graph (the ``sync`` and ``threads``
schedulers run blocks there) keeps its own settings.

Dask is an optional dependency (``pip install "jacobian_np[dask]"``), imported
when one of these functions is called; ``import jacobian_np`` never imports it.
See ``docs/scale.md`` for choosing chunk sizes and for running on a cluster.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from .importers import _import_optional
from . import Network, get_memory_budget, set_memory_budget

if TYPE_CHECKING:  # pragma: no cover
    from dask.array import Array as DaskArray
else:
    DaskArray = Any

__all__ = ["biharmonic", "divergence", "forward_backward", "hessian", "hessian_diagonal", "jacobian", "jvp", "laplacian", "taylor", "vjp"]


# --- the public functions: one call of the generic wrapper each ------------------------


def forward_backward(
    net: Network, X: DaskArray, mode: str = "auto", *, blas_threads: Optional[int] = 1
) -> tuple[DaskArray, DaskArray]:
    """The output and the per-sample Jacobian of a chunked dataset, lazily.

    Parameters
    ----------
    net : Network
        The network, with ``d_in`` equal to the width of ``X``.
    X : dask.array.Array of shape (n, d_in)
        The samples, chunked along rows (column chunks are merged).
    mode : {"auto", "forward", "reverse"}
        As in :meth:`Network.jacobian`.
    blas_threads : int or None, default 1
        BLAS threads in each worker process that runs blocks (the ``processes``
        scheduler's, ``dask.distributed`` workers); ``None`` leaves them alone.
        The process that builds the graph keeps its own setting.

    Returns
    -------
    y : dask.array.Array of shape (n, d_out)
    J : dask.array.Array of shape (n, d_out, d_in)
        ``J[i, j, k] = d y[i, j] / d x[i, k]``; both chunked along rows as ``X``.

    Raises
    ------
    TypeError
        If ``X`` is not a Dask array, or its dtype is not real and numeric.
    ValueError
        If ``X`` is not 2-D, its width is not ``net.d_in``, or ``mode`` is unknown;
        before any work.

    See Also
    --------
    Network.forward_backward : the same for an in-memory batch.
    jacobian_np.dask.jacobian : ``J`` alone, which skips work only ``y`` needs.
    jacobian_np.set_memory_budget : sizes the chunks inside each block.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import jacobian_np.dask as jnd
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 4))), Tanh(), Affine(rng.normal(size=(4, 2)))])
    >>> X = da.from_array(rng.normal(size=(10, 3)), chunks=(4, 3))
    >>> y, J = jnd.forward_backward(net, X)
    >>> J.shape, J.chunks[0]
    ((10, 2, 3), (4, 4, 2))
    >>> y_ref, J_ref = net.forward_backward(X.compute())
    >>> np.allclose(y.compute(), y_ref) and np.allclose(J.compute(), J_ref)
    True
    """
    return _rowwise(net, X, "forward_backward", mode, blas_threads=blas_threads)


def jacobian(net: Network, X: DaskArray, mode: str = "auto", *, blas_threads: Optional[int] = 1) -> DaskArray:
    """The per-sample Jacobian of a chunked dataset, lazily.

    Parameters
    ----------
    net : Network
        The network, with ``d_in`` equal to the width of ``X``.
    X : dask.array.Array of shape (n, d_in)
        The samples, chunked along rows (column chunks are merged).
    mode : {"auto", "forward", "reverse"}
        As in :meth:`Network.jacobian`.
    blas_threads : int or None, default 1
        BLAS threads in each worker process that runs blocks (the ``processes``
        scheduler's, ``dask.distributed`` workers); ``None`` leaves them alone.
        The process that builds the graph keeps its own setting.

    Returns
    -------
    J : dask.array.Array of shape (n, d_out, d_in)
        ``J[i, j, k] = d y[i, j] / d x[i, k]``, chunked along rows as ``X``.

    Raises
    ------
    TypeError
        If ``X`` is not a Dask array, or its dtype is not real and numeric.
    ValueError
        If ``X`` is not 2-D, its width is not ``net.d_in``, or ``mode`` is unknown;
        before any work.

    See Also
    --------
    Network.jacobian : the same for an in-memory batch.
    jacobian_np.dask.forward_backward : the output too.
    jacobian_np.dask.jvp, jacobian_np.dask.vjp : one product with ``J`` per sample, far smaller than ``J``.

    Examples
    --------
    Write the Jacobian of a dataset block by block, never holding all of it:

    >>> import dask.array as da
    >>> import numpy as np
    >>> import jacobian_np.dask as jnd
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 4))), Tanh(), Affine(rng.normal(size=(4, 2)))])
    >>> X = da.from_array(rng.normal(size=(1000, 3)), chunks=(250, 3))
    >>> J = jnd.jacobian(net, X)
    >>> J
    dask.array<...shape=(1000, 2, 3), dtype=float64, chunksize=(250, 2, 3)...>
    >>> out = np.empty(J.shape)  # or a Zarr array, or J.to_zarr(path)
    >>> da.store(J, out)
    >>> np.allclose(out, net.jacobian(X.compute()))
    True
    """
    return _rowwise(net, X, "jacobian", mode, blas_threads=blas_threads)


def hessian(net: Network, X: DaskArray, *, blas_threads: Optional[int] = 1) -> DaskArray:
    """The per-sample Hessian of a chunked dataset, lazily.

    Parameters
    ----------
    net : Network
        The network, with ``d_in`` equal to the width of ``X``.
    X : dask.array.Array of shape (n, d_in)
        The samples, chunked along rows (column chunks are merged).
    blas_threads : int or None, default 1
        BLAS threads in each worker process that runs blocks (the ``processes``
        scheduler's, ``dask.distributed`` workers); ``None`` leaves them alone.
        The process that builds the graph keeps its own setting.

    Returns
    -------
    H : dask.array.Array of shape (n, d_out, d_in, d_in)
        ``H[i, j, k, l] = d² y[i, j] / d x[i, k] d x[i, l]``, chunked along rows as ``X``.

    Raises
    ------
    TypeError
        If ``X`` is not a Dask array, or its dtype is not real and numeric.
    ValueError
        If ``X`` is not 2-D or its width is not ``net.d_in``; before any work.
    NotImplementedError
        If a layer lacks second derivatives (raised before any work too).

    See Also
    --------
    Network.hessian : the same for an in-memory batch.
    jacobian_np.dask.laplacian : its trace, much smaller and cheaper.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import jacobian_np.dask as jnd
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 4))), Tanh(), Affine(rng.normal(size=(4, 2)))])
    >>> X = da.from_array(rng.normal(size=(10, 3)), chunks=5)
    >>> H = jnd.hessian(net, X)
    >>> H.shape
    (10, 2, 3, 3)
    >>> np.allclose(H.compute(), net.hessian(X.compute()))
    True
    """
    return _rowwise(net, X, "hessian", blas_threads=blas_threads)


def laplacian(
    net: Network, X: DaskArray, dims: Optional[Sequence[int]] = None, *, blas_threads: Optional[int] = 1
) -> DaskArray:
    """The per-sample Laplacian (trace of the Hessian) of a chunked dataset, lazily.

    Parameters
    ----------
    net : Network
        The network, with ``d_in`` equal to the width of ``X``.
    X : dask.array.Array of shape (n, d_in)
        The samples, chunked along rows (column chunks are merged).
    dims : sequence of int, optional
        The inputs to sum over, as in :meth:`Network.laplacian`; all by default.
        (The exact Laplacian only: a Hutchinson estimate would draw its
        directions block by block.)
    blas_threads : int or None, default 1
        BLAS threads in each worker process that runs blocks (the ``processes``
        scheduler's, ``dask.distributed`` workers); ``None`` leaves them alone.
        The process that builds the graph keeps its own setting.

    Returns
    -------
    L : dask.array.Array of shape (n, d_out)
        ``L[i, j] = sum_k d² y[i, j] / d x[i, k]²``, chunked along rows as ``X``.

    Raises
    ------
    TypeError
        If ``X`` is not a Dask array, or its dtype is not real and numeric.
    ValueError
        If ``X`` is not 2-D or its width is not ``net.d_in``; before any work.
    NotImplementedError
        If a layer lacks second derivatives (raised before any work too).

    See Also
    --------
    Network.laplacian : the same for an in-memory batch.
    jacobian_np.dask.hessian : every second derivative.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import jacobian_np.dask as jnd
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 4))), Tanh(), Affine(rng.normal(size=(4, 2)))])
    >>> X = da.from_array(rng.normal(size=(10, 3)), chunks=5)
    >>> np.allclose(jnd.laplacian(net, X).compute(), net.laplacian(X.compute()))
    True
    """
    return _rowwise(net, X, "laplacian", dims, blas_threads=blas_threads)


def hessian_diagonal(
    net: Network, X: DaskArray, dims: Optional[Sequence[int]] = None, *, blas_threads: Optional[int] = 1
) -> DaskArray:
    """``d² y_j / d x_k²`` for ``k`` in ``dims``, per sample of a chunked dataset, lazily.

    As :meth:`Network.hessian_diagonal`, of shape ``(n, d_out, len(dims))``, chunked
    along rows as ``X``; the parameters are those of :func:`laplacian`.

    See Also
    --------
    Network.hessian_diagonal : the same for an in-memory batch.
    jacobian_np.dask.laplacian : their sum.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import jacobian_np.dask as jnd
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 4))), Tanh(), Affine(rng.normal(size=(4, 2)))])
    >>> X = da.from_array(rng.normal(size=(10, 3)), chunks=5)
    >>> np.allclose(jnd.hessian_diagonal(net, X, [0, 2]).compute(), net.hessian_diagonal(X.compute(), dims=[0, 2]))
    True
    """
    return _rowwise(net, X, "hessian_diagonal", blas_threads=blas_threads, dims=dims)


def divergence(net: Network, X: DaskArray, *, blas_threads: Optional[int] = 1) -> DaskArray:
    """The exact divergence ``sum_k dy_k / dx_k`` of a vector field, per sample, lazily.

    As :meth:`Network.divergence` with ``method="exact"``, of shape ``(n,)``; the
    parameters are those of :func:`jacobian`.

    See Also
    --------
    Network.divergence : the same for an in-memory batch, also as a Hutchinson estimate.
    jacobian_np.dask.jacobian : the whole Jacobian.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import jacobian_np.dask as jnd
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 4))), Tanh(), Affine(rng.normal(size=(4, 3)))])
    >>> X = da.from_array(rng.normal(size=(10, 3)), chunks=5)
    >>> np.allclose(jnd.divergence(net, X).compute(), net.divergence(X.compute()))
    True
    """
    return _rowwise(net, X, "divergence", blas_threads=blas_threads)


def biharmonic(
    net: Network, X: DaskArray, dims: Optional[Sequence[int]] = None, *, blas_threads: Optional[int] = 1
) -> DaskArray:
    """The biharmonic ``sum_{k,l in dims} d⁴ y / dx_k² dx_l²``, per sample, lazily.

    As :meth:`Network.biharmonic`, of shape ``(n, d_out)``; the parameters are
    those of :func:`laplacian`.

    See Also
    --------
    Network.biharmonic : the same for an in-memory batch.
    jacobian_np.dask.taylor : directional derivatives of any order.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import jacobian_np.dask as jnd
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(2, 4))), Tanh(), Affine(rng.normal(size=(4, 1)))])
    >>> X = da.from_array(rng.normal(size=(10, 2)), chunks=5)
    >>> np.allclose(jnd.biharmonic(net, X).compute(), net.biharmonic(X.compute()))
    True
    """
    return _rowwise(net, X, "biharmonic", dims, blas_threads=blas_threads)


def taylor(net: Network, X: DaskArray, v: Any, order: int, *, blas_threads: Optional[int] = 1) -> DaskArray:
    """Derivatives ``d^k/dt^k y(x + t v)`` for ``k = 0..order``, per sample, lazily.

    As :meth:`Network.taylor`: of shape ``(order + 1, n, d_out)``, chunked along
    its second axis as ``X`` along its rows.  ``v`` is one direction of shape
    ``(d_in,)`` or a Dask array of shape ``(n, d_in)``, one per sample.

    See Also
    --------
    Network.taylor : the same for an in-memory batch.
    jacobian_np.dask.jvp : the first derivative alone.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import jacobian_np.dask as jnd
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(1, 4))), Tanh(), Affine(rng.normal(size=(4, 1)))])
    >>> X = da.from_array(rng.normal(size=(10, 1)), chunks=5)
    >>> T = jnd.taylor(net, X, np.ones(1), 3)
    >>> T.shape, np.allclose(T.compute(), net.taylor(X.compute(), np.ones(1), 3))
    ((4, 10, 1), True)
    """
    return _rowwise(net, X, "taylor", v, order, blas_threads=blas_threads, batch_axis=1)


def jvp(net: Network, X: DaskArray, v: Any, *, blas_threads: Optional[int] = 1) -> tuple[DaskArray, DaskArray]:
    """The output and the Jacobian-vector product ``J v`` of a chunked dataset, lazily.

    Parameters
    ----------
    net : Network
        The network, with ``d_in`` equal to the width of ``X``.
    X : dask.array.Array of shape (n, d_in)
        The samples, chunked along rows (column chunks are merged).
    v : array_like of shape (d_in,), or dask.array.Array of shape (n, d_in)
        One direction for every sample, or one per sample (rechunked to the rows
        of ``X``).
    blas_threads : int or None, default 1
        BLAS threads in each worker process that runs blocks (the ``processes``
        scheduler's, ``dask.distributed`` workers); ``None`` leaves them alone.
        The process that builds the graph keeps its own setting.

    Returns
    -------
    y : dask.array.Array of shape (n, d_out)
    Jv : dask.array.Array of shape (n, d_out)
        ``Jv[i] = J(x[i]) @ v[i]``; both chunked along rows as ``X``.

    Raises
    ------
    TypeError
        If ``X`` is not a Dask array, or a dtype is not real and numeric.
    ValueError
        If ``X`` is not 2-D, or a width or the number of rows of ``v`` is wrong;
        before any work.

    See Also
    --------
    Network.jvp : the same for an in-memory batch.
    jacobian_np.dask.vjp : ``u^T J``, by reverse mode.
    jacobian_np.dask.jacobian : the whole ``J``.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import jacobian_np.dask as jnd
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 4))), Tanh(), Affine(rng.normal(size=(4, 2)))])
    >>> X = da.from_array(rng.normal(size=(10, 3)), chunks=5)
    >>> y, Jv = jnd.jvp(net, X, np.array([1.0, 0.0, 0.0]))  # d y / d x_0
    >>> np.allclose(Jv.compute(), net.jacobian(X.compute())[:, :, 0])
    True
    """
    return _rowwise(net, X, "jvp", v, blas_threads=blas_threads)


def vjp(net: Network, X: DaskArray, u: Any, *, blas_threads: Optional[int] = 1) -> tuple[DaskArray, DaskArray]:
    """The output and the vector-Jacobian product ``u^T J`` of a chunked dataset, lazily.

    Parameters
    ----------
    net : Network
        The network, with ``d_in`` equal to the width of ``X``.
    X : dask.array.Array of shape (n, d_in)
        The samples, chunked along rows (column chunks are merged).
    u : array_like of shape (d_out,), or dask.array.Array of shape (n, d_out)
        One weighting of the outputs for every sample, or one per sample
        (rechunked to the rows of ``X``).
    blas_threads : int or None, default 1
        BLAS threads in each worker process that runs blocks (the ``processes``
        scheduler's, ``dask.distributed`` workers); ``None`` leaves them alone.
        The process that builds the graph keeps its own setting.

    Returns
    -------
    y : dask.array.Array of shape (n, d_out)
    uJ : dask.array.Array of shape (n, d_in)
        ``uJ[i] = u[i] @ J(x[i])``; both chunked along rows as ``X``.

    Raises
    ------
    TypeError
        If ``X`` is not a Dask array, or a dtype is not real and numeric.
    ValueError
        If ``X`` is not 2-D, or a width or the number of rows of ``u`` is wrong;
        before any work.

    See Also
    --------
    Network.vjp : the same for an in-memory batch.
    jacobian_np.dask.jvp : ``J v``, by forward mode.
    jacobian_np.dask.jacobian : the whole ``J``.

    Examples
    --------
    Input gradients of a per-sample loss, ``d (u . y) / d x``:

    >>> import dask.array as da
    >>> import numpy as np
    >>> import jacobian_np.dask as jnd
    >>> from jacobian_np import Affine, Network, Tanh
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(3, 4))), Tanh(), Affine(rng.normal(size=(4, 2)))])
    >>> X = da.from_array(rng.normal(size=(10, 3)), chunks=5)
    >>> U = da.from_array(rng.normal(size=(10, 2)), chunks=2)  # rechunked to X's rows
    >>> y, uJ = jnd.vjp(net, X, U)
    >>> uJ.chunks[0]
    (5, 5)
    >>> np.allclose(uJ.compute(), np.einsum("ij,ijk->ik", U.compute(), net.jacobian(X.compute())))
    True
    """
    return _rowwise(net, X, "vjp", u, blas_threads=blas_threads)


# --- the generic wrapper -----------------------------------------------------------------


def _rowwise(
    net: Network,
    X: DaskArray,
    method: str,
    *args: Any,
    blas_threads: Optional[int] = 1,
    batch_axis: int = 0,
    **options: Any,
) -> Any:
    """``getattr(net, method)(X, *args, **options)`` block by block of rows, lazily.

    ``args`` that are Dask arrays are per-sample (one row per row of ``X``) and go
    block by block with ``X``; anything else goes whole to every block.  The
    method's outputs have the batch axis at ``batch_axis`` (0 for every method
    so far; 1 for ``taylor``, whose order axis comes first) and their other
    (core) axes are read from a call on zero rows, which also runs every check of
    the arguments before any work.  Returns one Dask array, or a tuple of them when
    the method returns a tuple.
    """
    da = _import_optional("dask.array", "dask[array]", "dask", f"jacobian_np.dask.{method}")
    owner = f"jacobian_np.dask.{method}"
    X = _as_rows(X, net, owner, da)
    per_sample = [i for i, a in enumerate(args) if isinstance(a, da.Array)]
    args = tuple(_aligned(a, X, owner, da) if i in per_sample else a for i, a in enumerate(args))
    threads = _blas_threads(blas_threads, owner)

    # The call on zero rows: validates everything and gives the outputs' dtypes and core shapes.
    empty = [np.zeros((0,) + a.shape[1:], a.dtype) if i in per_sample else a for i, a in enumerate(args)]
    probe = getattr(net, method)(np.zeros((0, X.shape[1]), X.dtype), *empty, **options)
    several = isinstance(probe, tuple)
    outputs = [np.moveaxis(p, batch_axis, 0) for p in (probe if several else (probe,))]

    block = functools.partial(
        _block,
        net=net,
        method=method,
        per_sample=tuple(per_sample),
        constants=tuple(None if i in per_sample else a for i, a in enumerate(args)),
        options=options,
        batch_axis=batch_axis,
        worker_settings=(os.getpid(), threads, get_memory_budget()),
    )
    inputs = "(x)" + "".join(f",(a{i})" for i in per_sample)
    cores = [[f"o{k}_{a}" for a in range(out.ndim - 1)] for k, out in enumerate(outputs)]
    signature = inputs + "->" + ",".join("(" + ",".join(core) + ")" for core in cores)
    sizes = {name: size for core, out in zip(cores, outputs) for name, size in zip(core, out.shape[1:])}
    results = da.apply_gufunc(
        block,
        signature,
        X,
        *(args[i] for i in per_sample),
        output_dtypes=tuple(out.dtype for out in outputs) if several else outputs[0].dtype,
        output_sizes=sizes,
        vectorize=False,
    )
    results = [da.moveaxis(r, 0, batch_axis) if batch_axis else r for r in (results if several else (results,))]
    return tuple(results) if several else results[0]


def _as_rows(X: Any, net: Network, owner: str, da: Any) -> DaskArray:
    """Check ``X`` is a 2-D Dask array of the network's width; merge its column chunks."""
    if not isinstance(X, da.Array):
        raise TypeError(
            f"{owner} expects X as a dask.array.Array of shape (n, d_in); got {type(X).__name__}. "
            f"Wrap it with dask.array.from_array(X, chunks=(rows, -1)), or call the Network method "
            f"directly for an in-memory array."
        )
    if X.ndim != 2:
        raise ValueError(f"{owner} expects X of shape (n, d_in) chunked along rows; got a {X.ndim}-D array of shape {X.shape}.")
    if net.d_in is not None and X.shape[1] != net.d_in:
        raise ValueError(f"{owner} expects X with {net.d_in} columns (the network's d_in); got shape {X.shape}.")
    return X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X


def _aligned(a: DaskArray, X: DaskArray, owner: str, da: Any) -> DaskArray:
    """A per-sample argument: 2-D, one row per row of ``X``, in ``X``'s row chunks."""
    if a.ndim != 2 or a.shape[0] != X.shape[0]:
        raise ValueError(
            f"{owner} expects a per-sample Dask argument of shape ({X.shape[0]}, width), one row per row of X; "
            f"got shape {a.shape}."
        )
    return a.rechunk((X.chunks[0], -1))


def _blas_threads(value: Any, owner: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner} expects blas_threads as a positive integer or None; got {type(value).__name__}.")
    if value < 1:
        raise ValueError(f"{owner} expects blas_threads as a positive integer or None; got {value}.")
    return int(value)


# --- what runs on the workers --------------------------------------------------------------


def _block(
    x: np.ndarray,
    *arrays: np.ndarray,
    net: Network,
    method: str,
    per_sample: tuple[int, ...],
    constants: tuple[Any, ...],
    options: dict[str, Any],
    batch_axis: int,
    worker_settings: tuple[int, Optional[int], int],
) -> Any:
    """One block of rows through the in-memory method; outputs with the batch axis first.

    Module-level, and called with plain NumPy objects, so that a task pickles.
    """
    _configure_worker(*worker_settings)
    given = iter(arrays)
    args = [next(given) if i in per_sample else c for i, c in enumerate(constants)]
    result = getattr(net, method)(x, *args, **options)
    if batch_axis:
        result = tuple(np.moveaxis(r, batch_axis, 0) for r in result) if isinstance(result, tuple) else np.moveaxis(result, batch_axis, 0)
    return result


_worker_lock = threading.Lock()
_worker_blas_threads: list[Optional[int]] = [None]  # what this process's BLAS was limited to, if it was


def _configure_worker(builder: int, blas_threads: Optional[int], memory_budget: int) -> None:
    """In a worker process, apply the settings of the process that built the graph.

    A worker process (the ``processes`` scheduler's, a ``dask.distributed``
    worker's) exists to run blocks, so its settings change for the rest of its
    life: the memory budget, and the BLAS thread limit (through ``threadpoolctl``;
    once per process, since the limit is process-wide and ``threadpoolctl`` lets
    only one thread control OpenBLAS at a time).  The process that built the
    graph (the ``sync`` and ``threads`` schedulers) keeps its own settings: they
    are the caller's (``docs/scale.md``).
    """
    if os.getpid() == builder:
        return
    if get_memory_budget() != memory_budget:
        set_memory_budget(memory_budget)
    if blas_threads is None or _worker_blas_threads[0] == blas_threads:
        return
    with _worker_lock:
        if _worker_blas_threads[0] != blas_threads:
            threadpoolctl = _import_optional("threadpoolctl", "threadpoolctl", "dask", "jacobian_np.dask")
            threadpoolctl.threadpool_limits(limits=blas_threads, user_api="blas")  # kept: not a with block
            # recent threadpoolctl gives control of OpenBLAS to the first thread that sets it;
            # hand it back so that another graph's blocks, in another thread, can set theirs.
            release = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
            if release is not None:
                release()
            _worker_blas_threads[0] = blas_threads
