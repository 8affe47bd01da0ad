"""Per-sample losses of Jacobians, each with its gradient with respect to ``J``.

Each function takes per-sample square Jacobians ``J`` of shape ``(n, d, d)`` (or
one ``(d, d)``) and returns ``(value, grad_J)``: the per-sample values, shape
``(n,)``, and their gradients with respect to ``J``, shape ``(n, d, d)``.  Chain
them into a loss and pass the result to :meth:`Network.jacobian_param_grad`; for
``loss = mean((det J - 1)**2)``::

    d, d_grad = losses.det(J)
    grad_J = (2 * (d - 1) / len(d))[:, None, None] * d_grad
    grads = net.jacobian_param_grad(X, grad_J)

See ``docs/training.md``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._typing import Array
from ._validation import as_float_array


def det(J: npt.ArrayLike) -> tuple[Array, Array]:
    """Per-sample determinant and its gradient, the cofactor matrix.

    ``d det(J) / dJ = det(J) J^{-T}``, the cofactor matrix, computed without an
    inverse or a division, so it is exact for singular ``J`` too (where ``J^{-T}``
    does not exist): in closed form for ``d <= 3`` (for ``d = 3`` the rows of the
    cofactor matrix are cross products of the rows of ``J``), and otherwise from
    the singular value decomposition ``J = U diag(s) V^T`` as
    ``sign * U diag(prod_{j != i} s_j) V^T`` with ``sign = det(U) det(V)``.

    Parameters
    ----------
    J : array_like of shape (d, d) or (n, d, d)
        Per-sample square Jacobians.

    Returns
    -------
    value : ndarray of shape () or (n,)
        ``det J`` per sample.
    grad : ndarray of the shape of ``J``
        The cofactor matrix per sample, the gradient of ``value`` with respect to ``J``.

    Raises
    ------
    ValueError
        If ``J`` is not a square matrix or a stack of them.

    See Also
    --------
    log_abs_det : ``log |det J|``, for volume changes of flows.
    jacobian_np.Network.jacobian_param_grad : chains ``grad`` to the weights.
    numpy.linalg.det : the value alone, without the gradient.
    numpy.linalg.svd : the decomposition used for ``d >= 4``.

    Notes
    -----
    A sample whose ``J`` holds NaN or infinity (a diverged network) gets NaN in
    its own value and gradient, without a warning; the other samples are
    unaffected.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import losses
    >>> J = np.array([[[2.0, 1.0], [0.0, 3.0]], [[1.0, 2.0], [2.0, 4.0]]])  # the second is singular
    >>> value, grad = losses.det(J)
    >>> value.round(12)
    array([6., 0.])
    >>> cofactors = [[[3.0, 0.0], [-1.0, 2.0]], [[4.0, -2.0], [-2.0, 1.0]]]  # [[d, -c], [-b, a]]
    >>> bool(np.allclose(grad, cofactors))
    True
    """
    J = _square(J, "det")
    compute = _det_small if J.shape[-1] <= 3 else _det_svd
    if np.isfinite(J).all():  # the common case: 1.6 us on 256 2 x 2 matrices, against 6 us per sample
        return compute(J)
    finite = np.all(np.isfinite(J), axis=(-2, -1))
    # LAPACK's SVD fails (or never returns, for infinity) for a whole batch if one
    # matrix is not finite, and the closed forms warn (inf - inf): compute the
    # finite samples only and give the others NaN
    value = np.full(J.shape[:-2], np.nan, dtype=J.dtype)
    grad = np.full(J.shape, np.nan, dtype=J.dtype)
    if np.any(finite):
        value[finite], grad[finite] = compute(J[finite])
    return value, grad


def _det_svd(J: Array) -> tuple[Array, Array]:
    """Determinant and cofactor matrix from the SVD, for finite ``J`` of any size."""
    U, s, Vh = np.linalg.svd(J)
    sign = np.linalg.det(U) * np.linalg.det(Vh)  # +-1
    value = sign * np.prod(s, axis=-1)
    ones = np.ones(s.shape[:-1] + (1,), dtype=s.dtype)
    before = np.cumprod(np.concatenate([ones, s[..., :-1]], axis=-1), axis=-1)  # prod_{j < i} s_j
    after = np.cumprod(np.concatenate([ones, s[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]  # prod_{j > i}
    grad = (U * (before * after)[..., None, :]) @ Vh
    grad *= sign[..., None, None]
    return value, grad


def log_abs_det(J: npt.ArrayLike) -> tuple[Array, Array]:
    """Per-sample ``log |det J|`` and its gradient ``J^{-T}``.

    Sign-safe: ``numpy.linalg.slogdet`` gives ``log |det J|`` whatever the sign of
    the determinant, without overflow for large ``d``.

    Parameters
    ----------
    J : array_like of shape (d, d) or (n, d, d)
        Per-sample square Jacobians.

    Returns
    -------
    value : ndarray of shape () or (n,)
        ``log |det J|`` per sample.
    grad : ndarray of the shape of ``J``
        ``J^{-T}`` per sample.

    Raises
    ------
    ValueError
        If some ``J`` is singular (``log |det J|`` is ``-inf`` there), or ``J`` is
        not a square matrix or a stack of them.

    See Also
    --------
    det : ``det J`` itself, defined for singular ``J`` too.
    jacobian_np.Network.jacobian_param_grad : chains ``grad`` to the weights.
    numpy.linalg.slogdet : the value alone, with its sign, without the gradient.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import losses
    >>> J = np.array([[[2.0, 0.0], [0.0, -3.0]]])  # det = -6
    >>> value, grad = losses.log_abs_det(J)
    >>> bool(np.isclose(value[0], np.log(6.0)))
    True
    >>> bool(np.allclose(grad, [[[0.5, 0.0], [0.0, -1 / 3]]]))
    True
    """
    J = _square(J, "log_abs_det")
    sign, value = np.linalg.slogdet(J)
    singular = np.flatnonzero(np.reshape(sign == 0, -1))
    if singular.size:
        raise ValueError(
            f"log_abs_det: J is singular at sample(s) {singular[:10].tolist()}; log|det J| is -inf there."
        )
    return value, np.swapaxes(np.linalg.inv(J), -1, -2)


def frobenius_squared(J: npt.ArrayLike) -> tuple[Array, Array]:
    """Per-sample squared Frobenius norm ``sum_jk J_jk**2`` and its gradient ``2 J``.

    ``J`` need not be square.  A common Jacobian penalty (contractive
    autoencoders, smoothness regularisation).

    Parameters
    ----------
    J : array_like of shape (d_out, d_in) or (n, d_out, d_in)
        Per-sample Jacobians.

    Returns
    -------
    value : ndarray of shape () or (n,)
        ``sum_jk J_jk**2`` per sample.
    grad : ndarray of the shape of ``J``
        ``2 J``.

    Raises
    ------
    ValueError
        If ``J`` has fewer than two axes.

    See Also
    --------
    det, log_abs_det : losses of square Jacobians.
    jacobian_np.Network.jacobian_param_grad : chains ``grad`` to the weights.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import losses
    >>> value, grad = losses.frobenius_squared(np.array([[[1.0, 2.0, 2.0]], [[0.0, 3.0, 4.0]]]))
    >>> value
    array([ 9., 25.])
    >>> grad[0]
    array([[2., 4., 4.]])
    """
    J = as_float_array(J, "J")
    if J.ndim < 2:
        raise ValueError(f"frobenius_squared expects J of shape (d_out, d_in) or (n, d_out, d_in); got shape {J.shape}.")
    return np.sum(J * J, axis=(-2, -1)), 2 * J


def _det_small(J: Array) -> tuple[Array, Array]:
    """Determinant and cofactor matrix of 1 x 1, 2 x 2 or 3 x 3 matrices, in closed form."""
    d = J.shape[-1]
    if d == 1:
        return J[..., 0, 0].copy(), np.ones_like(J)
    if d == 2:  # written into one array: stacking the four entries took several times as long
        a, b, c, e = J[..., 0, 0], J[..., 0, 1], J[..., 1, 0], J[..., 1, 1]
        cofactor = np.empty_like(J)
        cofactor[..., 0, 0] = e
        np.negative(c, out=cofactor[..., 0, 1])
        np.negative(b, out=cofactor[..., 1, 0])
        cofactor[..., 1, 1] = a
        value = a * e
        value -= b * c
        return value, cofactor
    # C[i, j] = J[i+1, j+1] J[i+2, j+2] - J[i+1, j+2] J[i+2, j+1], indices mod 3: the rows
    # of C are the cross products of the rows of J (np.cross took twice as long)
    after, second = J[..., _NEXT, :], J[..., _AFTER_NEXT, :]
    cofactor = after[..., _NEXT] * second[..., _AFTER_NEXT]
    cofactor -= after[..., _AFTER_NEXT] * second[..., _NEXT]
    return np.einsum("...j,...j->...", J[..., 0, :], cofactor[..., 0, :]), cofactor


#: i + 1 and i + 2, modulo 3
_NEXT, _AFTER_NEXT = [1, 2, 0], [2, 0, 1]


def _square(J: npt.ArrayLike, owner: str) -> Array:
    J = as_float_array(J, "J")
    if J.ndim < 2 or J.shape[-1] != J.shape[-2]:
        raise ValueError(
            f"{owner} expects square Jacobians, J of shape (d, d) or (n, d, d) (d_out == d_in); got shape {J.shape}."
        )
    return J
