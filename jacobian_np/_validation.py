"""Input checks and their messages, in one place.

Every message says what was expected and what arrived, so a user can fix the call
without reading the source.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np

from ._typing import Array


def as_float_array(a: Any, name: str) -> Array:
    """Return ``a`` as a real floating-point array, converting integers and booleans to float64.

    Floating dtypes are kept (float32 stays float32).  The result may share memory with
    ``a``: callers never write into it.
    """
    arr = np.asarray(a)
    kind = arr.dtype.kind
    if kind == "f":
        return arr
    if kind in "biu":
        return arr.astype(np.float64)
    if kind == "c":
        raise TypeError(
            f"{name} must be real; got complex dtype {arr.dtype}. "
            "Pass the real part (np.real) or split real and imaginary parts into separate inputs."
        )
    raise TypeError(f"{name} must be a real numeric array; got dtype {arr.dtype}.")


def as_input(x: Any, d_in: Optional[int], owner: str) -> Array:
    """Validate a network input: one point ``(d_in,)`` or a batch ``(n, d_in)``."""
    arr = as_float_array(x, "x")
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{owner} expects x of shape (d_in,) for one point or (n, d_in) for a batch; "
            f"got a {arr.ndim}-D array of shape {arr.shape}."
        )
    check_last_axis(arr, d_in, owner)
    return arr


def check_last_axis(a: Array, width: Optional[int], owner: str, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``a.shape[-1] == width`` (``None`` accepts any width)."""
    if width is not None and (a.ndim == 0 or a.shape[-1] != width):
        raise ValueError(f"{owner} expects {name} with last axis {width}; got shape {a.shape}.")


def as_parameter(a: Any, name: str, shape: tuple[Optional[int], ...], owner: str) -> Array:
    """Return a private, finite, floating-point copy of a parameter array.

    ``shape`` gives the expected shape; ``None`` entries accept any positive length.
    """
    arr = as_float_array(a, f"{owner} {name}")
    if arr.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(arr.shape, shape)
    ):
        expected = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{owner} {name} must have shape {expected}; got shape {arr.shape}.")
    if 0 in arr.shape:
        raise ValueError(f"{owner} {name} must not have a zero-length axis; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{owner} {name} must be finite; it contains NaN or infinity.")
    return np.array(arr, copy=True)


def as_bias(b: Any, width: int, owner: str) -> Array:
    """Return a private copy of a bias of shape ``(width,)``.

    The row ``(1, width)`` that hand-written code often uses (``b = np.zeros((1, h))``,
    broadcast over a batch) is accepted and flattened; any other shape raises
    ``ValueError`` as in :func:`as_parameter`.
    """
    arr = np.asarray(b)
    if arr.shape == (1, width):
        arr = arr[0]
    return as_parameter(arr, "b", (width,), owner)


def as_finite_real(value: Any, name: str, owner: str) -> float:
    """Return a layer's scalar hyperparameter as a Python float, checking that it is finite.

    Python and NumPy integers and floats are accepted; booleans, strings, arrays and
    complex numbers raise ``TypeError``, NaN and infinity ``ValueError``.  A Python
    float keeps float32 inputs float32 under NumPy's promotion rules.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner} {name} must be a real number; got {type(value).__name__} {_short_repr(value)}.")
    try:
        result = float(value)
    except OverflowError:  # an int (or Fraction) beyond the float range, such as 10**400
        raise ValueError(
            f"{owner} {name} must be finite; got {type(value).__name__} beyond the float range (about ±1.8e308)."
        ) from None
    if not math.isfinite(result):
        raise ValueError(f"{owner} {name} must be finite; got {result!r}.")
    return result


def _short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened for messages (and safe for huge integers, whose repr may raise)."""
    try:
        text = repr(value)
    except ValueError:  # int too large for str() under Python's digit limit
        return "<too large to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
