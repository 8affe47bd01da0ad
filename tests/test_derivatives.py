"""Every layer in the registry against central differences in float64.

Gradient checks need double precision: float32 rounding swamps the differences.
"""

import inspect
import math
import warnings

import numpy as np
import pytest
from cases import CASE_IDS, LAYER_CASES, with_dtype

import jacobian_np as jn

BATCH_SHAPES = [(), (4,), (0,), (2, 3)]


@pytest.mark.parametrize("batch", BATCH_SHAPES, ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_layer_matches_central_differences(case, batch, rng):
    layer = case.make(rng)
    x = case.sample(rng, batch)
    result = jn.check_layer(layer, x, rng=rng)
    assert result, str(result)
    # check_layer compares backward(identity), jacobian and backward(random dy)
    assert {c.name for c in result.comparisons} >= {
        "backward(identity)",
        "jacobian",
        "backward(random dy)",
    }


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_layer_inside_network_matches_central_differences(case, rng):
    """The layer last (it seeds reverse mode), in the middle, and first (it seeds
    forward mode); check_network compares both modes with central differences."""
    layer = case.make(rng)
    d = case.sample(rng, ()).shape[-1]
    d_out = layer.forward_with_cache(case.sample(rng, ()))[0].shape[-1]
    before = jn.Affine(rng.normal(size=(3, d)) * 0.5)
    after = jn.Affine(rng.normal(size=(d_out, 2)))
    x = rng.normal(size=(5, 3))
    for net in (jn.Network([before, layer]), jn.Network([before, layer, after])):
        if isinstance(layer, jn.ReLU):  # keep pre-activations off the kink
            x = _away_from_relu_kink(net, x, rng)
        result = jn.check_network(net, x)
        assert result, str(result)
        assert [c.name for c in result.comparisons] == ["J (reverse mode)", "J (forward mode)", "y"]
    first = jn.Network([layer, after])
    result = jn.check_network(first, case.sample(rng, (5,)))
    assert result, str(result)


def _away_from_relu_kink(net, x, rng):
    z = net.layers[0].forward_with_cache(x)[0]
    kept = x[np.all(np.abs(z) > 0.05, axis=1)]
    assert len(kept), "every sample is near the kink: change the seed"
    return kept


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_layer_is_stable_far_out(case, rng):
    """At |x| = 1e4 no overflow/invalid/divide warning and every derivative is finite."""
    layer = case.make(rng)
    x = case.sample(rng, (6,))
    x = 1e4 * np.sign(x)  # all of +-1e4, and mixed signs within each row
    x[0] = 1e4
    x[1] = -1e4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            y, cache = layer.forward_with_cache(x)
            J = jn.Network([layer]).jacobian(x, mode="reverse")
            dx = layer.backward(np.ones(x.shape[:-1] + (2, y.shape[-1])), cache)
    assert np.all(np.isfinite(y))
    assert np.all(np.isfinite(J))
    assert np.all(np.isfinite(dx))


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_float32_in_float32_out(case, rng):
    layer = with_dtype(case.make(rng), np.float32)  # weights decide by promotion: use float32 weights
    x = case.sample(rng, (3,)).astype(np.float32)
    y, cache = layer.forward_with_cache(x)
    dy = np.ones((3, 2, y.shape[-1]), dtype=np.float32)
    assert y.dtype == np.float32
    assert layer.backward(dy, cache).dtype == np.float32
    net = jn.Network([layer])
    assert net.jacobian(x, mode="reverse").dtype == net.jacobian(x, mode="forward").dtype == np.float32


def test_every_exported_layer_has_a_case(rng):
    registered = {type(case.make(rng)) for case in LAYER_CASES}
    exported = {
        obj
        for obj in (getattr(jn, name) for name in jn.__all__)
        if inspect.isclass(obj) and issubclass(obj, jn.Layer) and not inspect.isabstract(obj)
    }
    assert exported, "no concrete layers exported"
    missing = {cls.__name__ for cls in exported - registered}
    assert not missing, f"layers without a case in tests/cases.py: {sorted(missing)}"


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_check_layer_covers_forward_mode_and_second_derivatives(case, rng):
    """Every layer is checked in forward mode, every elementwise one also for f''."""
    layer = case.make(rng)
    result = jn.check_layer(layer, case.sample(rng, (4,)), rng=rng)
    names = {c.name for c in result.comparisons}
    assert "tangent(identity)" in names
    if isinstance(layer, jn.Elementwise):
        assert "fsecond" in names
    assert result, str(result)


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_forward_mode_and_second_derivatives_are_stable_far_out(case, rng):
    """``tangent`` and ``fsecond`` at |x| = 1e4: no warning, finite, float32 kept."""
    layer = case.make(rng)
    for dtype in (np.float64, np.float32):
        x = (1e4 * np.sign(case.sample(rng, (6,)))).astype(dtype)
        x[0], x[1] = 1e4, -1e4
        dx = np.ones(x.shape[:-1] + (2, x.shape[-1]), dtype=dtype)
        layer = with_dtype(layer, dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with np.errstate(all="raise", under="ignore"):
                y, cache = layer.forward_with_cache(x)
                dy = layer.tangent(dx, cache)
                second = layer.fsecond(x, y) if isinstance(layer, jn.Elementwise) else dy
        assert np.all(np.isfinite(dy)) and np.all(np.isfinite(second))
        assert dy.dtype == second.dtype == dtype


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elementwise_derivatives_do_not_overflow_at_the_largest_floats(case, dtype, rng):
    layer = case.make(rng)
    if not isinstance(layer, jn.Elementwise) or isinstance(layer, jn.Sin):  # Sin: periodic, any x is fine
        pytest.skip("elementwise activations with tails only")
    big = np.finfo(dtype).max
    x = np.array([-big, -big / 2, big / 2, big, 0.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            y, cache = layer.forward_with_cache(x)
            d1, d2 = layer.fprime(*cache), layer.fsecond(*cache)
    assert np.all(np.isfinite(d1)) and np.all(np.isfinite(d2))


# --- Taylor mode: every layer's rule, to order 5 -------------------------------------

TAYLOR_ORDERS = range(6)
KINKED = (jn.ReLU, jn.LeakyReLU, jn.ELU)


def _taylor_inputs(case, batch, order, rng, paths=2):
    """A layer, its expansion point and a random path's coefficients (small for layers with
    kinks, whose inputs sit at least 0.1 from them), and the point's cache."""
    layer = case.make(rng)
    x0 = case.sample(rng, batch)
    scale = 0.1 if isinstance(layer, KINKED) else 0.5
    series = [rng.uniform(-1, 1, batch + (paths, x0.shape[-1])) * scale for _ in range(order)]
    return layer, x0, series


def _chebyshev_taylor(layer, x0, series, rho=0.25, degree=22):
    """Independent reference: the layer's forward along the path at Chebyshev nodes in
    |t| <= rho, interpolated, and the interpolant's power-series coefficients."""
    from numpy.polynomial import chebyshev

    nodes = np.cos(np.pi * (np.arange(degree + 1) + 0.5) / (degree + 1))
    values = []
    for u in nodes:
        t = rho * u
        path = x0[..., None, :] + sum(x_k * t ** (k + 1) for k, x_k in enumerate(series))
        values.append(layer.forward_with_cache(path)[0])
    values = np.array(values)
    coefficients = chebyshev.chebfit(nodes, values.reshape(len(nodes), -1), degree)
    to_powers = np.array([np.pad(chebyshev.cheb2poly(np.eye(degree + 1)[n]), (0, degree + 1))[: degree + 1] for n in range(degree + 1)])
    powers = to_powers.T @ coefficients  # row k: coefficient of u**k
    return [powers[k].reshape(values.shape[1:]) / rho**k for k in range(1, len(series) + 1)]


def _taylor(layer, series, cache, groups=None):
    """The output coefficients through the step every pass calls (the ``taylor`` rule for a
    leaf layer, the children's steps for a composite)."""
    return layer.push_taylor(series, cache, groups)[0]


def _taylor_vjp(layer, series, grads, cache, groups=None, dy=None):
    """``(dx, grad_series, param_grads)`` through the reverse step (``taylor_vjp`` for a leaf)."""
    saved = layer.push_taylor(series, cache, groups)[1]
    return layer.pull_taylor(dy, grads, saved, cache, groups, True)


@pytest.mark.parametrize("order", TAYLOR_ORDERS, ids=lambda k: f"order{k}")
@pytest.mark.parametrize("batch", BATCH_SHAPES, ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_layer_taylor_rule(case, batch, order, rng):
    """The Taylor rule against an interpolated reference along a curved path; along a line,
    each order against central differences of the order below; the reverse rule against
    central differences of ``sum(grads * taylor)``; broadcast zeros (skipped) against real
    zeros; the collapsed top coefficient against the sum over the paths."""
    layer, x0, series = _taylor_inputs(case, batch, order, rng)
    y0, cache = layer.forward_with_cache(x0)
    out = _taylor(layer, series, cache)
    assert len(out) == order
    assert all(y_k.shape == batch + (2, y0.shape[-1]) for y_k in out)
    for y_k, reference in zip(out, _chebyshev_taylor(layer, x0, series) if order and 0 not in batch else []):
        np.testing.assert_allclose(y_k, reference, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(reference).max()))

    # along the line x0 + t v: T_k = k! y_k is the derivative of T_(k-1) along v
    v = series[0] if order else np.zeros(batch + (2, x0.shape[-1]))
    h = 1e-4

    def line(point, k):
        along = [v] + [np.zeros_like(v)] * (k - 1)
        return [y_j * math.factorial(j) for j, y_j in enumerate(_taylor(layer, along, layer.forward_with_cache(point)[1]), 1)]

    for k in range(1, order + 1):
        shift = h * v[..., 0, :]  # the first path's direction; compare that path
        upper = ([layer.forward_with_cache(x0 + shift)[0][..., None, :]] + line(x0 + shift, k - 1))[k - 1]
        lower = ([layer.forward_with_cache(x0 - shift)[0][..., None, :]] + line(x0 - shift, k - 1))[k - 1]
        exact = line(x0, k)[k - 1]
        np.testing.assert_allclose(exact[..., 0, :], ((upper - lower) / (2 * h))[..., 0, :], rtol=1e-5, atol=1e-6)

    # the reverse rule: directional derivatives of sum(dy * y) + sum(grads * taylor)
    grads = [rng.normal(size=y_k.shape) for y_k in out]
    dy = rng.normal(size=y0.shape)
    grad_x0, grad_series, param_grads = _taylor_vjp(layer, series, grads, cache, dy=dy)
    grad_x0 = np.zeros_like(x0) if grad_x0 is None else grad_x0
    assert grad_x0.shape == x0.shape and [g.shape for g in grad_series] == [x_k.shape for x_k in series]
    params = layer.params
    assert [g.shape for g in param_grads] == [p.shape for p in params]

    def objective(step, dx0, dseries, dparams):
        saved = [p.copy() for p in params]
        for p, dp in zip(params, dparams):
            p += step * dp
        try:
            y, at = layer.forward_with_cache(x0 + step * dx0)
            result = _taylor(layer, [x_k + step * d for x_k, d in zip(series, dseries)], at)
            return np.sum(dy * y) + sum(np.sum(g * y_k) for g, y_k in zip(grads, result))
        finally:
            for p, s in zip(params, saved):
                p[...] = s

    for _ in range(2):
        dx0, dseries = rng.normal(size=x0.shape), [rng.normal(size=x_k.shape) for x_k in series]
        dparams = [rng.normal(size=p.shape) for p in params]
        central = [(objective(step, dx0, dseries, dparams) - objective(-step, dx0, dseries, dparams)) / (2 * step) for step in (1e-3, 5e-4)]
        numeric = (4 * central[1] - central[0]) / 3  # Richardson: error of order step**4
        analytic = np.sum(grad_x0 * dx0) + sum(np.sum(g * d) for g, d in zip(grad_series, dseries))
        analytic += sum(np.sum(g * d) for g, d in zip(param_grads, dparams))
        assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric)), (analytic, numeric)

    if order < 2:
        return
    # a zero coefficient given as a broadcast zero is skipped, with the same result
    with_zero = series[:1] + [jn._series.zeros(series[1].dtype, series[1].shape)] + series[2:]
    real_zero = series[:1] + [np.zeros_like(series[1])] + series[2:]
    for a, b in zip(_taylor(layer, with_zero, cache), _taylor(layer, real_zero, cache)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)
    zero_grads = grads[:1] + [jn._series.zeros(grads[1].dtype, grads[1].shape)] + grads[2:]
    real_grads = grads[:1] + [np.zeros_like(grads[1])] + grads[2:]
    a, b = _taylor_vjp(layer, series, zero_grads, cache), _taylor_vjp(layer, series, real_grads, cache)
    for left, right in zip([a[0]] + a[1] + a[2], [b[0]] + b[1] + b[2]):
        np.testing.assert_allclose(0 if left is None else left, 0 if right is None else right, rtol=1e-14, atol=1e-15)

    # collapsed: the top coefficient's sum over the two paths, carried as one row
    top = series[-1].sum(axis=-2, keepdims=True)
    collapsed = _taylor(layer, series[:-1] + [top], cache, groups=(2,))
    for a, b in zip(collapsed[:-1], out[:-1]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(collapsed[-1], out[-1].sum(axis=-2, keepdims=True), rtol=1e-12, atol=1e-13)
    g_top = grads[-1][..., :1, :]  # one adjoint for the sum: the same for both paths
    a = _taylor_vjp(layer, series[:-1] + [top], grads[:-1] + [g_top], cache, groups=(2,), dy=dy)
    spread = [series[-1].sum(axis=-2, keepdims=True) * [[1.0], [0.0]]]  # the sum in the first row
    b = _taylor_vjp(layer, series[:-1] + spread, grads[:-1] + [np.repeat(g_top, 2, axis=-2)], cache, dy=dy)
    np.testing.assert_allclose(0 if a[0] is None else a[0], 0 if b[0] is None else b[0], rtol=1e-12, atol=1e-13)
    for left, right in zip(a[1][:-1], b[1][:-1]):
        np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a[1][-1], b[1][-1][..., :1, :], rtol=1e-12, atol=1e-13)
    for left, right in zip(a[2], b[2]):
        np.testing.assert_allclose(left, right, rtol=1e-12, atol=1e-13)
    # one group per path collapses nothing: the ordinary rules again, through the group machinery
    for left, right in zip(_taylor(layer, series, cache, groups=(1, 1)), out):
        np.testing.assert_allclose(left, right, rtol=1e-13, atol=1e-14)
    a = _taylor_vjp(layer, series, grads, cache, groups=(1, 1), dy=dy)
    b = _taylor_vjp(layer, series, grads, cache, dy=dy)
    for left, right in zip([a[0]] + a[1] + a[2], [b[0]] + b[1] + b[2]):
        np.testing.assert_allclose(0 if left is None else left, 0 if right is None else right, rtol=1e-12, atol=1e-13)


ELEMENTWISE_REFERENCES = {
    # name -> mpmath function; evaluated at 60 significant digits
    "Sigmoid": lambda mp, x: 1 / (1 + mp.exp(-x)),
    "Tanh": lambda mp, x: mp.tanh(x),
    "Softplus": lambda mp, x: mp.log1p(mp.exp(x)),
    "GELU": lambda mp, x: x * mp.ncdf(x),
    "SiLU": lambda mp, x: x / (1 + mp.exp(-x)),
    "Sin": lambda mp, x: mp.sin(x),
    "ELU": lambda mp, x: x if x > 0 else mp.expm1(x),
    "ELU-alpha0.7": lambda mp, x: x if x > 0 else 0.7 * mp.expm1(x),
    "Identity": lambda mp, x: x,
    "ReLU": lambda mp, x: max(x, 0),
    "LeakyReLU": lambda mp, x: x if x > 0 else 0.01 * x,
    "LeakyReLU-alpha0.2": lambda mp, x: x if x > 0 else 0.2 * x,
}


@pytest.mark.parametrize("case", [c for c in LAYER_CASES if c.name in ELEMENTWISE_REFERENCES], ids=lambda c: c.name)
def test_elementwise_derivatives_of_every_order_against_high_precision(case, rng):
    """f', ..., f^(6) against mpmath's Taylor coefficients, with relative accuracy in the
    tails (``tanh^(k)(20)`` is about ``4**k e^-40``, not 0), except right at their zeros."""
    mp = pytest.importorskip("mpmath")
    layer = case.make(rng)
    x = np.array([-20.0, -6.3, -1.7, -0.35, 0.45, 2.2, 7.1, 20.0])
    derivatives = layer.derivatives(x, layer.forward_with_cache(x)[1][1], 6)
    assert len(derivatives) == 6
    with mp.workdps(60):
        f = ELEMENTWISE_REFERENCES[case.name]
        for i, xi in enumerate(x):
            reference = list(mp.diffs(lambda t: f(mp, t), mp.mpf(float(xi)), 6))
            for k in range(1, 7):
                want = float(reference[k])
                got = derivatives[k - 1][i]
                assert abs(got - want) <= 1e-11 * abs(want) + 1e-300, (case.name, k, xi, got, want)


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_taylor_rules_are_stable_far_out(case, dtype, rng):
    """Orders up to 6 at |x| = 1e4 and at the largest floats: no warning, finite, dtype kept."""
    layer = with_dtype(case.make(rng), dtype)
    width = case.sample(rng, ()).shape[-1]
    big = np.finfo(dtype).max
    rows = [np.full(width, 1e4), np.full(width, -1e4), np.resize([1e4, -1e4], width)]
    if isinstance(layer, jn.Elementwise):  # elsewhere a sum of the largest floats overflows in forward
        rows.append(np.resize([big, -big, 0.0], width))
    x = np.array(rows, dtype=dtype)
    series = [np.ones(x.shape[:-1] + (2, width), dtype=dtype)] * 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            y, cache = layer.forward_with_cache(x)
            out = _taylor(layer, series, cache)
            grad_x0, grad_series, _ = _taylor_vjp(layer, series, [np.ones_like(y_k) for y_k in out], cache)
            derivatives = layer.derivatives(*cache, 7) if isinstance(layer, jn.Elementwise) else []
    for a in out + grad_series + derivatives + ([] if grad_x0 is None else [grad_x0]):
        assert np.all(np.isfinite(a)) and a.dtype == dtype
