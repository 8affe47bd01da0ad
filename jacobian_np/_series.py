"""Truncated Taylor series arithmetic, shared by the layers' Taylor rules and the engine's steps.

A series is a list of its normalised coefficients ``[x_1, ..., x_K]`` (the ``k``-th
derivative divided by ``k!``), each of shape ``(*batch, R, width)`` for ``R``
paths per sample.  A coefficient known to be zero may be a :func:`zeros` (a
broadcast zero that takes no memory); the functions here skip its terms, and
internally ``None`` stands for it.  See ``docs/taylor.md``.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from ._typing import Array


def zeros(dtype: Any, shape: tuple[int, ...]) -> Array:
    """A zero Taylor coefficient that takes no memory: a read-only broadcast of one zero.

    Layers never write into their inputs, so the passes give known zeros (the
    higher coefficients of a line ``x + t v``) in this form, and the rules that
    check for it with :func:`is_zero` skip their terms.  A layer that does not
    check computes with them as with any array of zeros.
    """
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


def is_zero(a: Array) -> bool:
    """Whether ``a`` is a zero made by :func:`zeros` (a broadcast zero: every stride 0)."""
    return a.size > 0 and not any(a.strides) and not a.flat[0]


def nonzero(series: list[Array]) -> list[Optional[Array]]:
    """The series with its :func:`zeros` replaced by ``None``."""
    return [None if is_zero(a) else a for a in series]


def or_zeros(a: Optional[Array], like: Array, other: Array) -> Array:
    """``a``, or for ``None`` a :func:`zeros` of the shape of ``like`` and the dtype of ``like * other``."""
    return zeros(np.result_type(like, other), like.shape) if a is None else a


def sum_of_products(factors: list[Optional[Array]], others: Any, out: Optional[Array] = None) -> Optional[Array]:
    """``sum_i factors[i] * others[i]`` skipping ``None`` (zero) terms; ``None`` if none is left.

    With ``out``, the sum is written there (and ``out`` returned, zeros if no term is left).
    """
    total = None
    for a, b in zip(factors, others):
        if a is None or b is None:
            continue
        if total is None:
            total = a * b if out is None else np.multiply(a, b, out=out)
        else:
            total += a * b
    if total is None and out is not None:
        out[...] = 0
        return out
    return total


def series_powers(series: list[Optional[Array]]) -> list[list[Optional[Array]]]:
    """The powers of ``h(t) = sum_m series[m-1] t^m`` truncated after ``t^K`` (``None`` is zero).

    ``powers[j-1][k-j]`` is ``[t^k] h(t)^j`` for ``1 <= j <= k <= K`` (the lower
    coefficients of ``h^j`` are zero), built as ``h^j = h^(j-1) h``:
    ``[t^k] h^j = sum_{m=1}^{k-j+1} x_m [t^(k-m)] h^(j-1)``; the square by its symmetry,
    ``[t^k] h^2 = 2 sum_{m < k/2} x_m x_(k-m) + x_(k/2)^2``.
    """
    K = len(series)
    powers = [list(series)]
    if K >= 2:
        powers.append([_square_coefficient(series, k) for k in range(2, K + 1)])
    for j in range(3, K + 1):
        previous = powers[-1]  # previous[i] = [t^(i + j - 1)] h^(j-1)
        powers.append(
            [sum_of_products(series[: k - j + 1], (previous[k - m - j + 1] for m in range(1, k - j + 2))) for k in range(j, K + 1)]
        )
    return powers


def _square_coefficient(series: list[Optional[Array]], k: int) -> Optional[Array]:
    """``[t^k] h(t)^2`` from the coefficients of ``h`` (``None`` is zero)."""
    total = sum_of_products(series[: (k - 1) // 2], [series[k - m - 1] for m in range(1, (k - 1) // 2 + 1)])
    if total is not None:
        total *= 2
    middle = series[k // 2 - 1] if k % 2 == 0 else None
    if middle is not None:
        total = middle * middle if total is None else total + middle * middle
    return total


def compose(
    derivatives: list[Array], powers: list[list[Optional[Array]]], stacked: bool = False
) -> list[Optional[Array]]:
    """``y_k = sum_{j=1..k} derivatives[j-1] / j! * [t^k] h^j`` for ``k = 1..len(powers)`` (``None`` is zero).

    ``derivatives`` holds at least ``len(powers)`` arrays of shape ``(*batch, d)``,
    broadcast over the paths axis of the powers, ``(*batch, R, d)``.  With ``stacked``,
    the results are written into one new ``(K, *batch, R, d)`` array (a linear layer
    after this one then maps them without copying them together: see :func:`join`).
    """
    K = len(powers)
    scaled = [derivatives[0][..., None, :]] + [derivatives[j][..., None, :] / math.factorial(j + 1) for j in range(1, K)]
    terms = [[powers[j - 1][k - j] for j in range(1, k + 1)] for k in range(1, K + 1)]
    if not stacked:
        return [sum_of_products(factors, scaled) for factors in terms]
    like = next((p for p in powers[0] if p is not None), None)
    if like is None:
        return [None] * K
    shape = np.broadcast_shapes(like.shape, scaled[0].shape)
    block = np.empty((K,) + shape, dtype=np.result_type(like, *scaled))
    return [sum_of_products(factors, scaled, out=block[k]) for k, factors in enumerate(terms)]


def collapsed_top(derivatives: list[Array], powers: list[list[Optional[Array]]], groups: tuple[int, ...]) -> Optional[Array]:
    """``sum_{j=2..K} derivatives[j-1] / j! * [t^K] h^j`` summed over each group of paths:
    the top coefficient's nonlinear terms, reduced before they are scaled (``None`` is zero)."""
    K = len(powers)
    total = None
    for j in range(2, K + 1):
        power = powers[j - 1][K - j]
        if power is None:
            continue
        term = collapse(power, groups)
        term *= derivatives[j - 1][..., None, :] / math.factorial(j)
        total = term if total is None else total + term
    return total


def truncated(powers: list[list[Optional[Array]]]) -> list[list[Optional[Array]]]:
    """The powers without the top order: those of the first ``K - 1`` coefficients."""
    K = len(powers)
    return [powers[j - 1][: K - j] for j in range(1, K)]


def join(blocks: list[Array]) -> Array:
    """Coefficients in one array for one call of a linear map: stacked on a new leading axis
    when their shapes agree (each result then contiguous), else side by side along the rows
    axis (a collapsed top coefficient has fewer rows).  One block is a view, not a copy."""
    if len(blocks) == 1:
        return blocks[0][None]
    if all(b.shape == blocks[0].shape for b in blocks):
        base = blocks[0].base
        if (  # already the consecutive rows of one stacked array (see compose): no copy
            base is not None
            and base.shape == (len(blocks),) + blocks[0].shape
            and base.flags.c_contiguous
            and all(b.base is base and b.ctypes.data == base.ctypes.data + i * base.strides[0] for i, b in enumerate(blocks))
        ):
            return base
        return np.stack(blocks)
    return np.concatenate(blocks, axis=-2)[None]


def split(joined: Array, like: list[Array]) -> list[Array]:
    """Undo :func:`join`: one array per block of ``like``."""
    if len(like) == 1 or all(b.shape == like[0].shape for b in like):
        return list(joined)
    bounds = np.cumsum([b.shape[-2] for b in like])[:-1]
    return np.split(joined[0], bounds, axis=-2)


# --- collapsed top coefficients (see jacobian_np._steps.LayerSteps.push_taylor) -------


def group_starts(groups: tuple[int, ...]) -> npt.NDArray[np.intp]:
    """The first row of each group of paths."""
    return np.concatenate([[0], np.cumsum(groups[:-1])]).astype(np.intp)


def spread(top: Array, groups: tuple[int, ...]) -> Array:
    """Collapsed rows ``(*batch, G, d)`` to ``(*batch, R, d)``: each group's sum in its first row."""
    full = np.zeros(top.shape[:-2] + (sum(groups), top.shape[-1]), dtype=top.dtype)
    full[..., group_starts(groups), :] = top
    return full


def collapse(block: Array, groups: tuple[int, ...]) -> Array:
    """Rows ``(*batch, R, d)`` summed per group: ``(*batch, G, d)``."""
    return np.add.reduceat(block, group_starts(groups), axis=-2)
