"""numerical_jacobian, check_layer and check_network, including that they catch bugs."""

import re

import numpy as np
import pytest
from cases import CASE_IDS, LAYER_CASES

import jacobian_np as jn
from jacobian_np import checks

# --- numerical_jacobian -------------------------------------------------------------


def f_closed_form(x):
    return np.array([x[0] ** 2 * x[1], np.sin(x[1]) * x[2], np.exp(x[0])])


def J_closed_form(x):
    return np.array(
        [
            [2 * x[0] * x[1], x[0] ** 2, 0.0],
            [0.0, np.cos(x[1]) * x[2], np.sin(x[1])],
            [np.exp(x[0]), 0.0, 0.0],
        ]
    )


def test_numerical_jacobian_of_a_closed_form():
    x = np.array([0.7, -1.3, 2.1])
    np.testing.assert_allclose(jn.numerical_jacobian(f_closed_form, x), J_closed_form(x), rtol=1e-9, atol=1e-12)


def test_numerical_jacobian_agrees_with_scipy_differentiate():
    differentiate = pytest.importorskip("scipy.differentiate", reason="needs SciPy >= 1.15")
    x = np.array([0.7, -1.3, 2.1])
    reference = differentiate.jacobian(f_closed_form, x).df
    np.testing.assert_allclose(jn.numerical_jacobian(f_closed_form, x), reference, rtol=1e-9, atol=1e-12)


def test_numerical_jacobian_shape_is_output_shape_then_input_shape(rng):
    x = rng.normal(size=(2, 3))
    J = jn.numerical_jacobian(lambda z: np.array([z.sum(), (z**2).sum(), 0.0, z[1, 2]]), x)
    assert J.shape == (4, 2, 3)
    np.testing.assert_allclose(J[1], 2 * x, rtol=1e-9)
    np.testing.assert_allclose(J[3], np.eye(6)[5].reshape(2, 3), atol=1e-12)


def test_numerical_jacobian_full_form_has_zero_cross_sample_blocks(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), jn.Tanh()])
    X = rng.normal(size=(4, 2))
    full = jn.numerical_jacobian(net.forward, X)
    assert full.shape == (4, 3, 4, 2)
    _, J = net.forward_backward(X)
    for i in range(4):
        for k in range(4):
            np.testing.assert_allclose(full[i, :, k, :], J[i] if i == k else 0.0, atol=1e-9)


def test_numerical_jacobian_perturbs_copies_only(rng):
    x = rng.normal(size=3)
    x_before = x.copy()

    def vandal(z):  # writes into what it is given
        value = z**2
        z[...] = 1e6
        return value

    J = jn.numerical_jacobian(vandal, x)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_allclose(J, np.diag(2 * x), rtol=1e-9)


def test_numerical_jacobian_divides_by_the_step_actually_taken():
    # In float32, 3 +- 3e-4 rounds: the taken step differs from 2h by ~1e-4 relative.
    # f(z) = 2z is exact, so only dividing by the taken step gives exactly 2.
    J = jn.numerical_jacobian(lambda z: 2 * z, np.array([3.0], dtype=np.float32), eps=1e-4)
    assert J[0, 0] == 2.0


@pytest.mark.parametrize("dtype, expected", [(np.float64, 6.06e-6), (np.float32, 4.92e-3)])
def test_default_step_follows_the_dtype(dtype, expected):
    seen = []

    def f(z):
        seen.append(z.copy())
        return np.sin(z)

    x = np.array([0.5, 2.0], dtype=dtype)
    J = jn.numerical_jacobian(f, x)
    step = max(float(np.max(np.abs(z - x))) for z in seen)
    assert step == pytest.approx(expected * 2.0, rel=1e-2)  # max(1, |x|) = 2 for x = 2
    np.testing.assert_allclose(np.diagonal(J), np.cos(x.astype(float)), rtol=10 * expected**2)


def test_integer_input_is_differentiated_in_float64():
    J = jn.numerical_jacobian(lambda z: z**2, np.array([1, 2]))
    assert J.dtype == np.float64
    np.testing.assert_allclose(J, np.diag([2.0, 4.0]), rtol=1e-9)


@pytest.mark.parametrize(
    "eps, error, match",
    [
        (0, ValueError, "eps must be positive; got 0.0"),
        (-1e-3, ValueError, "eps must be positive; got -0.001"),
        (np.nan, ValueError, "eps must be finite; got nan"),
        (np.inf, ValueError, "eps must be finite; got inf"),
        (10**400, ValueError, "eps must be finite; got int beyond the float range"),
        (True, TypeError, "eps must be a real number; got bool True"),  # used to be a step of 1
        ("1e-3", TypeError, "eps must be a real number; got str '1e-3'"),
        (np.array([1e-3]), TypeError, "eps must be a real number; got ndarray"),
    ],
)
@pytest.mark.parametrize("check", ["numerical_jacobian", "check_layer", "check_network", "check_param_grads"])
def test_bad_eps(check, eps, error, match):
    net = jn.Network([jn.Affine(np.ones((1, 2))), jn.Tanh()])
    call = {
        "numerical_jacobian": lambda: jn.numerical_jacobian(np.sin, [1.0], eps=eps),
        "check_layer": lambda: jn.check_layer(jn.Tanh(), [1.0], eps=eps),
        "check_network": lambda: jn.check_network(net, [1.0], eps=eps),
        "check_param_grads": lambda: jn.check_param_grads(net, [1.0], eps=eps),
    }[check]
    with pytest.raises(error, match=match):
        call()


def test_eps_is_used_as_given():
    seen = []
    jn.numerical_jacobian(lambda z: seen.append(z.copy()) or z, np.array([0.5, 4.0]), eps=np.float32(1e-3))
    np.testing.assert_allclose(seen[0] - [0.5, 4.0], [1e-3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(seen[-1] - [0.5, 4.0], [0.0, -4e-3], rtol=1e-6)  # h = eps * max(1, |x|)


# --- check_layer catches bugs -------------------------------------------------------


class OffByOnePercentTanh(jn.Tanh):
    def fprime(self, x, y):
        return 1.01 * super().fprime(x, y)


class TransposedAffine(jn.Affine):
    def backward(self, dy, cache):
        return dy @ self.W  # should be W.T


class BatchDroppingSquare(jn.Layer):
    def forward(self, x):
        return x**2, x

    def backward(self, dy, cache):
        return dy[0] * 2 * cache[0]  # forgets the batch axes


class InPlaceSquare(jn.Layer):
    def forward(self, x):
        x *= 1.0  # writes into the caller's input
        return x**2, x

    def backward(self, dy, cache):
        dy *= 2 * cache[..., None, :]  # writes into the upstream Jacobian
        return dy


@pytest.mark.parametrize("batch", [(), (5,)])
def test_check_layer_catches_a_derivative_off_by_one_percent(batch, rng):
    result = jn.check_layer(OffByOnePercentTanh(), rng.uniform(-2, 2, batch + (4,)))
    assert not result
    assert {c.name for c in result.failures} == {
        "backward(identity)",
        "jacobian",
        "backward(random dy)",
        "tangent(identity)",  # forward mode of an Elementwise layer uses fprime too
        "tangent(random dx)",
    }
    assert 0.009 < result.max_rel_error < 0.011
    report = str(result)
    assert "derivative check of OffByOnePercentTanh(): FAILED" in report
    assert "worst at (" in report and "> tolerance" in report


def test_check_layer_catches_a_transposed_jacobian(rng):
    W = rng.normal(size=(4, 4))
    result = jn.check_layer(TransposedAffine(W), rng.normal(size=(3, 4)))
    assert not result
    assert "backward(identity)" in {c.name for c in result.failures}


def test_check_layer_catches_a_transposed_non_square_jacobian_by_its_shape(rng):
    class TransposedJacobianAffine(jn.Affine):
        def jacobian(self, y, cache):
            return np.broadcast_to(self.W, y.shape[:-1] + self.W.shape)  # should be W.T

    result = jn.check_layer(TransposedJacobianAffine(rng.normal(size=(3, 5))), rng.normal(size=(2, 3)))
    assert [c.name for c in result.failures] == ["jacobian"]
    assert "jacobian: FAILED: shape (2, 3, 5), expected (2, 5, 3)" in str(result)
    assert result.max_abs_error == np.inf


def test_check_layer_catches_a_wrong_shape(rng):
    result = jn.check_layer(BatchDroppingSquare(), rng.normal(size=(3, 4)))
    assert not result
    assert "backward(identity): FAILED: shape (4, 4), expected (3, 4, 4)" in str(result)


def test_check_layer_catches_writes_into_inputs(rng):
    result = jn.check_layer(InPlaceSquare(), rng.normal(size=(2, 3)))
    assert {c.name for c in result.failures} >= {"backward left dy unchanged"}


def test_check_layer_reports_errors_of_a_correct_layer(rng):
    result = jn.check_layer(jn.Sigmoid(), rng.normal(size=(3, 4)))
    assert result and not result.failures
    assert 0 < result.max_abs_error < 1e-9
    assert 0 < result.max_rel_error < 1e-7
    assert "passed" in str(result)


def test_tolerances_are_used(rng):
    x = rng.normal(size=(2, 3))
    assert jn.check_layer(jn.Tanh(), x)
    assert not jn.check_layer(jn.Tanh(), x, atol=0.0, rtol=0.0)  # finite differences are not exact
    assert jn.check_layer(OffByOnePercentTanh(), x, atol=0.1, rtol=0.1)


def test_check_layer_is_in_float64_by_default(rng):
    x = rng.normal(size=(2, 3)).astype(np.float32)
    result = jn.check_layer(jn.Tanh(), x)
    assert result.comparisons[0].analytic.dtype == np.float64


def test_check_layer_errors():
    with pytest.raises(TypeError, match="check_layer expects a jacobian_np.Layer; got function"):
        jn.check_layer(lambda x: x, np.ones(2))
    with pytest.raises(ValueError, match=r"check_layer expects x of shape \(\*batch, d_in\); got a scalar"):
        jn.check_layer(jn.Tanh(), 1.0)
    with pytest.raises(TypeError, match="x must be real; got complex"):
        jn.check_layer(jn.Tanh(), np.ones(2, complex))
    with pytest.raises(ValueError, match="atol and rtol must be non-negative; got atol=-1.0, rtol=0.0"):
        jn.check_layer(jn.Tanh(), np.ones(2), atol=-1.0, rtol=0.0)


# --- check_network ------------------------------------------------------------------


def test_check_network_catches_a_buggy_layer_inside(rng):
    good = jn.Network([jn.Affine(rng.normal(size=(3, 4))), jn.Tanh(), jn.Affine(rng.normal(size=(4, 2)))])
    bad = jn.Network([good.layers[0], OffByOnePercentTanh(), good.layers[2]])
    X = rng.normal(size=(5, 3))
    assert jn.check_network(good, X)
    result = jn.check_network(bad, X)
    assert not result
    assert [c.name for c in result.failures] == ["J (reverse mode)", "J (forward mode)"]


def test_check_network_checks_reverse_mode_only_when_a_layer_lacks_tangent(rng):
    class Double(jn.Layer):  # backward only
        def forward(self, x):
            return 2 * x, None

        def backward(self, dy, cache):
            return 2 * dy

    net = jn.Network([jn.Affine(rng.normal(size=(3, 4))), jn.Tanh(), Double()])
    result = jn.check_network(net, rng.normal(size=(5, 3)))
    assert result
    assert [c.name for c in result.comparisons] == ["J (reverse mode)", "y"]


def test_check_network_one_point_and_empty_batch(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(3, 2))), jn.Softmax()])
    assert jn.check_network(net, rng.normal(size=3))
    result = jn.check_network(net, np.zeros((0, 3)))
    assert result and result.max_abs_error == 0.0


def test_check_network_errors(rng):
    net = jn.Network([jn.Affine(np.ones((3, 2)))])
    with pytest.raises(TypeError, match="check_network expects a jacobian_np.Network; got Affine"):
        jn.check_network(net.layers[0], np.ones(3))
    with pytest.raises(ValueError, match=r"check_network expects x with last axis 3; got shape \(2,\)"):
        jn.check_network(net, np.ones(2))


# --- one rule, with tolerances scaled to the dtype -----------------------------------


def float32_layer(layer):
    if isinstance(layer, jn.Affine):  # the weights decide the dtype by promotion
        return jn.Affine(layer.W.astype(np.float32), None if layer.b is None else layer.b.astype(np.float32))
    return layer


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_float32_check_passes_for_correct_layers(case, rng):
    """float32 finite differences are accurate to ~1e-5..1e-4: a tolerance of 1e-6 failed them."""
    layer = float32_layer(case.make(rng))
    result = jn.check_layer(layer, case.sample(rng, (4,)), dtype=np.float32, rng=rng, second_order=True)
    assert result, str(result)
    if all(p.dtype == np.float32 for p in layer.params):  # float64 parameters promote
        assert result.comparisons[0].analytic.dtype == np.float32


def test_float32_check_passes_for_correct_networks(rng):
    for activation in (jn.Tanh(), jn.Sigmoid(), jn.GELU(), jn.Softplus()):
        net = jn.Network(
            [
                jn.Affine(rng.normal(size=(6, 32)).astype(np.float32) / 2, rng.normal(size=32).astype(np.float32)),
                activation,
                jn.Affine(rng.normal(size=(32, 3)).astype(np.float32) / 6),
                jn.Softmax(),
            ]
        )
        result = jn.check_network(net, rng.normal(size=(8, 6)), dtype=np.float32)
        assert result, str(result)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_one_percent_error_fails_in_both_dtypes(dtype, rng):
    x = rng.uniform(-2, 2, (5, 4))
    assert jn.check_layer(jn.Tanh(), x, dtype=dtype)
    result = jn.check_layer(OffByOnePercentTanh(), x, dtype=dtype)
    assert not result and "inconclusive" not in str(result)
    good = jn.Network([jn.Affine(rng.normal(size=(3, 4))), jn.Tanh(), jn.Affine(rng.normal(size=(4, 2)))])
    bad = jn.Network([good.layers[0], OffByOnePercentTanh(), good.layers[2]])
    X = rng.normal(size=(5, 3))
    assert jn.check_network(good, X, dtype=dtype)
    result = jn.check_network(bad, X, dtype=dtype)
    assert [c.name for c in result.failures] == ["J (reverse mode)", "J (forward mode)"]


def test_default_tolerances_follow_the_dtype(rng):
    x = rng.normal(size=(3, 4))
    for dtype, rtol in ((np.float64, 1e-6), (np.float32, 1e-3)):
        first = jn.check_layer(jn.Tanh(), x, dtype=dtype).comparisons[0]
        assert first.rtol == rtol
        largest = np.max(np.abs(first.reference))
        # atol: rtol times the largest entry, plus the (here small) rounding of the differences
        assert rtol * largest < first.atol < 1.2 * rtol * largest
        np.testing.assert_array_equal(first.tolerance, first.atol + first.rtol * np.abs(first.reference))
    given = jn.check_layer(jn.Tanh(), x, atol=1e-3, rtol=0.0).comparisons[0]
    assert given.atol == 1e-3 and given.rtol == 0.0
    np.testing.assert_array_equal(given.tolerance, 1e-3)


def test_the_verdict_does_not_depend_on_the_units(rng):
    """Outputs in large units (an unscaled regression target) scale J and the rounding alike."""
    net = jn.Network([jn.Affine(rng.normal(size=(3, 8))), jn.Tanh(), jn.Affine(rng.normal(size=(8, 2)))])
    X = rng.normal(size=(4, 3))
    for scale in (1e-6, 1.0, 1e6):
        scaled = jn.Network([net.layers[0], net.layers[1], jn.Affine(scale * net.layers[2].W)])
        result = jn.check_network(scaled, X)
        assert result and result.max_rel_error < 1e-8, str(result)
        wrong = jn.Network([net.layers[0], OffByOnePercentTanh(), scaled.layers[2]])
        assert not jn.check_network(wrong, X)


def raw_units_pipeline(rng):
    """A scaler that expects inputs in raw units (means 50 to 5e4) before a tanh layer,
    and outputs in large units: a scikit-learn pipeline as imported."""
    mean, std = np.array([1500.0, 400.0, 5e4, 50.0]), np.array([30.0, 10.0, 2e3, 2.0])
    scaler = jn.Affine(np.diag(1 / std), -mean / std)
    net = jn.Network([scaler, jn.Affine(rng.normal(size=(4, 6))), jn.Tanh(), jn.Affine(1e5 * rng.normal(size=(6, 1)), [2e5])])
    return net, mean, std


def test_saturated_network_is_inconclusive_not_a_pass_with_infinite_error(rng):
    """N(0, 1) inputs into a pipeline in raw units saturate every tanh: the finite
    differences are all rounding.  This used to print 'max rel error inf' (and
    max_rel_error 1.8e308) and pass."""
    net, mean, std = raw_units_pipeline(rng)
    result = jn.check_network(net, rng.normal(size=(3, 4)))
    report = str(result)
    assert not re.search(r"\binf\b|e\+30\d", report), report
    assert np.isfinite(result.max_rel_error) and result.max_rel_error < 1
    assert not result
    assert [c.name for c in result.failures] == ["J (reverse mode)", "J (forward mode)"]
    assert "inconclusive: the finite differences are accurate only to about" in report
    assert "pass atol to accept this resolution" in report
    # at inputs in the model's units the same network checks out
    result = jn.check_network(net, mean + std * rng.normal(size=(3, 4)))
    assert result and result.max_rel_error < 1e-6, str(result)
    # and an explicit atol is a decision the caller takes
    assert jn.check_network(net, rng.normal(size=(3, 4)), atol=1e-3)


def test_entries_that_are_zero_up_to_rounding(rng):
    """tanh'(20) = 1.7e-17, while tanh(20 +- h) round to the same float: the
    difference is exactly 0, and the analytic value agrees up to rounding."""
    assert jn.check_layer(jn.Tanh(), np.array([[20.0, 0.3], [-0.5, 25.0]]))
    result = jn.check_layer(jn.Tanh(), np.array([[20.0, 30.0]]))  # saturated throughout
    assert result, str(result)
    assert 0 < result.max_rel_error < 1e-5  # relative to atol where the reference is all zero
    assert not jn.check_layer(jn.Tanh(), np.array([[20.0, 30.0]]), atol=0.0)
    dead = jn.Network([jn.Affine(np.ones((2, 3)), -10 * np.ones(3)), jn.ReLU()])
    assert jn.check_network(dead, rng.uniform(0, 1, (4, 2)))  # exactly zero on both sides


def test_rel_error_is_relative_to_the_largest_entry():
    comparison = checks._Rule(None, 1e-6).compare("J", np.array([1.0, 1e-300]), np.array([1.0, 0.0]))
    np.testing.assert_array_equal(comparison.rel_error, [0.0, 1e-300])
    assert comparison.ok
    legacy = jn.Comparison("J", np.array([2.0]), np.array([0.0]), np.array([1.0]))  # atol defaults to 0
    assert legacy.rel_error[0] == np.inf and not legacy.ok


def test_a_reference_that_is_not_finite_is_a_problem():
    class Wall(jn.Elementwise):  # finite below 1, infinite from 1 on
        def f(self, x):
            return np.where(x < 1.0, x**2, np.inf)

        def fprime(self, x, y):
            return 2 * x

    result = jn.check_layer(Wall(), np.array([[0.5, 1.0 - 1e-7]]))
    assert not result
    assert "backward(identity): FAILED: the reference is inf at (0, 1, 1)" in str(result)
    assert jn.check_layer(Wall(), np.array([[0.5, 0.9]]))


# --- fprimes, the derivatives that second-order passes and training use ---------------


class OffByOnePercentFprimes(jn.Tanh):
    def fprimes(self, x, y):
        first, second = super().fprimes(x, y)
        return 1.01 * first, second


class OffByOnePercentFsecondInFprimes(jn.Tanh):
    def fprimes(self, x, y):
        first, second = super().fprimes(x, y)
        return first, 1.01 * second


def test_second_order_check_covers_fprimes(rng):
    x = rng.uniform(-2, 2, (5, 4))
    correct = jn.check_layer(jn.Tanh(), x, second_order=True)
    assert correct and {"fprimes (f')", "fprimes (f'')"} <= {c.name for c in correct.comparisons}
    assert jn.check_layer(OffByOnePercentFprimes(), x)  # first order never calls fprimes
    result = jn.check_layer(OffByOnePercentFprimes(), x, second_order=True)
    assert {c.name for c in result.failures} == {"fprimes (f')", "fprimes (f'')"}  # f'' against FD of this f'
    result = jn.check_layer(OffByOnePercentFsecondInFprimes(), x, second_order=True)
    assert [c.name for c in result.failures] == ["fprimes (f'')"]
    for dtype in (np.float64, np.float32):
        assert not jn.check_layer(OffByOnePercentFsecondInFprimes(), x, second_order=True, dtype=dtype)


def test_tolerance_errors():
    with pytest.raises(TypeError, match="atol must be a real number or None; got str"):
        jn.check_layer(jn.Tanh(), np.ones(2), atol="1e-6")
    with pytest.raises(TypeError, match="rtol must be a real number or None; got bool"):
        jn.check_network(jn.Network([jn.Tanh()]), np.ones(2), rtol=True)
