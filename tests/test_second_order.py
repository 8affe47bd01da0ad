"""Hessians and Laplacians: every layer's curvature against central differences of
its Jacobian, networks against central differences, and the zero-curvature warning."""

import warnings

import numpy as np
import pytest
from cases import CASE_IDS, LAYER_CASES

import jacobian_np as jn

BATCH_SHAPES = [(), (4,), (0,), (2, 3)]
SMOOTH = [jn.Tanh, jn.Sigmoid, jn.Softplus, jn.GELU, jn.SiLU, jn.Sin, jn.ELU]


@pytest.mark.parametrize("batch", BATCH_SHAPES, ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_layer_curvature_matches_central_differences_of_its_jacobian(case, batch, rng):
    layer = case.make(rng)
    result = jn.check_layer(layer, case.sample(rng, batch), rng=rng, second_order=True)
    assert result, str(result)
    assert {"curvature(unit pairs)", "curvature(random pairs)"} <= {c.name for c in result.comparisons}


@pytest.mark.parametrize("case", LAYER_CASES, ids=CASE_IDS)
def test_layer_inside_network_second_order(case, rng):
    """The layer between smooth layers, and last (as a head)."""
    layer = case.make(rng)
    d = case.sample(rng, ()).shape[-1]
    d_out = layer.forward_with_cache(case.sample(rng, ()))[0].shape[-1]
    before = jn.Affine(rng.normal(size=(3, d)) * 0.5)
    x = rng.normal(size=(4, 3))
    if layer.piecewise_linear and not layer.constant_jacobian:  # keep off the kinks
        z = before.forward_with_cache(x)[0]
        x = x[np.all(np.abs(z) > 0.05, axis=1)]
    for net in (
        jn.Network([before, jn.Tanh(), jn.Affine(rng.normal(size=(d, d))), layer]),
        jn.Network([before, jn.Sigmoid(), jn.Affine(rng.normal(size=(d, d))), layer, jn.Affine(rng.normal(size=(d_out, 2)))]),
    ):
        result = jn.check_network(net, x, second_order=True)
        assert result, str(result)
        assert {"hessian", "laplacian"} <= {c.name for c in result.comparisons}


@pytest.mark.parametrize("activation", SMOOTH, ids=lambda a: a.__name__)
@pytest.mark.parametrize("head", [None, jn.Softmax, jn.LogSoftmax], ids=["linear", "softmax", "logsoftmax"])
def test_deep_networks_match_central_differences(activation, head, rng):
    layers = [jn.Affine(rng.normal(size=(3, 6)), rng.normal(size=6)), activation()]
    layers += [jn.Affine(rng.normal(size=(6, 5)) * 0.7), activation(), jn.Affine(rng.normal(size=(5, 4)))]
    if head is not None:
        layers.append(head())
    net = jn.Network(layers)
    result = jn.check_network(net, rng.normal(size=(5, 3)), second_order=True)
    assert result, str(result)


@pytest.fixture
def net(rng):
    return jn.Network(
        [jn.Affine(rng.normal(size=(3, 8)), rng.normal(size=8)), jn.Tanh(), jn.Affine(rng.normal(size=(8, 2)))]
    )


def test_shapes_symmetry_and_one_point(net, rng):
    X = rng.normal(size=(5, 3))
    H = net.hessian(X)
    assert H.shape == (5, 2, 3, 3)
    np.testing.assert_array_equal(H, np.swapaxes(H, -1, -2))  # exactly symmetric
    np.testing.assert_allclose(net.hessian(X[2]), H[2], rtol=1e-13, atol=1e-15)
    assert net.laplacian(X[2]).shape == (2,)
    assert net.hessian(np.zeros((0, 3))).shape == (0, 2, 3, 3)
    assert net.laplacian(np.zeros((0, 3))).shape == (0, 2)


def test_laplacian_is_the_trace_of_the_hessian(net, rng):
    X = rng.normal(size=(7, 3))
    np.testing.assert_allclose(net.laplacian(X), np.trace(net.hessian(X), axis1=-2, axis2=-1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 100])
def test_chunked_equals_unchunked(net, rng, chunk_size):
    X = rng.normal(size=(5, 3))
    np.testing.assert_allclose(net.hessian(X, chunk_size=chunk_size), net.hessian(X), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(net.laplacian(X, chunk_size=chunk_size), net.laplacian(X), rtol=1e-13, atol=1e-15)


def test_float32_stays_float32(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 4)).astype(np.float32)), jn.Tanh()])
    x = rng.normal(size=(3, 2)).astype(np.float32)
    assert net.hessian(x).dtype == net.laplacian(x).dtype == np.float32


def test_a_pinn_u_ux_uxx(rng):
    """u(x) of a 1 -> 20 -> 20 -> 1 tanh network and its derivatives at 50 points."""
    net = jn.Network(
        [jn.Affine(rng.normal(size=(1, 20))), jn.Tanh(), jn.Affine(rng.normal(size=(20, 20)) / 4), jn.Tanh(),
         jn.Affine(rng.normal(size=(20, 1)))]
    )
    x = np.linspace(-1, 1, 50)[:, None]
    u, J = net.forward_backward(x)
    u_xx = net.laplacian(x)
    h = 1e-4
    u_plus, u_minus = net.forward(x + h), net.forward(x - h)
    np.testing.assert_allclose(J[:, 0, 0], (u_plus - u_minus)[:, 0] / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(u_xx, (u_plus - 2 * u + u_minus) / h**2, rtol=1e-4, atol=1e-5)


# --- the zero-curvature warning ----------------------------------------------------


@pytest.mark.parametrize("activation", [jn.ReLU, lambda: jn.LeakyReLU(0.1), jn.Identity], ids=["ReLU", "LeakyReLU", "Identity"])
def test_piecewise_linear_networks_give_zeros_and_warn_once(activation, rng):
    net = jn.Network([jn.Affine(rng.normal(size=(3, 6))), activation(), jn.Affine(rng.normal(size=(6, 2)))])
    X = rng.normal(size=(4, 3))
    for method in (net.hessian, net.laplacian):
        with pytest.warns(jn.ZeroCurvatureWarning, match="second derivatives are zero almost everywhere") as caught:
            result = method(X)
        assert len(caught) == 1
        assert np.count_nonzero(result) == 0
    assert issubclass(jn.ZeroCurvatureWarning, UserWarning)


def test_the_warning_points_at_the_caller(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), jn.ReLU()])
    with pytest.warns(jn.ZeroCurvatureWarning) as caught:
        net.hessian(np.ones(2))
    assert caught[0].filename == __file__


def test_smooth_and_mixed_networks_do_not_warn(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), jn.ReLU(), jn.Affine(rng.normal(size=(3, 3))), jn.Tanh()])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.hessian(np.ones(2))
        net.laplacian(np.ones(2))


# --- errors -------------------------------------------------------------------------


class NoCurvature(jn.Layer):
    def forward(self, x):
        return 2 * x, None

    def backward(self, dy, cache):
        return 2 * dy

    def tangent(self, dx, cache):
        return 2 * dx


class Cube(jn.Elementwise):  # no fsecond
    def f(self, x):
        return x**3

    def fprime(self, x, y):
        return 3 * x**2


@pytest.mark.parametrize("layer, name", [(NoCurvature(), "NoCurvature"), (Cube(), "Cube")])
def test_layers_without_second_order_support_are_named(layer, name, rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), layer])
    for method in ("hessian", "laplacian"):
        with pytest.raises(NotImplementedError, match=rf"Network.{method} needs Layer.curvature: layer 1 \({name}\) lacks curvature"):
            getattr(net, method)(np.ones(2))
    with pytest.raises(NotImplementedError, match=f"{name} does not implement curvature"):
        jn.check_layer(layer, np.ones(3), second_order=True)


def test_bad_chunk_size(net):
    with pytest.raises(ValueError, match="chunk_size to be a positive integer; got 0"):
        net.hessian(np.ones((2, 3)), chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size to be a positive integer; got 1.5"):
        net.laplacian(np.ones(3), chunk_size=1.5)


class WrongSecondDerivative(jn.Tanh):
    def fsecond(self, x, y):
        return 1.01 * super().fsecond(x, y)


def test_checks_catch_a_second_derivative_off_by_one_percent(rng):
    result = jn.check_layer(WrongSecondDerivative(), rng.uniform(-2, 2, (3, 4)), second_order=True)
    assert not result
    assert {"curvature(unit pairs)", "curvature(random pairs)", "fsecond"} <= {c.name for c in result.failures}
    net = jn.Network([jn.Affine(rng.normal(size=(2, 4))), WrongSecondDerivative(), jn.Affine(rng.normal(size=(4, 2)))])
    result = jn.check_network(net, rng.normal(size=(3, 2)), second_order=True)
    assert [c.name for c in result.failures] == ["hessian", "laplacian"]
