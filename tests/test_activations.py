"""Activation values and derivatives, including far out in the tails.

References are computed with Python's ``decimal`` module at 50 digits from the
textbook definitions, independently of the library's formulas.
"""

from decimal import Decimal, getcontext

import numpy as np
import pytest

import jacobian_np as jn

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
