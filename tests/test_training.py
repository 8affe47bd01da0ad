"""Training through the Jacobian: parameters, their gradients against central
differences, the Jacobian losses, the scipy.optimize adapter, and the three
worked examples of issue 5."""

import numpy as np
import pytest
from cases import CASE_IDS, LAYER_CASES
from scipy.optimize import least_squares, minimize

import jacobian_np as jn
from jacobian_np import losses
from jacobian_np.optimize import TargetProblem


@pytest.fixture
def net(rng):
    return jn.Network(
        [
            jn.Affine(rng.normal(size=(2, 5)), rng.normal(size=5)),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(5, 5))),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(5, 2)), rng.normal(size=2)),
        ]
    )


@pytest.fixture
def budget():
    previous = jn.get_memory_budget()
    yield
    jn.set_memory_budget(previous)


# --- parameters ---------------------------------------------------------------------


def test_params_are_the_live_arrays_in_layer_order(net):
    a, _, b, _, c = net.layers
    assert [p is q for p, q in zip(net.params, [a.W, a.b, b.W, c.W, c.b])] == [True] * 5
    assert jn.Network([jn.Tanh()]).params == []


def test_flat_params_round_trip_and_are_copies(net, rng):
    theta = net.get_flat_params()
    assert theta.shape == (2 * 5 + 5 + 25 + 10 + 2,)
    theta[0] = 99.0
    assert net.layers[0].W[0, 0] != 99.0  # a copy
    new = rng.normal(size=theta.shape)
    net.set_flat_params(new)
    np.testing.assert_array_equal(net.get_flat_params(), new)
    np.testing.assert_array_equal(net.layers[2].W.ravel(), new[15:40])


def test_set_flat_params_keeps_float32(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3)).astype(np.float32))])
    net.set_flat_params(np.arange(6.0))
    assert net.layers[0].W.dtype == np.float32
    np.testing.assert_array_equal(net.layers[0].W, np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize(
    "theta, error, match",
    [
        (np.zeros(3), ValueError, r"theta of shape \(52,\), one value per parameter; got shape \(3,\)"),
        (np.zeros((52, 1)), ValueError, r"got shape \(52, 1\)"),
        (np.full(52, np.nan), ValueError, "finite parameters; theta contains NaN"),
        (np.array(["a"] * 52), TypeError, "theta must be a real numeric array"),
    ],
)
def test_set_flat_params_errors(net, theta, error, match):
    before = net.get_flat_params()
    with pytest.raises(error, match=match):
        net.set_flat_params(theta)
    np.testing.assert_array_equal(net.get_flat_params(), before)  # unchanged


# --- gradients against central differences ------------------------------------------


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_param_gradients_through_every_layer(case, rng):
    """Each layer between two affine layers (whose parameters are checked)."""
    layer = case.make(rng)
    d = case.sample(rng, ()).shape[-1]
    d_out = layer.forward_with_cache(case.sample(rng, ()))[0].shape[-1]
    before = jn.Affine(rng.normal(size=(3, d)) * 0.5, rng.normal(size=d) * 0.1)
    net = jn.Network([before, layer, jn.Affine(rng.normal(size=(d_out, 2)), rng.normal(size=2))])
    x = rng.normal(size=(5, 3))
    if layer.piecewise_linear and not layer.constant_jacobian:  # keep pre-activations off the kinks
        x = x[np.all(np.abs(before.forward_with_cache(x)[0]) > 0.05, axis=1)]
    result = jn.check_param_grads(net, x, rng=rng)
    assert result, str(result)


@pytest.mark.parametrize("head", [jn.Softmax, jn.LogSoftmax, jn.Sigmoid])
def test_param_gradients_through_heads_of_deep_networks(head, net, rng):
    deep = jn.Network(list(net.layers) + [head()])
    assert jn.check_param_grads(deep, rng.normal(size=(4, 2)), rng=rng)
    assert jn.check_param_grads(deep, rng.normal(size=2), rng=rng)  # one point


def test_jacobian_and_pullback_equal_the_separate_calls(net, rng):
    X, G = rng.normal(size=(6, 2)), rng.normal(size=(6, 2, 2))
    J, pullback = net.jacobian_and_pullback(X)
    np.testing.assert_allclose(J, net.jacobian(X), rtol=1e-13, atol=1e-15)
    assert J.flags.c_contiguous and J.flags.writeable
    for a, b in zip(pullback(G), net.jacobian_param_grad(X, G)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match=r"pullback expects grad_J of shape \(6, 2, 2\); got shape \(2, 2\)"):
        pullback(G[0])
    J1, pullback1 = net.jacobian_and_pullback(X[0])  # one point
    assert J1.shape == (2, 2) and [g.shape for g in pullback1(G[0])] == [p.shape for p in net.params]


def test_jacobian_param_grad_is_chunked_exactly(net, rng, budget):
    X, G = rng.normal(size=(9, 2)), rng.normal(size=(9, 2, 2))
    whole = net.jacobian_param_grad(X, G)
    jn.set_memory_budget(1)  # one sample per chunk
    for a, b in zip(net.jacobian_param_grad(X, G), whole):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


class WrongSecondDerivative(jn.Tanh):
    def fsecond(self, x, y):
        return 1.01 * super().fsecond(x, y)


class WrongDerivative(jn.Tanh):
    def fprime(self, x, y):
        return 1.01 * super().fprime(x, y)


def test_check_param_grads_catches_wrong_derivatives(rng):
    def build(activation):
        return jn.Network([jn.Affine(rng.normal(size=(2, 4))), activation, jn.Affine(rng.normal(size=(4, 2)))])

    x = rng.normal(size=(4, 2))
    result = jn.check_param_grads(build(WrongSecondDerivative()), x)
    assert [c.name for c in result.failures] == ["jacobian_param_grad"]  # f'' only enters through J
    # a wrong f' makes J wrong, which check_network reports; the gradient of that J
    # with respect to the parameters is still consistent with it
    result = jn.check_param_grads(build(WrongDerivative()), x)
    assert [c.name for c in result.failures] == ["param_grad"]
    assert not jn.check_network(build(WrongDerivative()), x)


def test_check_param_grads_restores_the_parameters(net, rng):
    before = net.get_flat_params()
    jn.check_param_grads(net, rng.normal(size=(3, 2)))
    np.testing.assert_array_equal(net.get_flat_params(), before)


class Scale(jn.Layer):
    """A user layer with a parameter but no gradients."""

    def __init__(self):
        self.c = np.array([2.0])

    @property
    def params(self):
        return [self.c]

    def forward(self, x):
        return self.c * x, None

    def backward(self, dy, cache):
        return self.c * dy


def test_layers_lacking_gradients_are_named(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), Scale()])
    with pytest.raises(NotImplementedError, match=r"Network.param_grad needs Layer.param_grad: layer 1 \(Scale\) lacks param_grad"):
        net.param_grad(np.ones(2), np.ones(3))
    with pytest.raises(
        NotImplementedError,
        match=r"layer 1 \(Scale\) lacks param_grad, tangent, tangent_param_grad, tangent_grad",
    ):
        net.jacobian_param_grad(np.ones(2), np.ones((3, 2)))


def test_gradient_shape_errors(net):
    with pytest.raises(ValueError, match=r"Network.param_grad expects grad_y of shape \(4, 2\); got shape \(2,\)"):
        net.param_grad(np.ones((4, 2)), np.ones(2))
    with pytest.raises(ValueError, match=r"expects grad_J of shape \(4, 2, 2\); got shape \(4, 2\)"):
        net.jacobian_param_grad(np.ones((4, 2)), np.ones((4, 2)))


# --- losses -------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [losses.det, losses.log_abs_det, losses.frobenius_squared])
@pytest.mark.parametrize("d", [1, 2, 3, 4, 6])  # det: closed forms up to 3, SVD above
def test_losses_match_central_differences(loss, d, rng):
    J = rng.normal(size=(4, d, d)) + 2 * np.eye(d)
    value, grad = loss(J)
    assert value.shape == (4,) and grad.shape == J.shape
    for i in range(4):
        numerical = jn.numerical_jacobian(lambda A: loss(A)[0], J[i])
        np.testing.assert_allclose(grad[i], numerical, rtol=1e-7, atol=1e-9)


def test_det_value_and_sign_and_singular_gradient(rng):
    J = rng.normal(size=(6, 3, 3))
    np.testing.assert_allclose(losses.det(J)[0], np.linalg.det(J), rtol=1e-12)
    for singular in (
        np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 1.0]]),
        np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0], [0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 2.0, 1.0]]),
    ):
        value, grad = losses.det(singular)
        assert abs(value) < 1e-12
        np.testing.assert_allclose(grad, jn.numerical_jacobian(lambda A: losses.det(A)[0], singular), atol=1e-8)
    J = rng.normal(size=(6, 5, 5))
    np.testing.assert_allclose(losses.det(J)[0], np.linalg.det(J), rtol=1e-12)


@pytest.mark.parametrize("d", [2, 3, 4, 6])  # closed forms up to 3, SVD above
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_det_isolates_non_finite_samples(d, bad, rng):
    """One sample with NaN (a diverged network) must not spoil the others, raise,
    warn or hang (LAPACK's SVD does not return for infinity)."""
    J = rng.normal(size=(5, d, d))
    J[2, d - 1, 0] = bad
    J_before = J.copy()
    value, grad = losses.det(J)
    np.testing.assert_array_equal(J, J_before)
    good = [0, 1, 3, 4]
    expected_value, expected_grad = losses.det(J[good])
    np.testing.assert_array_equal(value[good], expected_value)
    np.testing.assert_array_equal(grad[good], expected_grad)
    np.testing.assert_allclose(value[good], np.linalg.det(J[good]), rtol=1e-12)
    assert np.isnan(value[2]) and np.all(np.isnan(grad[2]))
    one_value, one_grad = losses.det(J[2])  # one matrix, not a batch
    assert one_value.shape == () and one_grad.shape == (d, d) and np.isnan(one_value)


def test_log_abs_det_is_sign_safe_and_rejects_singular():
    value, _ = losses.log_abs_det(np.array([[[-2.0, 0.0], [0.0, 3.0]]]))
    np.testing.assert_allclose(value, [np.log(6.0)])
    with pytest.raises(ValueError, match=r"J is singular at sample\(s\) \[1\]"):
        losses.log_abs_det(np.array([np.eye(2), np.zeros((2, 2))]))


def test_loss_shape_errors():
    with pytest.raises(ValueError, match=r"det expects square Jacobians.*got shape \(4, 2, 3\)"):
        losses.det(np.ones((4, 2, 3)))
    with pytest.raises(ValueError, match=r"frobenius_squared expects J of shape .*got shape \(3,\)"):
        losses.frobenius_squared(np.ones(3))


# --- scipy.optimize adapter ---------------------------------------------------------


def test_target_problem_evaluates_once_per_point(net):
    problem = TargetProblem(net, np.zeros(2))
    x = np.array([0.1, 0.2])
    r, J = problem.fun(x), problem.jac(x)
    assert problem.evaluations == 1
    y, J_ref = net.forward_backward(x)
    np.testing.assert_array_equal(r, y)
    np.testing.assert_array_equal(J, J_ref)
    f, g = problem.fun_and_jac(x)
    assert problem.evaluations == 1
    assert f == pytest.approx(0.5 * y @ y) and np.allclose(g, y @ J_ref)
    problem.fun(x + 1)
    assert problem.evaluations == 2


def test_target_problem_sees_new_parameters_and_target(net):
    """The cache is keyed on x and the parameters: set_flat_params must not leave
    fun(x0) returning the old residual."""
    problem = TargetProblem(net, np.zeros(2))
    x0 = np.array([0.1, 0.2])
    r_old, J_old = problem.fun(x0), problem.jac(x0)
    net.set_flat_params(1.5 * net.get_flat_params())
    y, J = net.forward_backward(x0)
    assert not np.allclose(y, r_old)
    np.testing.assert_array_equal(problem.fun(x0), y)
    np.testing.assert_array_equal(problem.jac(x0), J)
    assert problem.evaluations == 2
    net.params[0][0, 0] += 1.0  # an in-place update of one weight
    y, J = net.forward_backward(x0)
    np.testing.assert_array_equal(problem.fun_and_jac(x0)[1], y @ J)
    assert problem.evaluations == 3
    problem.target[...] = 1.0  # the residual follows the target without an evaluation
    np.testing.assert_array_equal(problem.fun(x0), y - 1.0)
    assert problem.evaluations == 3
    assert not np.array_equal(J_old, J)


def test_target_problem_errors(net):
    with pytest.raises(ValueError, match=r"TargetProblem expects target of shape \(2,\); got shape \(3,\)"):
        TargetProblem(net, np.zeros(3))
    with pytest.raises(TypeError, match="TargetProblem expects a jacobian_np.Network; got list"):
        TargetProblem([], np.zeros(2))
    with pytest.raises(ValueError, match=r"one point x of shape \(2,\); got shape \(3, 2\)"):
        TargetProblem(net, np.zeros(2)).fun(np.zeros((3, 2)))


# --- the worked examples ------------------------------------------------------------


def test_example_train_a_tanh_map_to_unit_jacobian_determinant(rng):
    """(a) 2 -> 5 -> 5 -> 2 tanh, det J(x) = 1 at 256 points, with L-BFGS-B."""
    net = jn.Network(
        [
            jn.Affine(rng.normal(size=(2, 5)) * 0.5, np.zeros(5)),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(5, 5)) * 0.5, np.zeros(5)),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(5, 2)) * 0.5, np.zeros(2)),
        ]
    )
    X = rng.uniform(-1, 1, size=(256, 2))

    def objective(theta):
        net.set_flat_params(theta)
        J, pullback = net.jacobian_and_pullback(X)
        d, d_grad = losses.det(J)
        grads = pullback((2 * (d - 1) / len(d))[:, None, None] * d_grad)
        return np.mean((d - 1) ** 2), np.concatenate([g.ravel() for g in grads])

    theta0 = net.get_flat_params()
    start = objective(theta0)[0]
    result = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    assert result.fun < start / 100
    net.set_flat_params(result.x)
    X_new = rng.uniform(-1, 1, size=(100, 2))
    assert np.median(np.abs(losses.det(net.jacobian(X_new))[0] - 1)) < 0.05  # also between the points


def test_example_fit_values_and_derivatives_together(rng):
    """(b) y = sin(x0) x1 from its values and its input gradient."""
    net = jn.Network(
        [
            jn.Affine(rng.normal(size=(2, 16)), np.zeros(16)),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(16, 16)) / 4, np.zeros(16)),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(16, 1)) / 4, np.zeros(1)),
        ]
    )

    def target(X):
        y = np.sin(X[:, :1]) * X[:, 1:]
        grad = np.stack([np.cos(X[:, 0]) * X[:, 1], np.sin(X[:, 0])], axis=-1)[:, None, :]
        return y, grad

    X = rng.uniform(-2, 2, size=(200, 2))
    T, dT = target(X)

    def objective(theta):
        net.set_flat_params(theta)
        y, J = net.forward_backward(X)
        r, R = y - T, J - dT
        grads = net.param_grad(X, 2 * r / len(X))
        grads_J = net.jacobian_param_grad(X, 2 * R / len(X))
        value = np.mean(r**2) + np.mean(np.sum(R**2, axis=(1, 2)))
        return value, np.concatenate([(a + b).ravel() for a, b in zip(grads, grads_J)])

    result = minimize(objective, net.get_flat_params(), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    net.set_flat_params(result.x)
    X_test = rng.uniform(-2, 2, size=(300, 2))
    T_test, dT_test = target(X_test)
    y, J = net.forward_backward(X_test)
    assert np.sqrt(np.mean((y - T_test) ** 2)) < 0.02
    assert np.sqrt(np.mean((J - dT_test) ** 2)) < 0.05


def test_example_recover_an_input_from_its_output(net, rng):
    """(c) least_squares with the exact Jacobian, one network evaluation per step."""
    x_true = np.array([0.4, -0.7])
    problem = TargetProblem(net, net.forward(x_true))
    result = least_squares(problem.fun, np.zeros(2), jac=problem.jac)
    np.testing.assert_allclose(net.forward(result.x), net.forward(x_true), atol=1e-9)
    assert problem.evaluations == result.nfev  # jac reused the evaluation of fun
    problem2 = TargetProblem(net, net.forward(x_true))
    result2 = minimize(problem2.fun_and_jac, np.zeros(2), jac=True, method="BFGS")
    assert result2.fun < 1e-9


def test_det_loss_gradient_matches_torch_double_backward(net, rng):
    torch = pytest.importorskip("torch")
    X = rng.uniform(-1, 1, size=(32, 2))
    J, pullback = net.jacobian_and_pullback(X)
    d, d_grad = losses.det(J)
    ours = pullback((2 * (d - 1) / len(d))[:, None, None] * d_grad)

    params = [torch.tensor(p, requires_grad=True) for p in net.params]
    W1, b1, W2, W3, b3 = params

    def f(x):
        return torch.tanh(torch.tanh(x @ W1 + b1) @ W2) @ W3 + b3

    J_torch = torch.autograd.functional.jacobian(lambda x: f(x).sum(0), torch.tensor(X), create_graph=True)
    loss = ((torch.linalg.det(J_torch.permute(1, 0, 2)) - 1) ** 2).mean()
    loss.backward()
    assert loss.item() == pytest.approx(np.mean((d - 1) ** 2), rel=1e-12)
    for p, g in zip(params, ours):
        expected = np.zeros(g.shape) if p.grad is None else p.grad.numpy()
        np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-13)
