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
    ``a``: callers never write into it.  A PyTorch tensor is read detached from
    autograd (and copied from its device), so one that requires grad is accepted.
    """
    arr = a if type(a) is np.ndarray else np.asarray(_readable(a, name))  # the common case first
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


def _readable(a: Any, name: str) -> Any:
    """``a``, or a PyTorch tensor detached and on the CPU; torch itself is never imported here."""
    if type(a).__module__.split(".")[0] != "torch" or not hasattr(a, "detach"):
        return a
    if getattr(a, "is_meta", False):
        raise ValueError(
            f"{name} is a PyTorch tensor on the meta device, which has a shape but no values; "
            "pass a tensor holding values (or a NumPy array)."
        )
    return a.detach().cpu()


def as_input(x: Any, d_in: Optional[int], owner: str) -> Array:
    """Validate a network input: one point ``(d_in,)`` or a batch ``(n, d_in)``."""
    # the common case first, in line: on one point of a small network every call counts
    arr = x if type(x) is np.ndarray and x.dtype.kind == "f" else as_float_array(x, "x")
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{owner} expects x of shape (d_in,) for one point or (n, d_in) for a batch; "
            f"got a {arr.ndim}-D array of shape {arr.shape}."
        )
    if d_in is not None and arr.shape[-1] != d_in:
        check_last_axis(arr, d_in, owner)  # raises, with the message of every width check
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


def direction(v: Any, shape: tuple[int, ...], owner: str, name: str, broadcast: bool = True) -> Array:
    """``v`` of the given shape, or (``broadcast``) of its last axis alone broadcast over a batch."""
    v = as_float_array(v, name)
    if v.shape == shape:
        return v
    if broadcast and len(shape) == 2 and v.shape == shape[1:]:
        return np.broadcast_to(v, shape)
    expected = f"{shape}" + (f" or ({shape[1]},)" if broadcast and len(shape) == 2 else "")
    raise ValueError(f"{owner} expects {name} of shape {expected}; got shape {v.shape}.")


def input_dims(dims: Any, d_in: int, owner: str) -> list[int]:
    """The input indices ``dims`` (all ``d_in`` of them when ``None``), checked."""
    if dims is None:
        return list(range(d_in))
    if isinstance(dims, (str, bytes)) or np.ndim(dims) != 1:
        raise TypeError(f"{owner} expects dims to be a sequence of input indices; got {dims!r}.")
    values = list(dims)
    if not values:
        raise ValueError(f"{owner} expects dims to name at least one input; got an empty sequence.")
    for k in values:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"{owner} expects dims of integers; got {k!r} in {values!r}.")
        if not 0 <= k < d_in:
            raise ValueError(f"{owner} expects dims in the range 0 to {d_in - 1} (d_in = {d_in}); got {k}.")
    if len(set(values)) != len(values):
        raise ValueError(f"{owner} expects dims without repeats; got {values!r}.")
    return [int(k) for k in values]


def method_and_samples(method: Any, samples: Any, owner: str) -> tuple[str, int]:
    """Check an estimator choice: ``("exact", 0)`` or ``("hutchinson", samples)``."""
    if method not in ("exact", "hutchinson"):
        raise ValueError(f"{owner} expects method 'exact' or 'hutchinson'; got {method!r}.")
    if method == "exact":
        if samples is not None:
            raise ValueError(f"{owner}: samples applies to method='hutchinson' only; got samples={samples!r}.")
        return method, 0
    if samples is None:
        raise ValueError(f"{owner}: method='hutchinson' needs samples, the number of random directions.")
    if isinstance(samples, (bool, np.bool_)) or not isinstance(samples, (int, np.integer)):
        raise TypeError(f"{owner} expects samples to be a positive integer; got {samples!r}.")
    if samples < 1:
        raise ValueError(f"{owner} expects samples to be a positive integer; got {samples!r}.")
    return method, int(samples)


def hutchinson_directions(x: Array, samples: int, dims: Any, seed: Any) -> np.ndarray:
    """Rademacher directions ``(*batch, samples, d_in)``: +-1 on ``dims``, 0 elsewhere.

    Drawn whole with ``numpy.random.default_rng(seed)`` (as int8, converted chunk by
    chunk), so the estimate does not depend on the chunk size.
    """
    rng = np.random.default_rng(seed)
    dims = list(dims)
    signs = rng.integers(0, 2, size=x.shape[:-1] + (samples, len(dims)), dtype=np.int8)
    signs *= 2
    signs -= 1
    if len(dims) == x.shape[-1] and dims == list(range(len(dims))):
        return signs
    V = np.zeros(x.shape[:-1] + (samples, x.shape[-1]), dtype=np.int8)
    V[..., dims] = signs
    return V


def as_order(order: Any, owner: str) -> int:
    """A derivative order: a non-negative integer (booleans refused)."""
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)):
        raise TypeError(f"{owner} expects order to be a non-negative integer; got {order!r}.")
    if order < 0:
        raise ValueError(f"{owner} expects order to be a non-negative integer; got {order!r}.")
    return int(order)
