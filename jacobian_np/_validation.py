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


def as_finite_real(value: Any, name: str, owner: str) -> float:
    """Return a layer's scalar hyperparameter as a Python float, checking that it is finite.

    Python and NumPy integers and floats are accepted; booleans, strings, arrays and
    complex numbers raise ``TypeError``, NaN and infinity ``ValueError``.  A Python
    float keeps float32 inputs float32 under NumPy's promotion rules.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner} {name} must be a real number; got {type(value).__name__} {value!r}.")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{owner} {name} must be finite; got {result!r}.")
    return result


def as_order(order: Any, owner: str) -> int:
    """A derivative order: a non-negative integer (booleans refused)."""
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)):
        raise TypeError(f"{owner} expects order to be a non-negative integer; got {order!r}.")
    if order < 0:
        raise ValueError(f"{owner} expects order to be a non-negative integer; got {order!r}.")
    return int(order)


def as_dims(dims: Any, d_in: int, owner: str) -> tuple[int, ...]:
    """Input indices: ``None`` for all ``d_in`` of them, else distinct integers in ``0..d_in-1``."""
    if dims is None:
        return tuple(range(d_in))
    if isinstance(dims, (int, np.integer)) or not hasattr(dims, "__iter__"):
        raise TypeError(f"{owner} expects dims to be a sequence of input indices, such as [0, 2]; got {dims!r}.")
    items = list(dims)
    if any(isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) for k in items):
        raise TypeError(f"{owner} expects dims to hold integer input indices; got {dims!r}.")
    if not items:
        raise ValueError(f"{owner} expects at least one index in dims; got an empty sequence.")
    outside = [int(k) for k in items if not 0 <= k < d_in]
    if outside:
        raise ValueError(f"{owner} expects dims in 0..{d_in - 1} (the network has d_in = {d_in}); got {outside}.")
    if len(set(int(k) for k in items)) != len(items):
        raise ValueError(f"{owner} expects distinct indices in dims; got repeated ones in {[int(k) for k in items]}.")
    return tuple(int(k) for k in items)


def as_positive_int(value: Any, name: str, owner: str) -> int:
    """A positive integer such as a number of samples (booleans refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner} expects {name} to be a positive integer; got {value!r}.")
    if value < 1:
        raise ValueError(f"{owner} expects {name} to be a positive integer; got {value!r}.")
    return int(value)


def as_shaped(a: Any, shape: tuple[int, ...], name: str, owner: str, broadcast: bool = False) -> Array:
    """``a`` as a float array of exactly ``shape``; with ``broadcast``, a ``(shape[-1],)`` vector is
    repeated over the leading axes."""
    arr = as_float_array(a, name)
    if arr.shape == shape:
        return arr
    if broadcast and len(shape) > 1 and arr.shape == shape[-1:]:
        return np.broadcast_to(arr, shape)
    expected = f"{shape}" + (f" or ({shape[-1]},)" if broadcast and len(shape) > 1 else "")
    raise ValueError(f"{owner} expects {name} of shape {expected}; got shape {arr.shape}.")
