"""Taylor mode on networks: Network.taylor, biharmonic, the weight gradients, and the examples.

Every result is checked against finite differences of exact lower-order results
and against an independent reference (the Jacobian and Hessian passes, a
Chebyshev interpolant of the forward pass, closed forms, JAX when installed).
"""

import math
import warnings

import numpy as np
import pytest
import scipy.optimize

import jacobian_np as jn


def _mlp(rng, widths, hidden, scale=1.0):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(jn.Affine(rng.normal(0, scale / np.sqrt(a), (a, b)), rng.normal(0, 0.3, b)))
        if i < len(widths) - 2:
            layers.append(hidden[i % len(hidden)]())
    return jn.Network(layers)


NETWORKS = {
    "tanh": lambda rng: _mlp(rng, [3, 7, 6, 2], [jn.Tanh], 1.5),
    "gelu-softmax": lambda rng: jn.Network(
        [jn.Affine(rng.normal(size=(3, 5)), rng.normal(size=5)), jn.GELU(), jn.Affine(rng.normal(size=(5, 4))),
         jn.Softmax(), jn.Affine(rng.normal(size=(4, 2)), rng.normal(size=2))]
    ),
    "mixed-logsoftmax": lambda rng: jn.Network(
        list(_mlp(rng, [3, 6, 5, 6, 4], [jn.SiLU, jn.Sigmoid, jn.Softplus], 1.5).layers)
        + [jn.Sin(), jn.Affine(rng.normal(size=(4, 3))), jn.LogSoftmax()]
    ),
    "activations-only": lambda rng: jn.Network([jn.Tanh(), jn.Sin()]),
    "composite": lambda rng: jn.Network(
        [
            jn.Affine(rng.normal(size=(3, 4)) * 0.7, rng.normal(size=4)),
            jn.Residual(jn.Network([jn.LayerNorm(4, weight=rng.normal(size=4)), jn.Affine(rng.normal(size=(4, 4)) * 0.5), jn.GELU()]), 0.8),
            jn.Parallel([jn.Tanh(), jn.Network([jn.Affine(rng.normal(size=(4, 3))), jn.Softmax()])]),
            jn.Affine(rng.normal(size=(7, 2)), rng.normal(size=2)),
        ]
    ),
}
NETWORK_IDS = list(NETWORKS)


def _points(rng, shape, d=3):
    return rng.normal(size=shape + (d,))


# --- taylor ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NETWORK_IDS)
@pytest.mark.parametrize("batch", [(), (5,), (0,)], ids=lambda b: f"batch{b}")
def test_taylor_low_orders_match_jacobian_and_hessian(name, batch, rng):
    net = NETWORKS[name](rng)
    x, v = _points(rng, batch), _points(rng, batch)
    T = net.taylor(x, v, 2)
    y = net.forward(x)
    assert T.shape == (3,) + y.shape
    np.testing.assert_allclose(T[0], y, rtol=1e-14, atol=1e-15)
    J, H = net.jacobian(x), net.hessian(x)
    np.testing.assert_allclose(T[1], np.einsum("...jk,...k->...j", J, v), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(T[2], np.einsum("...jkl,...k,...l->...j", H, v, v), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", NETWORK_IDS)
def test_taylor_to_order_5_against_differences_of_the_order_below(name, rng):
    """``T[k](x) = d/dh T[k-1](x + h v)`` at ``h = 0``: central differences of exact results."""
    net = NETWORKS[name](rng)
    x, v = _points(rng, (6,)), _points(rng, (6,))
    T = net.taylor(x, v, 5)
    h = 1e-4
    for k in range(1, 6):
        fd = (net.taylor(x + h * v, v, k - 1)[k - 1] - net.taylor(x - h * v, v, k - 1)[k - 1]) / (2 * h)
        np.testing.assert_allclose(T[k], fd, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(T[k]).max()))


@pytest.mark.parametrize("name", NETWORK_IDS)
def test_taylor_against_an_interpolated_reference(name, rng):
    """The forward pass along the line at Chebyshev nodes, interpolated: an independent reference."""
    from numpy.polynomial import chebyshev

    net = NETWORKS[name](rng)
    x, v = _points(rng, (4,)), _points(rng, (4,)) * 0.5
    rho, degree = 0.15, 20
    nodes = np.cos(np.pi * (np.arange(degree + 1) + 0.5) / (degree + 1))
    values = np.array([net.forward(x + rho * u * v) for u in nodes])
    coefficients = chebyshev.chebfit(nodes, values.reshape(len(nodes), -1), degree)
    to_powers = np.array([np.pad(chebyshev.cheb2poly(np.eye(degree + 1)[n]), (0, degree + 1))[: degree + 1] for n in range(degree + 1)])
    powers = (to_powers.T @ coefficients).reshape((degree + 1,) + values.shape[1:])
    T = net.taylor(x, v, 5)
    for k in range(6):
        reference = powers[k] * math.factorial(k) / rho**k
        np.testing.assert_allclose(T[k], reference, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(reference).max()))


def test_taylor_against_jax_jet(rng):
    jax = pytest.importorskip("jax")
    from jax.experimental import jet

    jax.config.update("jax_enable_x64", True)
    net = _mlp(rng, [3, 8, 8, 2], [jn.Tanh], 1.5)
    params = [(layer.W, layer.b) for layer in net.layers if isinstance(layer, jn.Affine)]

    def u(x):
        for W, b in params[:-1]:
            x = jax.numpy.tanh(x @ W + b)
        return x @ params[-1][0] + params[-1][1]

    x, v = _points(rng, (5,)), _points(rng, (5,))
    zero = np.zeros_like(x)
    y, terms = jet.jet(u, (x,), ((v, zero, zero, zero, zero),))
    np.testing.assert_allclose(net.taylor(x, v, 5), np.stack([y] + list(terms)), rtol=1e-10, atol=1e-10)


def test_taylor_shapes_dtypes_and_chunks(rng):
    net = NETWORKS["tanh"](rng)
    x = _points(rng, (9,))
    T = net.taylor(x, [1.0, 0.0, -1.0], 4)
    np.testing.assert_allclose(T, net.taylor(x, np.tile([1.0, 0.0, -1.0], (9, 1)), 4), rtol=1e-15, atol=0)
    np.testing.assert_allclose(T, net.taylor(x, [1.0, 0.0, -1.0], 4, chunk_size=2), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(T[:, 3], net.taylor(x[3], [1.0, 0.0, -1.0], 4), rtol=1e-14, atol=1e-15)
    assert T.flags.c_contiguous
    assert net.taylor(x, [1.0, 0.0, -1.0], 0).shape == (1, 9, 2)
    low = jn.Network([jn.Affine(np.float32(rng.normal(size=(3, 4)))), jn.Tanh(), jn.Affine(np.float32(rng.normal(size=(4, 2))))])
    assert low.taylor(x.astype(np.float32), np.ones(3, np.float32), 3).dtype == np.float32
    saved = x.copy()
    net.taylor(x, x, 3)
    np.testing.assert_array_equal(x, saved)


def test_taylor_through_affine_only_layers_and_trailing_affine_layers(rng):
    """Trailing constant-Jacobian layers take the fused path; an affine network is a line."""
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3)), rng.normal(size=3)), jn.Affine(rng.normal(size=(3, 2)), rng.normal(size=2))])
    x, v = _points(rng, (4,), 2), _points(rng, (4,), 2)
    with pytest.warns(jn.ZeroCurvatureWarning):
        T = net.taylor(x, v, 3)
    np.testing.assert_allclose(T[0], net.forward(x), rtol=1e-14)
    np.testing.assert_allclose(T[1], net.forward(x + v) - net.forward(x), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(T[2:], 0)


# --- biharmonic -----------------------------------------------------------------------


@pytest.mark.parametrize("dims", [None, [1], [0, 2], [2, 0, 1]], ids=str)
@pytest.mark.parametrize("name", ["tanh", "gelu-softmax", "mixed-logsoftmax", "composite"])
def test_biharmonic_is_the_laplacian_of_the_laplacian(name, dims, rng):
    """Second central differences of the exact partial Laplacian over the same inputs
    (Richardson-extrapolated: error of order h**4)."""
    net = NETWORKS[name](rng)
    x = _points(rng, (5,))
    B = net.biharmonic(x, dims=dims)
    dims_ = [0, 1, 2] if dims is None else dims
    L = lambda z: net.laplacian_and_pullback(z, dims=dims_)[0]  # noqa: E731

    def second_differences(h):
        return sum((L(x + h * e) - 2 * L(x) + L(x - h * e)) / h**2 for e in np.eye(3)[dims_])

    fd = (4 * second_differences(1e-3) - second_differences(2e-3)) / 3
    np.testing.assert_allclose(B, fd, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(B).max()))


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 6])
def test_biharmonic_closed_form(d, rng):
    """``sin(a . x)`` has the biharmonic ``|a|**4 sin(a . x)``, for every number of inputs
    (the weight of the axes is negative from d = 5 and zero at d = 4)."""
    a = rng.normal(size=(d, 1))
    net = jn.Network([jn.Affine(a), jn.Sin()])
    x = _points(rng, (7,), d)
    np.testing.assert_allclose(net.biharmonic(x), np.sum(a**2) ** 2 * np.sin(x @ a), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net.biharmonic(x[0]), np.sum(a**2) ** 2 * np.sin(x[0] @ a), rtol=1e-10, atol=1e-12)
    assert net.biharmonic(np.zeros((0, d))).shape == (0, 1)
    np.testing.assert_allclose(net.biharmonic(x, chunk_size=3), net.biharmonic(x), rtol=1e-14, atol=1e-15)


def test_biharmonic_against_jax_nested_hessians(rng):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    net = _mlp(rng, [3, 8, 8, 1], [jn.Tanh], 1.5)
    params = [(layer.W, layer.b) for layer in net.layers if isinstance(layer, jn.Affine)]

    def u(x):
        for W, b in params[:-1]:
            x = jax.numpy.tanh(x @ W + b)
        return (x @ params[-1][0] + params[-1][1])[0]

    def laplacian(x):
        return jax.numpy.trace(jax.hessian(u)(x))

    x = _points(rng, (4,))
    want = jax.vmap(lambda z: jax.numpy.trace(jax.hessian(laplacian)(z)))(x)
    np.testing.assert_allclose(net.biharmonic(x)[:, 0], want, rtol=1e-9, atol=1e-9)


# --- weight gradients -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["tanh", "gelu-softmax", "mixed-logsoftmax", "composite"])
def test_taylor_and_laplacian_weight_gradients_against_differences(name, rng):
    net = NETWORKS[name](rng)
    result = jn.check_param_grads(net, _points(rng, (4,)), jacobian=False, taylor=True, rng=rng)
    assert result, str(result)
    assert [c.name for c in result.comparisons] == ["param_grad", "taylor_param_grad", "laplacian_param_grad"]


@pytest.mark.parametrize("order", [0, 1, 2, 4, 5])
def test_taylor_param_grad_every_order_one_point_and_chunks(order, rng):
    net = NETWORKS["gelu-softmax"](rng)
    x, v = _points(rng, (5,)), _points(rng, (5,))
    G = rng.normal(size=(order + 1, 5, 2))
    grads = net.taylor_param_grad(x, v, order, G)
    theta = net.get_flat_params()

    def objective(t):
        net.set_flat_params(t)
        try:
            return np.array(np.sum(G * net.taylor(x, v, order)))
        finally:
            net.set_flat_params(theta)

    numeric = jn.numerical_jacobian(objective, theta)
    np.testing.assert_allclose(np.concatenate([g.ravel() for g in grads]), numeric, rtol=1e-6, atol=1e-7 * np.abs(numeric).max())
    chunked = net.taylor_param_grad(x, v, order, G, chunk_size=2)
    for a, b in zip(chunked, grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    T, pullback = net.taylor_and_pullback(x, v, order)
    np.testing.assert_allclose(T, net.taylor(x, v, order), rtol=1e-14, atol=1e-15)
    for a, b in zip(pullback(G), grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    single = net.taylor_param_grad(x[0], v[0], order, G[:, 0])
    for a, b in zip(single, net.taylor_param_grad(x[:1], v[:1], order, G[:, :1])):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dims", [None, [2], [0, 2]], ids=str)
def test_laplacian_param_grad_over_dims_and_chunks(dims, rng):
    net = NETWORKS["mixed-logsoftmax"](rng)
    x = _points(rng, (6,))
    G = rng.normal(size=(6, 3))
    L, pullback = net.laplacian_and_pullback(x, dims=dims)
    H = net.hessian(x)
    dims_ = [0, 1, 2] if dims is None else dims
    np.testing.assert_allclose(L, sum(H[..., k, k] for k in dims_), rtol=1e-11, atol=1e-12)
    grads = net.laplacian_param_grad(x, G, dims=dims)
    theta = net.get_flat_params()

    def objective(t):
        net.set_flat_params(t)
        try:
            return np.array(np.sum(G * sum(net.hessian(x)[..., k, k] for k in dims_)))
        finally:
            net.set_flat_params(theta)

    numeric = jn.numerical_jacobian(objective, theta)
    np.testing.assert_allclose(np.concatenate([g.ravel() for g in grads]), numeric, rtol=1e-6, atol=1e-7 * np.abs(numeric).max())
    for a, b in zip(pullback(G), grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(net.laplacian_param_grad(x, G, dims=dims, chunk_size=4), grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert all(np.all(g == 0) for g in net.laplacian_param_grad(np.zeros((0, 3)), np.zeros((0, 3)), dims=dims))


# --- bad input, warnings, missing rules -----------------------------------------------


def test_bad_arguments_are_named(rng):
    net = NETWORKS["tanh"](rng)
    x = _points(rng, (4,))
    with pytest.raises(ValueError, match="order to be a non-negative integer; got -1"):
        net.taylor(x, x, -1)
    for bad in (2.0, True, "2", None):
        with pytest.raises(TypeError, match="order to be a non-negative integer"):
            net.taylor(x, x, bad)
    with pytest.raises(ValueError, match=r"v of shape \(4, 3\) or \(3,\); got shape \(2,\)"):
        net.taylor(x, [1.0, 2.0], 2)
    with pytest.raises(ValueError, match=r"v of shape \(4, 3\) or \(3,\); got shape \(3, 3\)"):
        net.taylor(x, np.ones((3, 3)), 2)
    with pytest.raises(ValueError, match=r"grad_T of shape \(3, 4, 2\); got shape \(2, 4, 2\)"):
        net.taylor_param_grad(x, x, 2, np.ones((2, 4, 2)))
    with pytest.raises(ValueError, match=r"grad_L of shape \(4, 2\); got shape \(4,\)"):
        net.laplacian_param_grad(x, np.ones(4))
    with pytest.raises(ValueError, match=r"Network.biharmonic expects dims in the range 0 to 2 \(d_in = 3\); got 3\."):
        net.biharmonic(x, dims=[0, 3])
    with pytest.raises(ValueError, match=r"Network.laplacian_param_grad expects dims in the range 0 to 2 \(d_in = 3\); got -1\."):
        net.laplacian_param_grad(x, np.ones((4, 2)), dims=[-1])
    with pytest.raises(ValueError, match=r"dims without repeats; got \[1, 1\]"):
        net.biharmonic(x, dims=[1, 1])
    with pytest.raises(ValueError, match="dims to name at least one input"):
        net.laplacian_and_pullback(x, dims=[])
    with pytest.raises(TypeError, match="dims to be a sequence of input indices"):
        net.biharmonic(x, dims=1)
    with pytest.raises(TypeError, match="dims of integers; got 0.0"):
        net.biharmonic(x, dims=[0.0])
    with pytest.raises(ValueError, match="chunk_size to be a positive integer; got 0"):
        net.taylor(x, x, 2, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size to be a positive integer"):
        net.laplacian_param_grad(x, np.ones((4, 2)), chunk_size=2.5)
    with pytest.raises(ValueError, match="Network.taylor expects x of shape"):
        net.taylor(np.ones((2, 2, 3)), [1.0, 0.0, 0.0], 2)
    T, pullback = net.taylor_and_pullback(x, x, 2)
    with pytest.raises(ValueError, match=r"pullback expects grad_T of shape \(3, 4, 2\)"):
        pullback(np.ones((3, 4)))
    L, pullback = net.laplacian_and_pullback(x)
    with pytest.raises(ValueError, match=r"pullback expects grad_L of shape \(4, 2\)"):
        pullback(np.ones(2))


def test_piecewise_linear_networks_warn_from_order_2(rng):
    net = _mlp(rng, [2, 5, 1], [jn.ReLU])
    x = _points(rng, (3,), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.taylor(x, x, 1)
    for call in (
        lambda: net.taylor(x, x, 2),
        lambda: net.biharmonic(x),
        lambda: net.laplacian_param_grad(x, np.ones((3, 1))),
        lambda: net.taylor_param_grad(x, x, 3, np.ones((4, 3, 1))),
    ):
        with pytest.warns(jn.ZeroCurvatureWarning, match="piecewise linear"):
            call()


def test_a_layer_without_taylor_rules_is_named(rng):
    class Scale(jn.Layer):  # forward and backward only
        def forward(self, x):
            return 2 * np.tanh(x), x

        def backward(self, dy, cache):
            return dy * 2 / np.cosh(cache[..., None, :]) ** 2

    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), Scale()])
    with pytest.raises(NotImplementedError, match=r"Network.taylor needs Layer.taylor: layer 1 \(Scale\) lacks taylor\."):
        net.taylor(np.ones(2), np.ones(2), 2)

    class Cube(jn.Elementwise):  # f' and f'' only: Taylor mode to order 2
        def f(self, x):
            return x**3

        def fprime(self, x, y):
            return 3 * x**2

        def fsecond(self, x, y):
            return 6 * x

    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), Cube()])
    np.testing.assert_allclose(net.taylor(np.ones(2), np.ones(2), 2)[2], net.hessian(np.ones(2)).sum(axis=(-1, -2)))
    with pytest.raises(NotImplementedError, match=r"Cube does not implement derivatives\(x, y, order\) beyond order 2"):
        net.taylor(np.ones(2), np.ones(2), 3)

    class SharperTanh(jn.Tanh):  # overriding f' drops the inherited higher derivatives
        def fprime(self, x, y):
            return super().fprime(x, y)

    with pytest.raises(NotImplementedError, match="SharperTanh does not implement derivatives"):
        jn.Network([SharperTanh()]).taylor(np.ones(2), np.ones(2), 3)


# --- the examples of the issue ----------------------------------------------------------


def test_pinn_derivatives_to_order_4_in_one_call(rng):
    """(a) u, u_x, ..., u_xxxx of the 1 -> 50 -> 50 -> 50 -> 501 tanh PINN in one call, each
    against central differences of the exact order below."""
    net = _mlp(rng, [1, 50, 50, 50, 501], [jn.Tanh])
    x = np.linspace(-2, 2, 64)[:, None]
    T = net.taylor(x, [1.0], 4)
    assert T.shape == (5, 64, 501)
    np.testing.assert_allclose(T[1], net.jacobian(x)[..., 0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(T[2], net.laplacian(x), rtol=1e-11, atol=1e-12)
    h = 1e-4
    for k in range(3, 5):
        fd = (net.taylor(x + h, [1.0], k - 1)[k - 1] - net.taylor(x - h, [1.0], k - 1)[k - 1]) / (2 * h)
        np.testing.assert_allclose(T[k], fd, rtol=1e-5, atol=1e-6 * np.abs(T[k]).max())


def test_poisson_pinn_trained_with_laplacian_param_grad():
    """(b) A 2 -> 16 -> 16 -> 1 tanh PINN for Δu = f on the unit square (u = sin(pi x) sin(pi y),
    zero on the boundary), trained with L-BFGS-B on Laplacian and boundary losses."""
    rng = np.random.default_rng(0)
    sizes = [2, 16, 16, 1]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [jn.Affine(rng.normal(0, np.sqrt(2 / (a + b)), (a, b)), np.zeros(b))] + ([jn.Tanh()] if i < 2 else [])
    net = jn.Network(layers)
    grid = (np.arange(12) + 0.5) / 12
    inside = np.array([(a, b) for a in grid for b in grid])
    t = np.linspace(0, 1, 13)[:-1]
    boundary = np.concatenate([np.c_[t, 0 * t], np.c_[1 + 0 * t, t], np.c_[1 - t, 1 + 0 * t], np.c_[0 * t, 1 - t]])
    f = -2 * np.pi**2 * np.sin(np.pi * inside[:, :1]) * np.sin(np.pi * inside[:, 1:])

    def loss(theta):
        net.set_flat_params(theta)
        L, pullback = net.laplacian_and_pullback(inside)
        residual, edge = L - f, net.forward(boundary)
        grads = zip(pullback(2 * residual / len(residual)), net.param_grad(boundary, 20 * edge / len(edge)))
        return np.mean(residual**2) + 10 * np.mean(edge**2), np.concatenate([(a + b).ravel() for a, b in grads])

    options = {"maxiter": 600, "maxcor": 50, "ftol": 0, "gtol": 0}  # stop on the count alone
    result = scipy.optimize.minimize(loss, net.get_flat_params(), jac=True, method="L-BFGS-B", options=options)
    net.set_flat_params(result.x)
    test = np.random.default_rng(1).uniform(size=(1000, 2))
    exact = np.sin(np.pi * test[:, :1]) * np.sin(np.pi * test[:, 1:])
    assert np.linalg.norm(net.forward(test) - exact) / np.linalg.norm(exact) <= 1e-2


def test_kdv_two_soliton_network_has_zero_residual():
    """(c) ``u = 2 (log f)_xx`` with Hirota's ``f = 1 + e^t1 + e^t2 + A e^(t1 + t2)`` solves
    ``u_t + 6 u u_x + u_xxx = 0``; ``log f`` is ``Affine -> LogSoftmax -> Affine`` exactly, so
    the residual from Taylor mode (order 5 along x, a mixed third derivative by polarization)
    vanishes to rounding."""
    k1, k2 = 1.0, 1.6
    A = ((k1 - k2) / (k1 + k2)) ** 2
    W = np.array([[0, k1, k2, k1 + k2], [0, -(k1**3), -(k2**3), -(k1**3 + k2**3)]])
    log_f = jn.Network([jn.Affine(W, [0, 0, -3, np.log(A) - 3]), jn.LogSoftmax(), jn.Affine([[-1.0], [0.0], [0.0], [0.0]])])
    X = np.c_[np.linspace(-10, 10, 101), np.linspace(-2, 2, 101)]
    along_x = log_f.taylor(X, [1.0, 0.0], 5)
    third = [log_f.taylor(X, v, 3)[3] for v in ([1.0, 1.0], [1.0, -1.0], [0.0, 1.0])]
    u, u_x, u_xxx = 2 * along_x[2], 2 * along_x[3], 2 * along_x[5]
    u_t = 2 * (third[0] - third[1] - 2 * third[2]) / 6  # from (e_x +- e_t)^3
    terms = np.abs(u_t) + np.abs(6 * u * u_x) + np.abs(u_xxx)
    assert terms.max() > 1
    np.testing.assert_allclose(u_t + 6 * u * u_x + u_xxx, 0, atol=1e-10 * terms.max())
    # u_xxx against central differences of the exact u_xx
    h = 1e-4
    u_xx = lambda z: 2 * log_f.taylor(z, [1.0, 0.0], 4)[4]  # noqa: E731
    shift = np.array([h, 0.0])
    np.testing.assert_allclose(2 * along_x[5], (u_xx(X + shift) - u_xx(X - shift)) / (2 * h), rtol=1e-5, atol=1e-6)
