"""The Layer protocol: what a user subclass must and need not implement."""

import numpy as np
import pytest

import jacobian_np as jn


class Square(jn.Layer):
    """A user layer implementing only forward and backward: y = x**2, J = diag(2x)."""

    def forward(self, x):
        return x**2, x

    def backward(self, dy, cache):
        return dy * (2 * cache)[..., None, :]


class Pairwise(jn.Layer):
    """A width-changing user layer: (x0, x1, x2) -> (x0 * x1, x1 + x2)."""

    d_in, d_out = 3, 2

    def forward(self, x):
        return np.stack([x[..., 0] * x[..., 1], x[..., 1] + x[..., 2]], axis=-1), x

    def backward(self, dy, x):
        x0, x1 = x[..., None, 0], x[..., None, 1]
        return np.stack(
            [dy[..., 0] * x1, dy[..., 0] * x0 + dy[..., 1], dy[..., 1]], axis=-1
        )


def test_user_layer_with_only_forward_and_backward_works(rng):
    x = rng.normal(size=(4, 3))
    assert jn.check_layer(Square(), x)
    assert jn.check_layer(Pairwise(), x)
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), Square(), Pairwise(), jn.Tanh()])
    assert (net.d_in, net.d_out) == (2, 2)
    assert jn.check_network(net, rng.normal(size=(5, 2)))
    assert jn.check_network(net, rng.normal(size=2))


def test_default_jacobian_uses_backward_with_an_identity_seed(rng):
    x = rng.normal(size=(2, 3))
    y, cache = Square().forward(x)
    J = Square().jacobian(y, cache)
    assert J.shape == (2, 3, 3)
    np.testing.assert_array_equal(J, np.stack([np.diag(2 * row) for row in x]))


def test_user_layer_widths_are_checked():
    with pytest.raises(ValueError, match=r"layer 1 \(Pairwise\) expects d_in = 3, but layer 0"):
        jn.Network([jn.Affine(np.ones((2, 4))), Pairwise()])


def test_layer_without_backward_fails_when_created():
    class NoBackward(jn.Layer):
        def forward(self, x):
            return x, None

    with pytest.raises(TypeError, match="abstract"):
        NoBackward()


def test_elementwise_subclass_needs_f_and_fprime():
    class OnlyF(jn.Elementwise):
        def f(self, x):
            return x

    with pytest.raises(TypeError, match="fprime"):
        OnlyF()


def test_elementwise_subclass(rng):
    class Cube(jn.Elementwise):
        def f(self, x):
            return x**3

        def fprime(self, x, y):
            return 3 * x**2

    x = rng.normal(size=(3, 4))
    assert jn.check_layer(Cube(), x)
    y, cache = Cube().forward(x)
    assert Cube().backward(np.ones((3, 5, 4)), cache).shape == (3, 5, 4)
    assert repr(Cube()) == "Cube()"


def test_layers_keep_no_state_between_calls(rng):
    """Caches are returned, not stored: two interleaved passes do not interfere."""
    layer = jn.Tanh()
    x1, x2 = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    y1, c1 = layer.forward(x1)
    y2, c2 = layer.forward(x2)
    np.testing.assert_array_equal(layer.jacobian(y1, c1), jn.Tanh().jacobian(*jn.Tanh().forward(x1)))
