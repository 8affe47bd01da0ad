"""Activation values and derivatives, including far out in the tails.

References are computed with Python's ``decimal`` module (50 digits, or 420 where
a tail needs it) from the textbook definitions, independently of the library's
formulas.
"""

import functools
import inspect
import math
import warnings
from decimal import Decimal, getcontext, localcontext
from fractions import Fraction

import numpy as np
import pytest

import jacobian_np as jn
from jacobian_np.layer import implements

getcontext().prec = 50


def derivative(layer, x):
    x = np.asarray(x, dtype=float)
    y, cache = layer.forward(x)
    return np.diagonal(layer.jacobian(y, cache)).copy()


def sigmoid_prime_reference(x):
    e = Decimal(-x).exp()
    return float(e / (1 + e) ** 2)


def tanh_prime_reference(x):
    c = (Decimal(x).exp() + Decimal(-x).exp()) / 2
    return float(1 / (c * c))


POINTS = [-700.0, -100.0, -40.0, -20.0, -5.0, -0.3, 0.0, 1e-8, 0.7, 3.0, 19.0, 20.0, 40.0, 100.0]


@pytest.mark.parametrize(
    "layer, reference",
    [(jn.Sigmoid(), sigmoid_prime_reference), (jn.Tanh(), tanh_prime_reference)],
    ids=["Sigmoid", "Tanh"],
)
def test_derivative_keeps_relative_accuracy_in_the_tails(layer, reference):
    got = derivative(layer, POINTS)
    want = np.array([reference(x) for x in POINTS])
    representable = want > 0  # tanh'(-700) ~ 1e-608 is not
    assert np.all(got[representable] > 0)  # never rounded to zero when it need not be
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_quoted_tail_values():
    assert derivative(jn.Sigmoid(), [40.0])[0] == pytest.approx(4.248354255291589e-18, rel=1e-14)
    assert derivative(jn.Tanh(), [20.0])[0] == pytest.approx(1.6993724667755e-17, rel=1e-12)


def test_derivative_underflows_to_zero_without_warning_at_1e4():
    for layer in (jn.Sigmoid(), jn.Tanh()):
        np.testing.assert_array_equal(derivative(layer, [-1e4, 1e4]), [0.0, 0.0])


def test_relu_derivative_at_zero_is_zero():
    np.testing.assert_array_equal(derivative(jn.ReLU(), [-1.0, -0.0, 0.0, 1e-300, 2.0]), [0, 0, 0, 1, 1])


def test_relu_derivative_of_nan_is_nan_and_of_inf_is_one():
    d = derivative(jn.ReLU(), [np.nan, np.inf, -np.inf])
    assert np.isnan(d[0]) and d[1] == 1 and d[2] == 0


def test_softmax_rows_sum_to_one_far_out(rng):
    x = rng.choice([-1e4, 1e4, 0.0], size=(5, 4))
    y, cache = jn.Softmax().forward(x)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-15)
    assert np.all(np.isfinite(jn.Softmax().jacobian(y, cache)))


def test_softmax_is_over_the_last_axis(rng):
    x = rng.normal(size=(3, 4))
    y, _ = jn.Softmax().forward(x)
    np.testing.assert_allclose(y, np.exp(x) / np.exp(x).sum(axis=1, keepdims=True), rtol=1e-14)


def test_softmax_jacobian_rows_sum_to_zero(rng):
    """Softmax outputs sum to one, so each column of J sums to zero."""
    y, cache = jn.Softmax().forward(rng.normal(size=(6, 5)))
    np.testing.assert_allclose(jn.Softmax().jacobian(y, cache).sum(axis=-2), 0.0, atol=1e-15)


@pytest.mark.parametrize("layer", [jn.ReLU(), jn.Sigmoid(), jn.Tanh(), jn.Softmax()], ids=repr)
def test_activation_values(layer, rng):
    x = rng.normal(size=(4, 3)) * 3
    expected = {
        "ReLU()": np.where(x > 0, x, 0.0),
        "Sigmoid()": 1 / (1 + np.exp(-x)),
        "Tanh()": (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x)),
        "Softmax()": np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True),
    }[repr(layer)]
    np.testing.assert_allclose(layer.forward(x)[0], expected, rtol=1e-13)


# --- The activation set of issue 3 -----------------------------------------------------
#
# References for the tails, in decimal at 420 digits: enough for 1 - erf(z) at
# z = 27, about 1e-318, and for 1 - s(x) at x = 700, about 1e-304, to keep 100 digits.
TAIL_PRECISION = 420


def second_derivative(layer, x):
    x = np.asarray(x, dtype=float)
    return layer.fsecond(x, layer.f(x))


@functools.lru_cache(maxsize=None)
def decimal_pi():
    """pi at TAIL_PRECISION digits (the recipe of the decimal module's documentation)."""
    with localcontext() as ctx:
        ctx.prec = TAIL_PRECISION + 2
        three = Decimal(3)
        previous, t, total, n, na, d, da = 0, three, three, 1, 0, 0, 24
        while total != previous:
            previous = total
            n, na = n + na, na + 8
            d, da = d + da, da + 32
            t = (t * n) / d
            total += t
        return total


def normal_cdf_decimal(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2 with the positive series
    erf(z) = 2 / sqrt(pi) exp(-z**2) sum_n 2**n z**(2n + 1) / (1 * 3 * ... * (2n + 1))."""
    x = Decimal(x)
    z = abs(x) / Decimal(2).sqrt()
    term = total = z
    n = 0
    while term > total.scaleb(-TAIL_PRECISION):
        n += 1
        term = term * 2 * z * z / (2 * n + 1)
        total += term
    erf = 2 / decimal_pi().sqrt() * (-z * z).exp() * total
    return (1 + erf) / 2 if x >= 0 else (1 - erf) / 2


def normal_pdf_decimal(x):
    x = Decimal(x)
    return (-x * x / 2).exp() / (2 * decimal_pi()).sqrt()


def logistic_decimal(x):
    return 1 / (1 + Decimal(-x).exp())


def at_tail_precision(formula):
    """Evaluate ``formula(x)`` in decimal at TAIL_PRECISION digits and round to float."""

    @functools.wraps(formula)
    def reference(x):
        with localcontext() as ctx:
            ctx.prec = TAIL_PRECISION
            return float(formula(x))

    return reference


@at_tail_precision
def gelu_prime_reference(x):  # Phi(x) + x phi(x)
    return normal_cdf_decimal(x) + Decimal(x) * normal_pdf_decimal(x)


@at_tail_precision
def gelu_second_reference(x):  # phi(x) (2 - x**2)
    return normal_pdf_decimal(x) * (2 - Decimal(x) ** 2)


@at_tail_precision
def logistic_reference(x):  # Softplus'
    return logistic_decimal(x)


@at_tail_precision
def logistic_prime_reference(x):  # Softplus'', Sigmoid'
    s = logistic_decimal(x)
    return s * (1 - s)


@at_tail_precision
def logistic_second_reference(x):  # Sigmoid''
    s = logistic_decimal(x)
    return s * (1 - s) * (1 - 2 * s)


@at_tail_precision
def tanh_second_reference(x):  # -2 tanh(x) (1 - tanh(x)**2)
    e = (2 * Decimal(x)).exp()
    t = (e - 1) / (e + 1)
    return -2 * t * (1 - t * t)


@at_tail_precision
def silu_prime_reference(x):  # s + x s (1 - s)
    s = logistic_decimal(x)
    return s + Decimal(x) * s * (1 - s)


@at_tail_precision
def silu_second_reference(x):  # 2 s' + x s'' with s'' = s (1 - s) (1 - 2 s)
    s = logistic_decimal(x)
    return s * (1 - s) * (2 + Decimal(x) * (1 - 2 * s))


def elu_left_reference(alpha):  # alpha exp(x), both f' and f'' for x <= 0
    return at_tail_precision(lambda x: Decimal(alpha) * Decimal(x).exp())


# Tails, the origin and points in between; zeros of the derivative (GELU' at
# -0.75, GELU'' at +-1.41, SiLU' at -1.28, SiLU'' at +-2.40) are left out: there
# only absolute accuracy is possible.
WIDE = [-700.0, -100.0, -40.0, -20.0, -5.0, -0.3, 0.0, 1e-8, 0.7, 3.0, 20.0, 40.0, 100.0, 700.0]
GAUSSIAN = [-37.5, -30.3, -20.7, -10.0, -7.3, -3.1, -1.9, -0.3, 0.0, 1e-8, 0.6, 2.2, 5.5, 10.0, 30.0]
LEFT = [-700.0, -100.0, -40.0, -5.0, -0.3, -1e-10, -0.0, 0.0]

TAIL_CASES = [
    # layer, derivative, reference, points, rtol
    (jn.Sigmoid(), second_derivative, logistic_second_reference, WIDE, 1e-14),
    (jn.Tanh(), second_derivative, tanh_second_reference, POINTS, 1e-14),
    (jn.Softplus(), derivative, logistic_reference, WIDE, 1e-14),
    (jn.Softplus(), second_derivative, logistic_prime_reference, WIDE, 1e-14),
    (jn.SiLU(), derivative, silu_prime_reference, WIDE, 1e-14),
    (jn.SiLU(), second_derivative, silu_second_reference, WIDE, 1e-14),
    (jn.ELU(alpha=0.7), derivative, elu_left_reference(0.7), LEFT, 1e-14),
    (jn.ELU(alpha=0.7), second_derivative, elu_left_reference(0.7), LEFT, 1e-14),
    # exp(-x**2 / 2) of a rounded x**2 is good to about eps * x**2 / 2, 1e-13 at x = -37.5
    (jn.GELU(), derivative, gelu_prime_reference, GAUSSIAN, 1e-12),
    (jn.GELU(), second_derivative, gelu_second_reference, GAUSSIAN, 1e-12),
]


@pytest.mark.parametrize(
    "layer, order, reference, points, rtol",
    TAIL_CASES,
    ids=[f"{layer!r}-{order.__name__}" for layer, order, *_ in TAIL_CASES],
)
def test_new_derivatives_keep_relative_accuracy_in_the_tails(layer, order, reference, points, rtol):
    got = order(layer, points)
    want = np.array([reference(x) for x in points])
    assert np.all(got[want != 0] != 0)  # never rounded to zero when it need not be
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)


def test_quoted_gelu_tail_value():
    assert derivative(jn.GELU(), [-10.0])[0] == pytest.approx(-7.618400096464814e-22, rel=1e-12)
    assert gelu_prime_reference(-10.0) == pytest.approx(-7.618400096464814e-22, rel=1e-15)


def test_elu_value_keeps_relative_accuracy_near_zero():
    x = np.array([-1e-10, -1e-300, -40.0])
    want = [at_tail_precision(lambda v: Decimal(0.7) * (Decimal(v).exp() - 1))(v) for v in x]
    np.testing.assert_allclose(jn.ELU(alpha=0.7).forward(x)[0], want, rtol=1e-15)


def test_gelu_and_silu_values_against_closed_forms(rng):
    x = rng.normal(size=(4, 3)) * 3
    gelu = np.vectorize(lambda v: v * math.erfc(-v / math.sqrt(2)) / 2)(x)  # 1 + erf cancels
    silu = x / (1 + np.exp(-x))
    np.testing.assert_allclose(jn.GELU().forward(x)[0], gelu, rtol=1e-13)
    np.testing.assert_allclose(jn.SiLU().forward(x)[0], silu, rtol=1e-13)


@pytest.mark.parametrize(
    "layer, expected",
    [
        (jn.Identity(), lambda x: x),
        (jn.Softplus(), lambda x: np.log1p(np.exp(x))),
        (jn.LeakyReLU(), lambda x: np.where(x > 0, x, 0.01 * x)),
        (jn.LeakyReLU(alpha=0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
        (jn.ELU(), lambda x: np.where(x > 0, x, np.exp(x) - 1)),
        (jn.ELU(alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1))),
        (jn.Sin(), np.sin),
    ],
    ids=repr,
)
def test_new_activation_values(layer, expected, rng):
    x = rng.normal(size=(4, 3)) * 3
    np.testing.assert_allclose(layer.forward(x)[0], expected(x), rtol=1e-13)


@pytest.mark.parametrize(
    "layer", [jn.LeakyReLU(), jn.LeakyReLU(alpha=0.2), jn.ELU(), jn.ELU(alpha=0.7)], ids=repr
)
def test_derivative_at_the_kink_is_alpha(layer):
    d = derivative(layer, [-0.0, 0.0])
    assert d[0] == layer.alpha and d[1] == layer.alpha


def test_leaky_relu_derivative_of_nan_is_nan():
    layer = jn.LeakyReLU(alpha=0.2)
    x = np.array([np.nan, np.inf, -np.inf, -1.0, 1e-300])
    y, cache = layer.forward(x)
    d = np.diagonal(layer.jacobian(y, cache))
    assert np.isnan(y[0]) and np.isnan(d[0])
    np.testing.assert_array_equal(d[1:], [1.0, 0.2, 0.2, 1.0])
    np.testing.assert_array_equal(y[1:], [np.inf, -np.inf, -0.2, 1e-300])


@pytest.mark.parametrize(
    "layer, f, fprime, fsecond",
    [
        (jn.Softplus(), [0, np.inf], [0, 1], [0, 0]),
        (jn.ELU(alpha=0.7), [-0.7, np.inf], [0, 1], [0, 0]),
        (jn.GELU(), [0, np.inf], [0, 1], [0, 0]),
        (jn.SiLU(), [0, np.inf], [0, 1], [0, 0]),
        (jn.Identity(), [-np.inf, np.inf], [1, 1], [0, 0]),
    ],
    ids=repr,
)
def test_limits_at_infinity_without_warnings(layer, f, fprime, fsecond):
    x = np.array([-np.inf, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            y = layer.f(x)
            got = (y, layer.fprime(x, y), layer.fsecond(x, y))
    for values, want in zip(got, (f, fprime, fsecond)):
        np.testing.assert_array_equal(values, want)


def test_identity_forward_does_not_alias_the_input():
    x = np.array([[1.0, -2.0, 3.0]])
    y, _ = jn.Identity().forward(x)
    assert not np.shares_memory(x, y)
    y[...] = 0
    np.testing.assert_array_equal(x, [[1.0, -2.0, 3.0]])


@pytest.mark.parametrize("cls, default", [(jn.LeakyReLU, 0.01), (jn.ELU, 1.0)])
def test_alpha_is_a_float_and_shows_in_repr(cls, default):
    assert cls().alpha == default and repr(cls()) == f"{cls.__name__}(alpha={default})"
    layer = cls(alpha=np.float32(0.5))
    assert type(layer.alpha) is float and repr(layer) == f"{cls.__name__}(alpha=0.5)"
    assert cls(2).alpha == 2.0 and repr(cls(alpha=-1)) == f"{cls.__name__}(alpha=-1.0)"


@pytest.mark.parametrize("cls", [jn.LeakyReLU, jn.ELU])
@pytest.mark.parametrize(
    "alpha, error, message",
    [
        ("0.1", TypeError, r"alpha must be a real number; got str '0\.1'\."),
        (None, TypeError, r"alpha must be a real number; got NoneType None\."),
        (True, TypeError, r"alpha must be a real number; got bool True\."),
        (1j, TypeError, r"alpha must be a real number; got complex 1j\."),
        (np.array([0.1]), TypeError, r"alpha must be a real number; got ndarray"),
        (float("nan"), ValueError, r"alpha must be finite; got nan\."),
        (-np.inf, ValueError, r"alpha must be finite; got -inf\."),
        # float(10**400) raises OverflowError; the digits are not printed (str() of
        # an int with more than 4300 digits raises)
        (10**400, ValueError, r"alpha must be finite; got int beyond the float range"),
        (-(10**5000), ValueError, r"alpha must be finite; got int beyond the float range"),
        (Fraction(10**400, 3), ValueError, r"alpha must be finite; got Fraction beyond the float range"),
    ],
    ids=["str", "None", "bool", "complex", "array", "nan", "-inf", "10**400", "-10**5000", "Fraction"],
)
def test_alpha_is_validated(cls, alpha, error, message):
    with pytest.raises(error, match=rf"^{cls.__name__} {message}"):
        cls(alpha=alpha)


def test_float32_in_float32_out_for_second_derivatives():
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    for layer in ELEMENTWISE_BUILT_INS:
        y = layer.f(x)
        assert y.dtype == layer.fprime(x, y).dtype == layer.fsecond(x, y).dtype == np.float32, layer


ELEMENTWISE_BUILT_INS = [
    cls()
    for cls in (getattr(jn, name) for name in jn.__all__)
    if inspect.isclass(cls) and issubclass(cls, jn.Elementwise) and not inspect.isabstract(cls)
]


def test_every_elementwise_built_in_implements_fsecond():
    names = {type(layer).__name__ for layer in ELEMENTWISE_BUILT_INS}
    built_in = {"ReLU", "Sigmoid", "Tanh", "Identity", "Softplus", "LeakyReLU", "ELU", "GELU", "SiLU", "Sin"}
    assert names >= built_in
    missing = [repr(layer) for layer in ELEMENTWISE_BUILT_INS if not implements(layer, "fsecond")]
    assert not missing, f"Elementwise layers without fsecond: {missing}"


def test_log_softmax_is_the_log_of_softmax(rng):
    x = rng.normal(size=(5, 4)) * 3
    # log of a softmax near 1 is accurate only to eps absolute
    np.testing.assert_allclose(
        jn.LogSoftmax().forward(x)[0], np.log(jn.Softmax().forward(x)[0]), rtol=1e-14, atol=1e-15
    )


def log_softmax_reference(row):
    with localcontext() as ctx:
        ctx.prec = TAIL_PRECISION
        row = [Decimal(v) for v in row]
        log_total = sum(v.exp() for v in row).ln()
        return [float(v - log_total) for v in row]


def test_log_softmax_keeps_relative_accuracy(rng):
    """Also for the largest output, close to 0 when one input dominates."""
    x = np.concatenate([rng.normal(size=(6, 4)) * 3, [[40.0, 0.0, -1.0, 1.0], [5.0, -3.0, -3.0, -3.0]]])
    want = np.array([log_softmax_reference(row) for row in x])
    y = jn.LogSoftmax().forward(x)[0]
    np.testing.assert_allclose(y, want, rtol=1e-14, atol=0)
    assert -1e-16 < y[6, 0] < 0  # log(sum(exp(x - max))) would round it to 0


def test_log_softmax_is_stable_far_out():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [0.0, 0.0, 0.0]])
    layer = jn.LogSoftmax()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            y, cache = layer.forward(x)
            J = layer.jacobian(y, cache)
    np.testing.assert_array_equal(y[0], [0.0, -2e4, -1e4])  # log softmax would give -inf
    np.testing.assert_allclose(y[1:], -np.log(3.0), rtol=1e-15)
    np.testing.assert_array_equal(J[0], [[0, 0, 0], [-1, 1, 0], [-1, 0, 1]])
    np.testing.assert_allclose(np.exp(y).sum(axis=-1), 1.0, rtol=1e-15)


def test_log_softmax_jacobian_is_identity_minus_softmax_rows(rng):
    x = rng.normal(size=(3, 4))
    layer = jn.LogSoftmax()
    y, cache = layer.forward(x)
    s = jn.Softmax().forward(x)[0]
    J = layer.jacobian(y, cache)
    np.testing.assert_allclose(J, np.eye(4) - s[:, None, :], rtol=1e-14, atol=1e-15)
    dy = rng.normal(size=(3, 2, 4))
    np.testing.assert_allclose(layer.backward(dy, cache), dy @ J, rtol=1e-13)
    np.testing.assert_allclose(layer.tangent(dy, cache), dy @ np.swapaxes(J, -1, -2), rtol=1e-13)


@pytest.mark.parametrize("layer", ELEMENTWISE_BUILT_INS, ids=repr)
def test_derivatives_leave_x_and_y_unchanged(layer, rng):
    x = rng.normal(size=(3, 4)) * 3
    y = layer.f(x)
    x_before, y_before = x.copy(), y.copy()
    for d in (layer.fprime(x, y), layer.fsecond(x, y)):
        assert not np.shares_memory(d, x) and not np.shares_memory(d, y)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)


def _tanh_prime_exp_form(x):
    """The formula Tanh.fprime used before ``1 / cosh(x)**2``: ``4 e / (1 + e)**2``, ``e = exp(-2|x|)``."""
    e = np.exp(-np.abs(x))
    e *= e
    return 4 * e / (1 + e) ** 2


@pytest.mark.parametrize("dtype, ulps", [(np.float64, 8), (np.float32, 10)])
def test_tanh_prime_agrees_with_the_exp_form_and_the_exact_value(dtype, ulps, rng):
    x = np.concatenate(
        [rng.uniform(-1, 1, 20000), rng.uniform(-30, 30, 20000), rng.uniform(-800, 800, 20000),
         np.geomspace(1e-30, 1e4, 5000), -np.geomspace(1e-30, 1e4, 5000)]
    ).astype(dtype)
    got = jn.Tanh().fprime(x, np.tanh(x))
    assert got.dtype == dtype
    old = _tanh_prime_exp_form(x)
    normal = old > np.finfo(dtype).tiny  # below it, ulps are absolute: compare there absolutely
    np.testing.assert_array_less(np.abs(got - old)[normal], ulps * np.spacing(old[normal]))
    np.testing.assert_array_less(np.abs(got - old)[~normal], 2 * np.finfo(dtype).tiny)
    if np.finfo(np.longdouble).eps < np.finfo(np.float64).eps:  # x86: 64-bit mantissa, a reference
        exact = (1 / np.cosh(x.astype(np.longdouble))) ** 2  # |x| <= 1e4: finite in long double
        error = np.abs(got.astype(np.longdouble) - exact)[normal] / np.spacing(old[normal])
        assert error.max() <= (6 if dtype == np.float64 else 8)  # 4.6 and 7.2 on NumPy 2.4; 5.1 on NumPy 1.24
