"""Finite-difference checks of analytic derivatives.

``numerical_jacobian`` is a plain central-difference Jacobian.  ``check_layer`` and
``check_network`` compare a layer's or a network's analytic derivatives with it, in
float64 by default, and return a :class:`CheckResult` that is truthy only when they
agree and that says where they disagree most.

The default rule accepts an analytic value ``J`` against a numerical ``J_fd`` when
``|J - J_fd| <= atol * max(1, max|f|) + rtol * |J_fd|`` with ``atol = rtol = 1e-6``.
Central differences in float64 with the default step are accurate to about
``1e-10`` relative for the smooth built-in layers, so this rule has a wide margin
while still catching a derivative that is off by 1% or transposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast, Any, Callable, Optional

import numpy as np
import numpy.typing as npt

from ._typing import Array
from ._validation import as_float_array, as_input
from ._blocks import Eye, dense
from .layer import Elementwise, Layer
from .network import Network

#: Tolerances of the default rule (see the module docstring).
ATOL = 1e-6
RTOL = 1e-6
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
        Relative step: element ``i`` is perturbed by ``h_i = eps * max(1, |x_i|)``.
        The default ``eps**(1/3)`` of the coarser of the input and output dtypes
        (about ``6e-6`` for float64) balances truncation and rounding errors.

    Returns
    -------
    J : ndarray of shape ``f(x).shape + x.shape``
        ``J[..., i] = (f(x + h_i e_i) - f(x - h_i e_i)) / (2 h_i)``, dividing by the
        step actually taken after rounding ``x +- h_i``.

    Raises
    ------
    ValueError
        If ``eps`` is not a positive finite number.

    See Also
    --------
    check_layer, check_network

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
    x = as_float_array(x, "x")
    return _central_differences(f, x, _step_factor(f, x, eps), batch_ndim=0)


def _step_factor(f: Callable[[Array], Any], x: Array, eps: Optional[float]) -> float:
    if eps is None:
        out_dtype = np.asarray(f(x.copy())).dtype
        resolution = max(np.finfo(x.dtype).eps, _float_eps(out_dtype))
        return float(resolution ** (1 / 3))
    if not (isinstance(eps, (int, float, np.floating)) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number; got {eps!r}.")
    return float(eps)


def _float_eps(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).eps) if dtype.kind == "f" else 0.0


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
        The allowed ``|analytic - reference|``, elementwise.
    problem : str
        Set when the values could not be compared (for example a wrong shape).

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
    """

    name: str
    analytic: Array
    reference: Array
    tolerance: Array
    problem: str = ""

    @property
    def ok(self) -> bool:
        """True when the shapes match and every difference is within tolerance."""
        return not self.problem and bool(np.all(self.abs_error <= self.tolerance))

    @property
    def abs_error(self) -> Array:
        return np.abs(self.analytic - self.reference)

    @property
    def rel_error(self) -> Array:
        """``|analytic - reference| / |reference|``; 0 where both are 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = self.abs_error / np.abs(self.reference)
        return np.where(self.abs_error == 0, 0.0, rel)

    def worst(self) -> tuple[int, ...]:
        """Index of the largest error relative to the tolerance (NaN counts as worst)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            excess = self.abs_error / self.tolerance
        excess = np.where(self.abs_error == 0, 0.0, np.nan_to_num(excess, nan=np.inf))
        return _unravel(excess)

    def report(self) -> str:
        """A few lines saying whether and where this comparison failed."""
        if self.problem:
            return f"{self.name}: FAILED: {self.problem}"
        verdict = "ok" if self.ok else "FAILED"
        if self.analytic.size == 0:
            return f"{self.name}: {verdict} (empty)"
        abs_error, rel_error = self.abs_error, self.rel_error
        i_abs, i_rel, i_worst = _unravel(abs_error), _unravel(rel_error), self.worst()
        lines = [
            f"{self.name}: {verdict}; max abs error {abs_error[i_abs]:.3g} at {i_abs}, "
            f"max rel error {rel_error[i_rel]:.3g} at {i_rel}"
        ]
        if not self.ok:
            lines.append(
                f"  worst at {i_worst}: analytic {self.analytic[i_worst]:.17g}, "
                f"reference {self.reference[i_worst]:.17g}, "
                f"abs error {abs_error[i_worst]:.3g} > tolerance {self.tolerance[i_worst]:.3g}"
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
      backward(identity): FAILED; max abs error 0.00235 at (0, 0, 0), max rel error 0.01 at (0, 2, 2)
        worst at (0, 0, 0): analytic 0.2373537..., reference 0.2350037..., abs error 0.00235 > tolerance 1.24e-06
    ...
    """

    subject: str
    comparisons: tuple[Comparison, ...]

    def __bool__(self) -> bool:
        return all(c.ok for c in self.comparisons)

    @property
    def max_abs_error(self) -> float:
        """Largest ``|analytic - reference|`` over all comparisons (inf on a shape problem)."""
        return max((_max(c.abs_error) if not c.problem else np.inf) for c in self.comparisons)

    @property
    def max_rel_error(self) -> float:
        """Largest ``|analytic - reference| / |reference|`` over all comparisons."""
        return max((_max(c.rel_error) if not c.problem else np.inf) for c in self.comparisons)

    @property
    def failures(self) -> tuple[Comparison, ...]:
        """The comparisons that disagree."""
        return tuple(c for c in self.comparisons if not c.ok)

    def __str__(self) -> str:
        verdict = "passed" if self else "FAILED"
        lines = [f"derivative check of {self.subject}: {verdict}"]
        lines += ["  " + c.report().replace("\n", "\n  ") for c in self.comparisons]
        return "\n".join(lines)


def _max(values: Array) -> float:
    return float(np.max(np.nan_to_num(values, nan=np.inf))) if values.size else 0.0


def _compare(
    name: str, analytic: Array, reference: Array, scale: float, atol: float, rtol: float
) -> Comparison:
    analytic, reference = np.asarray(analytic), np.asarray(reference)
    problem = ""
    if analytic.shape != reference.shape:
        problem = f"shape {analytic.shape}, expected {reference.shape}"
        analytic = reference = np.zeros(0)
    tolerance = atol * scale + rtol * np.abs(reference)
    return Comparison(name, analytic, reference, tolerance, problem)


def _check_tolerances(atol: float, rtol: float) -> None:
    if not (atol >= 0 and rtol >= 0):
        raise ValueError(f"atol and rtol must be non-negative; got atol={atol!r}, rtol={rtol!r}.")


def _scale(y: Array) -> float:
    """``max(1, max|f|)``, the scale of the absolute tolerance."""
    return max(1.0, float(np.max(np.abs(y)))) if y.size else 1.0


def check_layer(
    layer: Layer,
    x: npt.ArrayLike,
    *,
    eps: Optional[float] = None,
    atol: float = ATOL,
    rtol: float = RTOL,
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
    against central differences of its analytic Jacobian.

    Parameters
    ----------
    layer : Layer
    x : array_like of shape ``(*batch, d_in)``
        Where to check; converted to ``dtype``.  Keep it away from kinks (ReLU at 0).
    eps : float, optional
        Relative finite-difference step (see :func:`numerical_jacobian`).
    atol, rtol : float
        Tolerances of the rule ``|J - J_fd| <= atol * max(1, max|f|) + rtol * |J_fd|``.
    dtype : dtype, default float64
        Precision of the check: finite differences need double precision.
    rng : numpy.random.Generator, optional
        Source of the random ``dy``; default ``np.random.default_rng(0)``.
    second_order : bool, default False
        Also check second derivatives; the layer must support them (raises
        ``NotImplementedError`` otherwise).

    Returns
    -------
    CheckResult
        Truthy only when all comparisons agree; ``print`` it for a report.

    Examples
    --------
    >>> import numpy as np
    >>> from jacobian_np import Tanh, check_layer
    >>> result = check_layer(Tanh(), np.linspace(-2, 2, 12).reshape(3, 4))
    >>> bool(result), result.max_rel_error < 1e-8
    (True, True)
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer expects a jacobian_np.Layer; got {type(layer).__name__}.")
    _check_tolerances(atol, rtol)
    x = as_float_array(x, "x").astype(dtype)
    if x.ndim == 0:
        raise ValueError("check_layer expects x of shape (*batch, d_in); got a scalar.")
    rng = np.random.default_rng(0) if rng is None else rng
    x_before = x.copy()
    y, cache = layer.forward_with_cache(x)
    batch = x.shape[:-1]
    J_fd = _central_differences(
        lambda z: layer.forward_with_cache(z)[0], x, _step_factor(lambda z: y, x, eps), x.ndim - 1
    )
    scale = _scale(y)

    # writable, so that a backward that writes into dy is reported rather than crashing
    identity = np.broadcast_to(np.eye(y.shape[-1], dtype=y.dtype), batch + (y.shape[-1],) * 2).copy()
    dy = rng.standard_normal(batch + (_RANDOM_ROWS, y.shape[-1])).astype(y.dtype)
    dy_before = dy.copy()
    dx = layer.backward(dy, cache)
    comparisons = [
        _compare("backward(identity)", layer.backward(identity, cache), J_fd, scale, atol, rtol),
        _compare("backward(random dy)", dx, dy @ J_fd, scale, atol, rtol),
        _compare("forward left x unchanged", x, x_before, 1.0, 0.0, 0.0),
        _compare("backward left dy unchanged", dy, dy_before, 1.0, 0.0, 0.0),
    ]
    # the Jacobian as every pass starts from it: the layer's jacobian or its fast path
    try:
        jacobian = _compare("jacobian", _layer_jacobian(layer, y, cache), J_fd, scale, atol, rtol)
    except ValueError as error:  # a wrong shape, or a write into a read-only block: report it
        jacobian = Comparison("jacobian", np.zeros(0), np.zeros(0), np.zeros(0), str(error))
    comparisons.insert(1, jacobian)
    if layer.supports("tangent"):
        comparisons += _check_tangent(layer, cache, J_fd, scale, atol, rtol, rng)
    if layer.supports("fsecond"):
        comparisons.append(_check_fsecond(cast(Elementwise, layer), x, y, eps, atol, rtol))
    if second_order:
        comparisons += _check_curvature(layer, x, cache, eps, atol, rtol, rng)
    return CheckResult(repr(layer), tuple(comparisons))


def _check_curvature(
    layer: Layer, x: Array, cache: Any, eps: Optional[float], atol: float, rtol: float, rng: np.random.Generator
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
    # H[..., j, a, b] = d J[..., j, a] / d x_b
    H_fd = _central_differences(analytic_jacobian, x, _step_factor(analytic_jacobian, x, eps), x.ndim - 1)
    batch, d_in = x.shape[:-1], x.shape[-1]
    eye = np.eye(d_in, dtype=x.dtype)
    u = np.broadcast_to(np.repeat(eye, d_in, axis=0), batch + (d_in * d_in, d_in))  # e_a for pair (a, b)
    v = np.broadcast_to(np.tile(eye, (d_in, 1)), batch + (d_in * d_in, d_in))  # e_b
    curvature = layer.curvature(u, v, cache)
    units = curvature.reshape(batch + (d_in, d_in, curvature.shape[-1]))
    u_rand = rng.standard_normal(batch + (_RANDOM_ROWS, d_in)).astype(x.dtype)
    v_rand = rng.standard_normal(batch + (_RANDOM_ROWS, d_in)).astype(x.dtype)
    scale = _scale(J)
    return [
        _compare("curvature(unit pairs)", np.moveaxis(units, -1, -3), H_fd, scale, atol, rtol),
        _compare(
            "curvature(random pairs)",
            layer.curvature(u_rand, v_rand, cache),
            np.einsum("...jab,...pa,...pb->...pj", H_fd, u_rand, v_rand),
            scale,
            atol,
            rtol,
        ),
    ]


def _layer_jacobian(layer: Layer, y: Array, cache: Any) -> Array:
    """The layer's Jacobian at the output ``y``, as the engine's reverse step forms it."""
    return dense(layer.pull(Eye(y), cache, False)[0])


def _check_tangent(
    layer: Layer, cache: Any, J_fd: Array, scale: float, atol: float, rtol: float, rng: np.random.Generator
) -> list[Comparison]:
    """Forward mode: tangents pushed through the layer against ``J_fd``."""
    batch, d_in = J_fd.shape[:-2], J_fd.shape[-1]
    J_fd_T = np.swapaxes(J_fd, -1, -2)
    identity = np.broadcast_to(np.eye(d_in, dtype=J_fd.dtype), batch + (d_in, d_in)).copy()
    dx = rng.standard_normal(batch + (_RANDOM_ROWS, d_in)).astype(J_fd.dtype)
    dx_before = dx.copy()
    return [
        _compare("tangent(identity)", layer.tangent(identity, cache), J_fd_T, scale, atol, rtol),
        _compare("tangent(random dx)", layer.tangent(dx, cache), dx @ J_fd_T, scale, atol, rtol),
        _compare("tangent left dx unchanged", dx, dx_before, 1.0, 0.0, 0.0),
    ]


def _check_fsecond(
    layer: Elementwise, x: Array, y: Array, eps: Optional[float], atol: float, rtol: float
) -> Comparison:
    """``f''`` against central differences of ``f'``, every element perturbed at once."""
    h = _step_factor(lambda z: y, x, eps) * np.maximum(1, np.abs(x))
    plus, minus = x + h, x - h
    reference = (layer.fprime(plus, layer.f(plus)) - layer.fprime(minus, layer.f(minus))) / (plus - minus)
    scale = _scale(layer.fprime(x, y))
    return _compare("fsecond", layer.fsecond(x, y), reference, scale, atol, rtol)


def check_network(
    net: Network,
    x: npt.ArrayLike,
    *,
    eps: Optional[float] = None,
    atol: float = ATOL,
    rtol: float = RTOL,
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
    x = as_input(x, net.d_in, "check_network").astype(dtype)
    y = net.forward(x)
    J_fd = _central_differences(net.forward, x, _step_factor(lambda z: y, x, eps), x.ndim - 1)
    scale = _scale(y)
    comparisons = [_compare("J (reverse mode)", net.jacobian(x, mode="reverse"), J_fd, scale, atol, rtol)]
    try:
        J_forward = net.jacobian(x, mode="forward")
    except NotImplementedError:  # a layer lacks tangent: forward mode is unavailable
        pass
    else:
        comparisons.append(_compare("J (forward mode)", J_forward, J_fd, scale, atol, rtol))
    comparisons.append(_compare("y", net.forward_backward(x)[0], y, scale, atol, rtol))
    if second_order:
        J = comparisons[0].analytic
        H_fd = _central_differences(net.jacobian, x, _step_factor(net.jacobian, x, eps), x.ndim - 1)
        scale = _scale(J)
        laplacian_fd = np.trace(H_fd, axis1=-2, axis2=-1)
        comparisons.append(_compare("hessian", net.hessian(x), H_fd, scale, atol, rtol))
        comparisons.append(_compare("laplacian", net.laplacian(x), laplacian_fd, scale, atol, rtol))
    return CheckResult(repr(net), tuple(comparisons))


def check_param_grads(
    net: Network,
    x: npt.ArrayLike,
    *,
    eps: Optional[float] = None,
    atol: float = ATOL,
    rtol: float = RTOL,
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

    checks = [("param_grad", lambda: np.sum(grad_y * net.forward(x)), lambda: net.param_grad(x, grad_y))]
    if jacobian:
        checks.append(
            ("jacobian_param_grad", lambda: np.sum(grad_J * net.jacobian(x)), lambda: net.jacobian_param_grad(x, grad_J))
        )
    if taylor:
        v = rng.standard_normal(x.shape[-1:]).astype(x.dtype)
        grad_T = rng.standard_normal((4,) + y.shape).astype(y.dtype)
        checks.append(
            ("taylor_param_grad", lambda: np.sum(grad_T * net.taylor(x, v, 3)), lambda: net.taylor_param_grad(x, v, 3, grad_T))
        )
        checks.append(
            ("laplacian_param_grad", lambda: np.sum(grad_y * net.laplacian(x)), lambda: net.laplacian_param_grad(x, grad_y))
        )
    comparisons = []
    for name, value, analytic in checks:

        def objective(t: Array, value: Callable[[], Any] = value) -> Array:
            return np.asarray(at(t, value))

        reference = numerical_jacobian(objective, theta, eps)
        comparisons.append(_compare(name, flat(analytic()), reference, _scale(reference), atol, rtol))
    return CheckResult(repr(net), tuple(comparisons))
