"""Finite-difference checks of analytic derivatives.

``numerical_jacobian`` is a plain central-difference Jacobian.  ``check_layer`` and
``check_network`` compare a layer's or a network's analytic derivatives with it, in
float64 by default, and return a :class:`CheckResult` that is truthy only when they
agree and that says where they disagree most.

One rule decides, elementwise: an analytic value ``J`` passes against its
reference ``J_fd`` when

    ``|J - J_fd| <= atol + rtol * |J_fd|``.

``rtol`` defaults to ``1e-6`` when the check runs in float64 and ``1e-3`` in
float32 (the coarser of the input and output dtypes decides).  ``atol`` defaults,
per comparison, to ``rtol * max|J_fd|`` plus a bound on the rounding error of the
central differences, ``3 * eps * max|f| / h`` (``eps`` the machine epsilon,
``h`` the smallest step): an entry is judged against the size of the largest
one, so the verdict does not depend on the units of the inputs and outputs, and
entries that are zero up to rounding (a saturated ``tanh``) pass.  Central
differences with the default step are accurate to about ``1e-10`` of the largest
entry in float64 and ``5e-5`` in float32, so both defaults have a wide margin
while still catching a derivative that is off by 1% or transposed.  An explicit
``atol`` is used as given.

A comparison whose default tolerance would let an error of 1% at its largest
entry pass (the finite differences are swamped by rounding: saturated units, or
outputs huge against their derivatives) fails as *inconclusive*, with a message
saying so, instead of passing; pass ``atol`` to accept the coarser resolution.
Where the differences are exactly zero throughout (every unit saturated), the
analytic values must be zero up to the rounding bound.
Relative errors are reported relative to the largest entry of the reference, so
an entry that is zero up to rounding never makes them infinite.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import cast, Any, Callable, Optional

import numpy as np
import numpy.typing as npt

from ._typing import Array
from ._validation import as_finite_real, as_float_array, as_input
from ._blocks import Eye, dense
from .layer import Elementwise, Layer
from .network import Network

#: Default ``rtol`` of checks run in float64 (see the module docstring).
RTOL = 1e-6
#: Default ``rtol`` of checks run in float32.
RTOL_FLOAT32 = 1e-3
#: The rounding error of one evaluation of ``f``, in units of ``eps * |f|``, that
#: the default ``atol`` allows for (measured: at most about 1.5 for the built-in layers;
#: a larger factor makes float32 checks of networks inconclusive more often).
_ROUNDING_FACTOR = 3.0
#: The relative error that a check with the default ``atol`` must resolve at the
#: largest entry; a comparison whose finite differences cannot is inconclusive.
_RESOLVE = 0.01
#: Rows of the random upstream ``dy`` used by ``check_layer``; differs from the
#: built-in widths so that a transposed result has the wrong shape or values.
_RANDOM_ROWS = 3


def numerical_jacobian(
    f: Callable[[Array], npt.ArrayLike], x: npt.ArrayLike, eps: Optional[float] = None
) -> Array:
    """Jacobian of ``f`` at ``x`` by central differences.

    Parameters
    ----------
    f : callable
        Takes an array shaped like ``x`` and returns an array (of any shape).
    x : array_like
        The point.  Integers and booleans become float64.  Never modified: each
        evaluation gets a perturbed copy.
    eps : float, optional
        Relative step, a positive real number: element ``i`` is perturbed by
        ``h_i = eps * max(1, |x_i|)``.  The default, the cube root of the machine
        epsilon of the coarser of the input and output dtypes (about ``6e-6`` for
        float64, ``5e-3`` for float32), balances truncation and rounding errors.

    Returns
    -------
    J : ndarray of shape ``f(x).shape + x.shape``
        ``J[..., i] = (f(x + h_i e_i) - f(x - h_i e_i)) / (2 h_i)``, dividing by the
        step actually taken after rounding ``x +- h_i``.

    Raises
    ------
    TypeError
        If ``eps`` is not a real number (booleans are refused too).
    ValueError
        If ``eps`` is not positive and finite.

    See Also
    --------
    check_layer : analytic derivatives of a layer against this.
    check_network : per-sample Jacobians of a network against this.
    scipy.differentiate.jacobian : adaptive finite differences with error estimates.

    Notes
    -----
    This costs ``2 * x.size`` evaluations of ``f`` and forms the full Jacobian: for a
    batch of independent samples it includes the zero cross-sample blocks.  Use
    :func:`check_network` for per-sample Jacobians.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import numerical_jacobian
    >>> J = numerical_jacobian(lambda x: np.array([x[0] * x[1], np.sin(x[1])]), [2.0, 0.0])
    >>> np.allclose(J, [[0.0, 2.0], [0.0, 1.0]])
    True
    """
    eps = _check_eps(eps)
    x = as_float_array(x, "x")
    if eps is None:
        eps = _Steps.at(x, np.asarray(f(x.copy())).dtype, None).factor
    return _central_differences(f, x, eps, batch_ndim=0)


def _check_eps(eps: Any) -> Optional[float]:
    """``None`` or a positive finite Python float; ``TypeError``/``ValueError`` otherwise."""
    if eps is None:
        return None
    value = as_finite_real(eps, "eps", "the finite-difference step")
    if value <= 0:
        raise ValueError(f"the finite-difference step eps must be positive; got {value!r}.")
    return value


@dataclass(frozen=True)
class _Steps:
    """The steps of central differences at ``x``, and the rounding error they cause."""

    factor: float  # relative step: h_i = factor * max(1, |x_i|)
    resolution: float  # machine epsilon of the coarser of the input and output dtypes
    smallest: float  # the smallest h_i (0 for an empty x)

    @classmethod
    def at(cls, x: Array, out_dtype: np.dtype, eps: Optional[float]) -> "_Steps":
        resolution = max(float(np.finfo(x.dtype).eps), _float_eps(out_dtype))
        factor = resolution ** (1 / 3) if eps is None else eps
        smallest = factor * max(1.0, float(np.min(np.abs(x)))) if x.size else 0.0
        return cls(factor, resolution, smallest)

    def rounding(self, magnitude: float) -> float:
        """Bound on the rounding error of central differences of values of size ``magnitude``."""
        if not self.smallest or not math.isfinite(magnitude):
            return 0.0
        return _ROUNDING_FACTOR * self.resolution * magnitude / self.smallest

    def rule(self, atol: Optional[float], rtol: Optional[float]) -> "_Rule":
        """The pass rule, with ``rtol`` defaulting to the precision of these differences."""
        return _Rule(atol, _default_rtol(self.resolution) if rtol is None else rtol)


def _float_eps(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).eps) if dtype.kind == "f" else 0.0


def _default_rtol(resolution: float) -> float:
    if resolution <= np.finfo(np.float64).eps:
        return RTOL
    if resolution <= np.finfo(np.float32).eps:
        return RTOL_FLOAT32
    return 5e-2  # float16: finite differences cannot resolve 1% there


def _central_differences(
    f: Callable[[Array], npt.ArrayLike], x: Array, eps: float, batch_ndim: int
) -> Array:
    """Central differences, perturbing every sample of a batch at once.

    The first ``batch_ndim`` axes of ``x`` are independent samples: each of the
    ``x.shape[batch_ndim:]`` coordinates is perturbed in all samples together, so the
    result is the per-sample Jacobian of shape
    ``f(x).shape + x.shape[batch_ndim:]``.  With ``batch_ndim = 0`` it is the full
    Jacobian.
    """
    batch = x.shape[:batch_ndim]
    point = x.shape[batch_ndim:]
    step = eps * np.maximum(1, np.abs(x))
    columns = []
    for coordinate in np.ndindex(*point):
        index = (Ellipsis,) + coordinate
        plus, minus = x.copy(), x.copy()
        plus[index] += step[index]
        minus[index] -= step[index]
        taken = plus[index] - minus[index]
        difference = np.asarray(f(plus)) - np.asarray(f(minus))
        out_ndim = difference.ndim - batch_ndim
        columns.append(difference / taken.reshape(batch + (1,) * out_ndim))
    if not columns:  # x has no coordinates: an empty Jacobian
        return np.zeros(np.shape(f(x.copy())) + point)
    return np.stack(columns, axis=-1).reshape(columns[0].shape + point)


@dataclass(frozen=True)
class Comparison:
    """One comparison of analytic against reference values inside a check.

    Attributes
    ----------
    name : str
        What was compared, for example ``"backward(identity)"``.
    analytic, reference : ndarray
        The values compared (``reference`` is usually from finite differences).
    tolerance : ndarray
        The allowed ``|analytic - reference|``, elementwise:
        ``atol + rtol * |reference|``.
    problem : str
        Set when the values could not be compared (for example a wrong shape, or
        a reference that is not finite).
    atol, rtol : float
        The absolute and relative tolerances of the rule (0 for an exact comparison).

    See Also
    --------
    CheckResult : the comparisons of one check, and its verdict.
    check_layer, check_network, check_param_grads : the checks that make comparisons.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Tanh, check_layer
    >>> result = check_layer(Tanh(), np.array([0.5, -1.0]))
    >>> first = result.comparisons[0]
    >>> first.name, first.ok, first.analytic.shape
    ('backward(identity)', True, (2, 2))
    >>> bool(np.all(first.abs_error <= first.tolerance))
    True
    >>> bool(np.allclose(first.tolerance, first.atol + first.rtol * np.abs(first.reference)))
    True
    """

    name: str
    analytic: Array
    reference: Array
    tolerance: Array
    problem: str = ""
    atol: float = 0.0
    rtol: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the shapes match and every difference is within tolerance."""
        return not self.problem and bool(np.all(self.abs_error <= self.tolerance))

    @property
    def abs_error(self) -> Array:
        """``|analytic - reference|``, elementwise."""
        return np.abs(self.analytic - self.reference)

    @property
    def rel_error(self) -> Array:
        """``|analytic - reference|`` relative to the largest ``|reference|``.

        A normwise relative error: entries of the reference near zero, where any
        rounding is a large fraction of the entry, do not inflate it.  Where the
        reference is all zero it is relative to ``atol``; 0 where the error is 0.
        """
        abs_error = self.abs_error
        scale = _max_finite(np.abs(self.reference)) or self.atol
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = abs_error / scale
        return np.where(abs_error == 0, 0.0, rel)

    def worst(self) -> tuple[int, ...]:
        """Index of the largest error relative to the tolerance (NaN counts as worst)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            excess = self.abs_error / self.tolerance
        excess = np.where(self.abs_error == 0, 0.0, np.nan_to_num(excess, nan=np.inf))
        return _unravel(excess)

    def report(self) -> str:
        """A few lines saying whether and where this comparison failed."""
        errors = ""
        if self.analytic.size:
            abs_error, rel_error = self.abs_error, self.rel_error
            i_abs, i_rel = _unravel(abs_error), _unravel(rel_error)
            errors = (
                f"max abs error {abs_error[i_abs]:.3g} at {i_abs}, "
                f"max rel error {rel_error[i_rel]:.3g} at {i_rel}"
            )
        if self.problem:
            return f"{self.name}: FAILED: {self.problem}" + (f"\n  {errors}" if errors else "")
        verdict = "ok" if self.ok else "FAILED"
        if not errors:
            return f"{self.name}: {verdict} (empty)"
        lines = [f"{self.name}: {verdict}; {errors}"]
        if not self.ok:
            i_worst = self.worst()
            lines.append(
                f"  worst at {i_worst}: analytic {self.analytic[i_worst]:.17g}, "
                f"reference {self.reference[i_worst]:.17g}, "
                f"abs error {abs_error[i_worst]:.3g} > tolerance {self.tolerance[i_worst]:.3g} "
                f"(atol {self.atol:.3g} + rtol {self.rtol:.3g} * |reference|)"
            )
        return "\n".join(lines)


def _unravel(values: Array) -> tuple[int, ...]:
    flat = np.nan_to_num(values, nan=np.inf).ravel()
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(flat)), values.shape))


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`check_layer` or :func:`check_network`.

    Truthy only when every comparison agrees.  ``str(result)`` is a readable report.

    Attributes
    ----------
    subject : str
        What was checked, for example ``"Tanh()"``.
    comparisons : tuple of Comparison
        Each analytic quantity and its reference.

    See Also
    --------
    Comparison : one analytic quantity against its reference.
    check_layer, check_network, check_param_grads : the checks that return it.

    Examples
    --------
    A sigmoid whose derivative is 1% too large:

    >>> import numpy as np
    >>> from jacobian_np import Sigmoid, check_layer
    >>> class Wrong(Sigmoid):
    ...     def fprime(self, x, y):
    ...         return 1.01 * super().fprime(x, y)
    >>> result = check_layer(Wrong(), np.array([[0.5, -1.0, 2.0]]))
    >>> bool(result), [c.name for c in result.failures]
    (False, ['backward(identity)', 'jacobian', 'backward(random dy)', 'tangent(identity)', 'tangent(random dx)'])
    >>> print(f"{result.max_rel_error:.3f}")
    0.010
    >>> print(result)  # doctest: +ELLIPSIS
    derivative check of Wrong(): FAILED
      backward(identity): FAILED; max abs error 0.00235 at (0, 0, 0), max rel error 0.01 at (0, 0, 0)
        worst at (0, 0, 0): analytic 0.2373537..., reference 0.2350037..., abs error 0.00235 > tolerance 4.7e-07 ...
    ...
    """

    subject: str
    comparisons: tuple[Comparison, ...]

    def __bool__(self) -> bool:
        return all(c.ok for c in self.comparisons)

    @property
    def max_abs_error(self) -> float:
        """Largest ``|analytic - reference|`` over all comparisons (inf on a shape problem)."""
        return max((_max(c.abs_error) if _compared(c) else np.inf) for c in self.comparisons)

    @property
    def max_rel_error(self) -> float:
        """Largest :attr:`Comparison.rel_error` over all comparisons (inf on a shape problem)."""
        return max((_max(c.rel_error) if _compared(c) else np.inf) for c in self.comparisons)

    @property
    def failures(self) -> tuple[Comparison, ...]:
        """The comparisons that disagree."""
        return tuple(c for c in self.comparisons if not c.ok)

    def __str__(self) -> str:
        verdict = "passed" if self else "FAILED"
        lines = [f"derivative check of {self.subject}: {verdict}"]
        lines += ["  " + c.report().replace("\n", "\n  ") for c in self.comparisons]
        return "\n".join(lines)


def _compared(c: Comparison) -> bool:
    """Whether ``c`` holds values (not replaced by a shape problem)."""
    return not c.problem or bool(c.analytic.size)


def _max(values: Array) -> float:
    return float(np.max(np.nan_to_num(values, nan=np.inf))) if values.size else 0.0


def _max_finite(values: Array) -> float:
    """The largest finite entry of ``values`` (0 if there is none)."""
    finite = values[np.isfinite(values)]
    return float(np.max(finite)) if finite.size else 0.0


@dataclass(frozen=True)
class _Rule:
    """The pass rule ``|analytic - reference| <= atol + rtol * |reference|``.

    ``atol = None`` is the default: ``rtol * max|reference|`` plus the rounding
    error of the finite differences that gave the reference.
    """

    atol: Optional[float]
    rtol: float

    def compare(self, name: str, analytic: Any, reference: Any, rounding: float = 0.0) -> Comparison:
        """``rounding``: a bound on the rounding error in ``reference``."""
        analytic, reference = np.asarray(analytic), np.asarray(reference)
        problem = ""
        if analytic.shape != reference.shape:
            problem = f"shape {analytic.shape}, expected {reference.shape}"
            analytic = reference = np.zeros(0)
        elif not np.all(np.isfinite(reference)):
            index = _unravel(np.where(np.isfinite(reference), 0.0, 1.0))
            problem = (
                f"the reference is {reference[index]} at {index}: choose x where the function "
                "is finite within a finite-difference step"
            )
        magnitude = np.abs(reference)
        scale = _max_finite(magnitude)
        atol = self.rtol * scale + rounding if self.atol is None else self.atol
        tolerance = atol + self.rtol * magnitude
        # A reference that is exactly zero throughout (f(x + h) == f(x - h): units
        # saturated at every point) is resolved: the analytic values must be zero
        # up to the rounding bound, and relative errors mean nothing there.
        if not problem and self.atol is None and scale > 0 and atol + self.rtol * scale >= _RESOLVE * scale:
            problem = (
                f"inconclusive: the finite differences are accurate only to about {rounding:.2g}, "
                f"{rounding / scale:.2g} of the largest entry ({scale:.3g}), so an error of 1% would "
                "pass unseen. The values are large against their derivatives here (saturated units, "
                "or outputs in large units): check at other inputs, or in float64, or pass atol to "
                "accept this resolution"
            )
        return Comparison(name, analytic, reference, tolerance, problem, atol=atol, rtol=self.rtol)


def _exact(name: str, analytic: Array, reference: Array) -> Comparison:
    """An exact comparison, for example that an input was left unchanged."""
    return _Rule(0.0, 0.0).compare(name, analytic, reference)


def _check_tolerances(atol: Any, rtol: Any) -> None:
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)):
            raise TypeError(f"{name} must be a real number or None; got {type(value).__name__}.")
    if not ((atol is None or atol >= 0) and (rtol is None or rtol >= 0)):
        raise ValueError(f"atol and rtol must be non-negative; got atol={atol!r}, rtol={rtol!r}.")


def _row_gain(seed: Array) -> float:
    """How much a product with ``seed`` (rows on the second-to-last axis) can amplify an error."""
    return float(np.max(np.sum(np.abs(seed), axis=-1))) if seed.size else 0.0


def check_layer(
    layer: Layer,
    x: npt.ArrayLike,
    *,
    eps: Optional[float] = None,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    dtype: npt.DTypeLike = np.float64,
    rng: Optional[np.random.Generator] = None,
    second_order: bool = False,
) -> CheckResult:
    """Compare a layer's analytic derivatives with central differences.

    Checks ``backward`` with an identity seed, ``backward`` with a random upstream
    ``dy`` of a different number of rows, and ``jacobian`` when the layer overrides
    it; likewise ``tangent`` (forward mode) when the layer implements it, and the
    second derivative ``fsecond`` of an elementwise layer that implements it
    (against central differences of ``fprime``); also that ``forward``,
    ``backward`` and ``tangent`` leave their inputs unchanged.  With
    ``second_order=True``, also ``curvature`` (the layer's second derivatives)
    against central differences of its analytic Jacobian and, for an elementwise
    layer, both parts of ``fprimes`` (``f'`` against central differences of ``f``,
    ``f''`` against central differences of that ``f'``), which second-order
    passes and training use instead of ``fprime`` and ``fsecond``.

    Parameters
    ----------
    layer : Layer
    x : array_like of shape ``(*batch, d_in)``
        Where to check; converted to ``dtype``.  Keep it away from kinks (ReLU at 0).
    eps : float, optional
        Relative finite-difference step (see :func:`numerical_jacobian`).
    atol, rtol : float, optional
        Tolerances of the rule ``|J - J_fd| <= atol + rtol * |J_fd|``.  ``rtol``
        defaults to ``1e-6`` in float64 and ``1e-3`` in float32; ``atol``, per
        comparison, to ``rtol * max|J_fd|`` plus the rounding error of the finite
        differences (see Notes).
    dtype : dtype, default float64
        Precision of the check: finite differences need double precision, but
        float32 works with its own tolerances.
    rng : numpy.random.Generator, optional
        Source of the random ``dy``; default ``np.random.default_rng(0)``.
    second_order : bool, default False
        Also check second derivatives; the layer must support them (raises
        ``NotImplementedError`` otherwise).

    Returns
    -------
    CheckResult
        Truthy only when all comparisons agree; ``print`` it for a report.

    Raises
    ------
    TypeError
        If ``layer`` is not a :class:`Layer`, ``x`` is not real, or ``eps``,
        ``atol`` or ``rtol`` is not a real number.
    ValueError
        If ``x`` is a scalar, ``eps`` is not positive and finite, or ``atol`` or
        ``rtol`` is negative.

    See Also
    --------
    check_network : the same for a whole network, in every mode.
    check_param_grads : gradients with respect to the parameters.
    numerical_jacobian : the central differences used as the reference.

    Notes
    -----
    An entry passes when ``|J - J_fd| <= atol + rtol * |J_fd|``.  By default
    ``atol = rtol * max|J_fd| + 3 * eps * max|f| / h``: relative to the largest
    entry, plus the rounding error of central differences with the smallest step
    ``h`` (``eps`` the machine epsilon of the check's dtype).  A comparison whose
    default tolerance would let a 1% error at its largest entry pass fails as
    inconclusive instead of passing: the finite differences cannot tell there.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Tanh, check_layer
    >>> result = check_layer(Tanh(), np.linspace(-2, 2, 12).reshape(3, 4))
    >>> bool(result), result.max_rel_error < 1e-8
    (True, True)

    Float32 uses its own tolerances and still catches a 1% error:

    >>> class Wrong(Tanh):
    ...     def fprime(self, x, y):
    ...         return 1.01 * super().fprime(x, y)
    >>> x = np.linspace(-2, 2, 12).reshape(3, 4)
    >>> bool(check_layer(Tanh(), x, dtype=np.float32)), bool(check_layer(Wrong(), x, dtype=np.float32))
    (True, False)
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer expects a jacobian_np.Layer; got {type(layer).__name__}.")
    _check_tolerances(atol, rtol)
    eps = _check_eps(eps)
    x = as_float_array(x, "x").astype(dtype)
    if x.ndim == 0:
        raise ValueError("check_layer expects x of shape (*batch, d_in); got a scalar.")
    rng = np.random.default_rng(0) if rng is None else rng
    x_before = x.copy()
    y, cache = layer.forward_with_cache(x)
    batch = x.shape[:-1]
    steps = _Steps.at(x, y.dtype, eps)
    rule = steps.rule(atol, rtol)
    J_fd = _central_differences(lambda z: layer.forward_with_cache(z)[0], x, steps.factor, x.ndim - 1)
    rounding = steps.rounding(_max_finite(np.abs(y)))

    # writable, so that a backward that writes into dy is reported rather than crashing
    identity = np.broadcast_to(np.eye(y.shape[-1], dtype=y.dtype), batch + (y.shape[-1],) * 2).copy()
    dy = rng.standard_normal(batch + (_RANDOM_ROWS, y.shape[-1])).astype(y.dtype)
    dy_before = dy.copy()
    dx = layer.backward(dy, cache)
    comparisons = [
        rule.compare("backward(identity)", layer.backward(identity, cache), J_fd, rounding),
        rule.compare("backward(random dy)", dx, dy @ J_fd, rounding * _row_gain(dy)),
        _exact("forward left x unchanged", x, x_before),
        _exact("backward left dy unchanged", dy, dy_before),
    ]
    # the Jacobian as every pass starts from it: the layer's jacobian or its fast path
    try:
        jacobian = rule.compare("jacobian", _layer_jacobian(layer, y, cache), J_fd, rounding)
    except ValueError as error:  # a wrong shape, or a write into a read-only block: report it
        jacobian = Comparison("jacobian", np.zeros(0), np.zeros(0), np.zeros(0), str(error))
    comparisons.insert(1, jacobian)
    if layer.supports("tangent"):
        comparisons += _check_tangent(layer, cache, J_fd, rule, rounding, rng)
    if layer.supports("fsecond"):
        comparisons.append(_check_fsecond(cast(Elementwise, layer), x, y, steps, rule))
    if second_order:
        comparisons += _check_curvature(layer, x, cache, eps, rule, rng)
        if isinstance(layer, Elementwise):
            comparisons += _check_fprimes(layer, x, y, J_fd, steps, rule, rounding)
    return CheckResult(repr(layer), tuple(comparisons))


def _check_curvature(
    layer: Layer, x: Array, cache: Any, eps: Optional[float], rule: _Rule, rng: np.random.Generator
) -> list[Comparison]:
    """``curvature`` for all pairs of unit directions, and for random pairs, against
    central differences of the analytic Jacobian."""
    if not layer.supports("curvature"):
        raise NotImplementedError(
            f"check_layer(second_order=True): {', '.join(layer.lacking('curvature'))} does not implement curvature."
        )

    def analytic_jacobian(z: Array) -> Array:
        return _layer_jacobian(layer, *layer.forward_with_cache(z))

    J = analytic_jacobian(x)
    steps = _Steps.at(x, J.dtype, eps)
    # H[..., j, a, b] = d J[..., j, a] / d x_b
    H_fd = _central_differences(analytic_jacobian, x, steps.factor, x.ndim - 1)
    rounding = steps.rounding(_max_finite(np.abs(J)))
    batch, d_in = x.shape[:-1], x.shape[-1]
    eye = np.eye(d_in, dtype=x.dtype)
    u = np.broadcast_to(np.repeat(eye, d_in, axis=0), batch + (d_in * d_in, d_in))  # e_a for pair (a, b)
    v = np.broadcast_to(np.tile(eye, (d_in, 1)), batch + (d_in * d_in, d_in))  # e_b
    curvature = layer.curvature(u, v, cache)
    units = curvature.reshape(batch + (d_in, d_in, curvature.shape[-1]))
    u_rand = rng.standard_normal(batch + (_RANDOM_ROWS, d_in)).astype(x.dtype)
    v_rand = rng.standard_normal(batch + (_RANDOM_ROWS, d_in)).astype(x.dtype)
    return [
        rule.compare("curvature(unit pairs)", np.moveaxis(units, -1, -3), H_fd, rounding),
        rule.compare(
            "curvature(random pairs)",
            layer.curvature(u_rand, v_rand, cache),
            np.einsum("...jab,...pa,...pb->...pj", H_fd, u_rand, v_rand),
            rounding * _row_gain(u_rand) * _row_gain(v_rand),
        ),
    ]


def _layer_jacobian(layer: Layer, y: Array, cache: Any) -> Array:
    """The layer's Jacobian at the output ``y``, as the engine's reverse step forms it."""
    return dense(layer.pull(Eye(y), cache, False)[0])


def _check_tangent(
    layer: Layer, cache: Any, J_fd: Array, rule: _Rule, rounding: float, rng: np.random.Generator
) -> list[Comparison]:
    """Forward mode: tangents pushed through the layer against ``J_fd``."""
    batch, d_in = J_fd.shape[:-2], J_fd.shape[-1]
    J_fd_T = np.swapaxes(J_fd, -1, -2)
    identity = np.broadcast_to(np.eye(d_in, dtype=J_fd.dtype), batch + (d_in, d_in)).copy()
    dx = rng.standard_normal(batch + (_RANDOM_ROWS, d_in)).astype(J_fd.dtype)
    dx_before = dx.copy()
    return [
        rule.compare("tangent(identity)", layer.tangent(identity, cache), J_fd_T, rounding),
        rule.compare("tangent(random dx)", layer.tangent(dx, cache), dx @ J_fd_T, rounding * _row_gain(dx)),
        _exact("tangent left dx unchanged", dx, dx_before),
    ]


def _derivative_of(fprime: Callable[[Array], Array], x: Array, steps: _Steps) -> tuple[Array, float]:
    """Central differences of an elementwise ``fprime``, every element perturbed at
    once, and the bound on their rounding error."""
    h = steps.factor * np.maximum(1, np.abs(x))
    plus, minus = x + h, x - h
    reference = (fprime(plus) - fprime(minus)) / (plus - minus)
    return reference, steps.rounding(_max_finite(np.abs(fprime(x))))


def _check_fsecond(layer: Elementwise, x: Array, y: Array, steps: _Steps, rule: _Rule) -> Comparison:
    """``f''`` against central differences of ``f'``."""
    reference, rounding = _derivative_of(lambda z: layer.fprime(z, layer.f(z)), x, steps)
    return rule.compare("fsecond", layer.fsecond(x, y), reference, rounding)


def _check_fprimes(
    layer: Elementwise, x: Array, y: Array, J_fd: Array, steps: _Steps, rule: _Rule, rounding: float
) -> list[Comparison]:
    """Both parts of ``fprimes``, on its own: ``f'`` against central differences of
    ``f``, and ``f''`` against central differences of the ``f'`` it returns."""
    first, second = layer.fprimes(x, y)
    reference, second_rounding = _derivative_of(lambda z: layer.fprimes(z, layer.f(z))[0], x, steps)
    return [
        rule.compare("fprimes (f')", first, np.diagonal(J_fd, axis1=-2, axis2=-1), rounding),
        rule.compare("fprimes (f'')", second, reference, second_rounding),
    ]


def check_network(
    net: Network,
    x: npt.ArrayLike,
    *,
    eps: Optional[float] = None,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    dtype: npt.DTypeLike = np.float64,
    second_order: bool = False,
) -> CheckResult:
    """Compare a network's Jacobian with central differences of its output.

    Parameters
    ----------
    net : Network
    x : array_like of shape (d_in,) or (n, d_in)
        Where to check; converted to ``dtype``.
    eps, atol, rtol, dtype
        As in :func:`check_layer`.
    second_order : bool, default False
        Also compare :meth:`Network.hessian` with per-sample central differences
        of the analytic Jacobian, and :meth:`Network.laplacian` with their trace.

    Returns
    -------
    CheckResult
        Compares the Jacobian of each mode the network supports (reverse, and
        forward when every layer it needs implements ``tangent``) with per-sample
        central differences of :meth:`Network.forward`, and the ``y`` of
        :meth:`Network.forward_backward` with ``forward(x)``.

    Raises
    ------
    TypeError, ValueError
        As :func:`check_layer`, and ``ValueError`` if ``x`` is not ``(d_in,)``
        or ``(n, d_in)``.

    See Also
    --------
    check_layer : the same for one layer, with more detail.
    check_param_grads : gradients with respect to the parameters.
    numerical_jacobian : the central differences used as the reference.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Affine, Network, Sigmoid, check_network
    >>> rng = np.random.default_rng(1)
    >>> net = Network([Affine(rng.normal(size=(2, 3))), Sigmoid(), Affine(rng.normal(size=(3, 1)))])
    >>> result = check_network(net, rng.normal(size=(5, 2)))
    >>> bool(result)
    True
    >>> print(result)  # doctest: +ELLIPSIS
    derivative check of Network([Affine(d_in=2, d_out=3), Sigmoid(), Affine(d_in=3, d_out=1)]): passed
      J (reverse mode): ok; max abs error ... at (...), max rel error ... at (...)
      J (forward mode): ok; max abs error ... at (...), max rel error ... at (...)
      y: ok; ...
    """
    if not isinstance(net, Network):
        raise TypeError(f"check_network expects a jacobian_np.Network; got {type(net).__name__}.")
    _check_tolerances(atol, rtol)
    eps = _check_eps(eps)
    x = as_input(x, net.d_in, "check_network").astype(dtype)
    y = net.forward(x)
    steps = _Steps.at(x, y.dtype, eps)
    rule = steps.rule(atol, rtol)
    J_fd = _central_differences(net.forward, x, steps.factor, x.ndim - 1)
    rounding = steps.rounding(_max_finite(np.abs(y)))
    comparisons = [rule.compare("J (reverse mode)", net.jacobian(x, mode="reverse"), J_fd, rounding)]
    try:
        J_forward = net.jacobian(x, mode="forward")
    except NotImplementedError:  # a layer lacks tangent: forward mode is unavailable
        pass
    else:
        comparisons.append(rule.compare("J (forward mode)", J_forward, J_fd, rounding))
    comparisons.append(rule.compare("y", net.forward_backward(x)[0], y))
    if second_order:
        J = comparisons[0].analytic
        H_fd = _central_differences(net.jacobian, x, steps.factor, x.ndim - 1)
        rounding = steps.rounding(_max_finite(np.abs(J)))
        laplacian_fd = np.trace(H_fd, axis1=-2, axis2=-1)
        comparisons.append(rule.compare("hessian", net.hessian(x), H_fd, rounding))
        comparisons.append(rule.compare("laplacian", net.laplacian(x), laplacian_fd, rounding * x.shape[-1]))
    return CheckResult(repr(net), tuple(comparisons))


def check_param_grads(
    net: Network,
    x: npt.ArrayLike,
    *,
    eps: Optional[float] = None,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    dtype: npt.DTypeLike = np.float64,
    rng: Optional[np.random.Generator] = None,
    jacobian: bool = True,
    taylor: bool = False,
) -> CheckResult:
    """Compare a network's parameter gradients with central differences over its parameters.

    With random ``grad_y`` and ``grad_J``, compares :meth:`Network.param_grad`
    with central differences of ``sum(grad_y * y)`` and, if ``jacobian``,
    :meth:`Network.jacobian_param_grad` with central differences of
    ``sum(grad_J * J)``, over the flat parameters.  ``J`` there is the network's
    analytic Jacobian, so this checks its parameter gradient; whether ``J`` itself
    is right is :func:`check_network`'s job.  The parameters are perturbed in place
    and restored exactly afterwards.

    Parameters
    ----------
    net : Network
    x : array_like of shape (d_in,) or (n, d_in)
        Where to check; converted to ``dtype``.  The network's parameters should
        be float64 too: finite differences need double precision.
    eps, atol, rtol, dtype
        As in :func:`check_layer`.
    rng : numpy.random.Generator, optional
        Source of ``grad_y`` and ``grad_J``; default ``np.random.default_rng(0)``.
    jacobian : bool, default True
        Also check :meth:`Network.jacobian_param_grad`.
    taylor : bool, default False
        Also check :meth:`Network.taylor_param_grad` (order 3, a random direction and
        random ``grad_T``) and :meth:`Network.laplacian_param_grad` (random ``grad_L``).

    Returns
    -------
    CheckResult

    Raises
    ------
    TypeError, ValueError
        As :func:`check_network`.

    See Also
    --------
    check_network : the Jacobian with respect to the inputs.
    jacobian_np.Network.param_grad, jacobian_np.Network.jacobian_param_grad : the gradients checked.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Affine, Network, Tanh, check_param_grads
    >>> rng = np.random.default_rng(0)
    >>> net = Network([Affine(rng.normal(size=(2, 3)), rng.normal(size=3)), Tanh(), Affine(rng.normal(size=(3, 2)))])
    >>> result = check_param_grads(net, rng.normal(size=(4, 2)))
    >>> bool(result), [c.name for c in result.comparisons]
    (True, ['param_grad', 'jacobian_param_grad'])
    >>> result = check_param_grads(net, rng.normal(size=(4, 2)), jacobian=False, taylor=True)
    >>> bool(result), [c.name for c in result.comparisons]
    (True, ['param_grad', 'taylor_param_grad', 'laplacian_param_grad'])
    """
    if not isinstance(net, Network):
        raise TypeError(f"check_param_grads expects a jacobian_np.Network; got {type(net).__name__}.")
    _check_tolerances(atol, rtol)
    eps = _check_eps(eps)
    x = as_input(x, net.d_in, "check_param_grads").astype(dtype)
    rng = np.random.default_rng(0) if rng is None else rng
    theta = net.get_flat_params()
    y, J = net.forward_backward(x)
    grad_y = rng.standard_normal(y.shape).astype(y.dtype)
    grad_J = rng.standard_normal(J.shape).astype(J.dtype)

    def at(theta_new: Array, f: Callable[[], Any]) -> Any:
        net.set_flat_params(theta_new)
        try:
            return f()
        finally:
            net.set_flat_params(theta)

    def flat(grads: list[Array]) -> Array:
        return np.concatenate([g.ravel() for g in grads]) if grads else np.zeros(0)

    # each objective with the size of its terms, which bounds its rounding error
    checks = [
        ("param_grad", lambda: np.sum(grad_y * net.forward(x)), np.sum(np.abs(grad_y * y)), lambda: net.param_grad(x, grad_y))
    ]
    if jacobian:
        checks.append(
            (
                "jacobian_param_grad",
                lambda: np.sum(grad_J * net.jacobian(x)),
                np.sum(np.abs(grad_J * J)),
                lambda: net.jacobian_param_grad(x, grad_J),
            )
        )
    if taylor:
        v = rng.standard_normal(x.shape[-1:]).astype(x.dtype)
        grad_T = rng.standard_normal((4,) + y.shape).astype(y.dtype)
        T, L = net.taylor(x, v, 3), net.laplacian(x)
        checks.append(
            (
                "taylor_param_grad",
                lambda: np.sum(grad_T * net.taylor(x, v, 3)),
                np.sum(np.abs(grad_T * T)),
                lambda: net.taylor_param_grad(x, v, 3, grad_T),
            )
        )
        checks.append(
            (
                "laplacian_param_grad",
                lambda: np.sum(grad_y * net.laplacian(x)),
                np.sum(np.abs(grad_y * L)),
                lambda: net.laplacian_param_grad(x, grad_y),
            )
        )
    steps = _Steps.at(theta, y.dtype, eps)
    rule = steps.rule(atol, rtol)
    comparisons = []
    for name, value, magnitude, analytic in checks:

        def objective(t: Array, value: Callable[[], Any] = value) -> Array:
            return np.asarray(at(t, value))

        reference = _central_differences(objective, theta, steps.factor, batch_ndim=0)
        comparisons.append(rule.compare(name, flat(analytic()), reference, steps.rounding(float(magnitude))))
    return CheckResult(repr(net), tuple(comparisons))
