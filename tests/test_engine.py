"""The engine: one home per rule, composite layers, and the layer contract.

- A subclass that overrides a rule (``backward``, ``tangent``, ``fprime``,
  ``fsecond``, ``curvature``) is honoured by every method, and ``check_network``
  catches a wrong override.
- Random nested architectures (residual blocks, parallel heads, LayerNorm,
  networks inside networks) against an independent reference written here: the
  function and its Jacobian per kind of layer, composed by the chain rule by hand.
- The contract: wrong shapes are named, a shared layer's gradients add up.
"""

import warnings

import numpy as np
import pytest

import jacobian_np as jn

# --- overrides are honoured everywhere --------------------------------------------


class OffTanh(jn.Tanh):
    """A Tanh whose backward is 10% too large (a wrong override)."""

    def backward(self, dy, cache):
        return 1.1 * super().backward(dy, cache)


class OffTangentTanh(jn.Tanh):
    def tangent(self, dx, cache):
        return 1.1 * super().tangent(dx, cache)


class OffPrimeTanh(jn.Tanh):
    def fprime(self, x, y):
        return 1.1 * super().fprime(x, y)


class OffSecondTanh(jn.Tanh):
    def fsecond(self, x, y):
        return 1.1 * super().fsecond(x, y)


class OffCurvatureTanh(jn.Tanh):
    def curvature(self, u, v, cache):
        return 1.1 * super().curvature(u, v, cache)


class OffAffine(jn.Affine):
    def backward(self, dy, cache):
        return 1.1 * super().backward(dy, cache)


def net_with(rng, layer, d=3):
    return jn.Network([jn.Affine(rng.normal(size=(3, d))), layer, jn.Affine(rng.normal(size=(d, 2)))])


def correct(rng, d=3):
    return net_with(rng, jn.Tanh(), d)


def test_an_overridden_backward_is_used_by_every_reverse_method(rng):
    wrong, right = net_with(np.random.default_rng(1), OffTanh()), net_with(np.random.default_rng(1), jn.Tanh())
    X, U = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    J_wrong, J_right = wrong.jacobian(X, mode="reverse"), right.jacobian(X, mode="reverse")
    assert not np.allclose(J_wrong, J_right)
    # every method that runs reverse mode computes the same thing as the override
    np.testing.assert_allclose(wrong.forward_backward(X, mode="reverse")[1], J_wrong, rtol=1e-14)
    np.testing.assert_allclose(wrong.vjp(X, U)[1], np.einsum("ij,ijk->ik", U, J_wrong), rtol=1e-12)
    np.testing.assert_allclose(wrong.jacobian(X[0], mode="reverse"), J_wrong[0], rtol=1e-14)
    # forward mode uses tangent, which is right: the two modes disagree, and the check says so
    np.testing.assert_allclose(wrong.jacobian(X, mode="forward"), J_right, rtol=1e-12)
    result = jn.check_network(wrong, X)
    assert not result
    assert [c.name for c in result.failures] == ["J (reverse mode)"]
    # backpropagation too: its parameter gradient is not the true one
    assert not jn.check_param_grads(wrong, X, jacobian=False)
    assert jn.check_param_grads(right, X)


def test_an_overridden_tangent_is_used_by_forward_mode_and_jvp(rng):
    wrong = net_with(np.random.default_rng(1), OffTangentTanh())
    X, V = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    J = wrong.jacobian(X, mode="forward")
    np.testing.assert_allclose(wrong.jvp(X, V)[1], np.einsum("ijk,ik->ij", J, V), rtol=1e-12)
    assert not np.allclose(J, wrong.jacobian(X, mode="reverse"))
    assert [c.name for c in jn.check_network(wrong, X).failures] == ["J (forward mode)"]


def test_an_overridden_fprime_changes_every_method_alike(rng):
    wrong = net_with(np.random.default_rng(1), OffPrimeTanh())
    X = rng.normal(size=(5, 3))
    J = wrong.jacobian(X, mode="reverse")
    np.testing.assert_allclose(wrong.jacobian(X, mode="forward"), J, rtol=1e-12)
    J_pullback, _ = wrong.jacobian_and_pullback(X)
    np.testing.assert_allclose(J_pullback, J, rtol=1e-12)
    assert not jn.check_network(wrong, X)


@pytest.mark.parametrize("layer", [OffSecondTanh(), OffCurvatureTanh()], ids=["fsecond", "curvature"])
def test_an_overridden_second_derivative_is_used_by_second_order(layer, rng):
    wrong, right = net_with(np.random.default_rng(1), layer), correct(np.random.default_rng(1))
    X = rng.normal(size=(4, 3))
    H = wrong.hessian(X)
    assert not np.allclose(H, right.hessian(X))
    np.testing.assert_allclose(wrong.laplacian(X), np.trace(H, axis1=-2, axis2=-1), rtol=1e-12)
    np.testing.assert_allclose(wrong.hessian_diagonal(X), np.diagonal(H, axis1=-2, axis2=-1), rtol=1e-12)
    result = jn.check_network(wrong, X, second_order=True)
    assert {c.name for c in result.failures} >= {"hessian", "laplacian"}


def test_an_overridden_affine_backward_is_used_for_the_seed(rng):
    wrong = jn.Network([jn.Affine(rng.normal(size=(3, 4))), jn.Tanh(), OffAffine(rng.normal(size=(4, 2)))])
    X = rng.normal(size=(5, 3))
    assert [c.name for c in jn.check_network(wrong, X).failures] == ["J (reverse mode)"]


# --- random nested architectures against an independent reference ----------------
#
# The reference knows each kind of layer by its parameters and writes down y(x) and
# J(x) for one point, with textbook formulas (not the package's accurate ones).

SMOOTH = {
    jn.Tanh: (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    jn.Sigmoid: (lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
    jn.Sin: (np.sin, np.cos),
    jn.Softplus: (lambda x: np.log1p(np.exp(x)), lambda x: 1 / (1 + np.exp(-x))),
}


def reference(layer, x):
    """``(y, J)`` at one point ``x`` of shape ``(d,)``."""
    if type(layer) in SMOOTH:
        f, fprime = SMOOTH[type(layer)]
        return f(x), np.diag(fprime(x))
    if isinstance(layer, jn.Affine):
        b = 0 if layer.b is None else layer.b
        return x @ layer.W + b, layer.W.T
    if isinstance(layer, jn.LayerNorm):
        d = len(x)
        c = x - x.mean()
        r = 1 / np.sqrt(c @ c / d + layer.eps)
        h = c * r
        J = r * (np.eye(d) - 1 / d - np.outer(h, h) / d)
        return h * layer.weight + layer.bias, layer.weight[:, None] * J
    if isinstance(layer, jn.Residual):
        z, Jz = reference(layer.block, x)
        return x + layer.scale * z, np.eye(len(x)) + layer.scale * Jz
    if isinstance(layer, jn.Parallel):
        parts = [reference(branch, x) for branch in layer.branches]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if isinstance(layer, jn.Network):
        J = np.eye(len(x))
        for inner in layer.layers:
            x, J_inner = reference(inner, x)
            J = J_inner @ J
        return x, J
    raise AssertionError(f"no reference for {layer!r}")


def random_block(rng, width, depth):
    """A random layer mapping ``width`` to ``width``, nested up to ``depth``."""
    kind = rng.integers(0, 5 if depth > 0 else 2)
    if kind == 0:
        return rng.choice([jn.Tanh, jn.Sigmoid, jn.Sin, jn.Softplus])()
    if kind == 1:
        return jn.Affine(rng.normal(size=(width, width)) / np.sqrt(width), rng.normal(size=width) * 0.1)
    if kind == 2:
        return jn.LayerNorm(width, eps=0.5, weight=rng.normal(size=width), bias=rng.normal(size=width))
    if kind == 3:
        return jn.Residual(random_chain(rng, width, depth - 1), scale=float(rng.uniform(0.2, 1.0)))
    branches = [jn.Network([jn.Affine(rng.normal(size=(width, width))), random_chain(rng, width, depth - 1)]) for _ in range(2)]
    return jn.Network([jn.Parallel(branches), jn.Affine(rng.normal(size=(2 * width, width)) / np.sqrt(2 * width))])


def random_chain(rng, width, depth):
    return jn.Network([random_block(rng, width, depth) for _ in range(rng.integers(1, 4))])


@pytest.mark.parametrize("seed", range(25))
def test_random_nested_architectures_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    d_in, width, d_out = rng.integers(1, 4), rng.integers(2, 5), rng.integers(1, 4)
    net = jn.Network([
        jn.Affine(rng.normal(size=(d_in, width))),
        random_chain(rng, width, depth=3),
        jn.Affine(rng.normal(size=(width, d_out))),
    ])
    X = rng.normal(size=(4, d_in))
    refs = [reference(net, x) for x in X]
    Y_ref, J_ref = np.array([r[0] for r in refs]), np.array([r[1] for r in refs])
    for mode in ("reverse", "forward"):
        Y, J = net.forward_backward(X, mode=mode)
        np.testing.assert_allclose(Y, Y_ref, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(J, J_ref, rtol=1e-10, atol=1e-11)
        np.testing.assert_allclose(net.jacobian(X, mode=mode, chunk_size=3), J_ref, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(net.jacobian(X[1]), J_ref[1], rtol=1e-10, atol=1e-11)
    V, U = rng.normal(size=X.shape), rng.normal(size=Y_ref.shape)
    np.testing.assert_allclose(net.jvp(X, V)[1], np.einsum("ijk,ik->ij", J_ref, V), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(net.vjp(X, U)[1], np.einsum("ij,ijk->ik", U, J_ref), rtol=1e-9, atol=1e-11)
    # second order: central differences of the reference Jacobian
    h = 1e-5
    H_ref = np.stack(
        [
            np.stack([(reference(net, x + h * e)[1] - reference(net, x - h * e)[1]) / (2 * h) for e in np.eye(d_in)], -1)
            for x in X
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jn.ZeroCurvatureWarning)  # some draws are piecewise linear
        H, laplacian = net.hessian(X), net.laplacian(X)
        assert jn.check_network(net, X, second_order=True)
    np.testing.assert_allclose(H, H_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(laplacian, np.trace(H_ref, axis1=-2, axis2=-1), rtol=1e-5, atol=1e-6)
    # parameters: both kinds of parameter gradient
    assert jn.check_param_grads(net, X)


# --- composition -------------------------------------------------------------------


def test_fourier_features_are_an_affine_layer_and_sin(rng):
    B = rng.normal(size=(2, 8)) * 3
    features = jn.Network([jn.Affine(np.hstack([B, B]), np.r_[np.zeros(8), np.full(8, np.pi / 2)]), jn.Sin()])
    X = rng.normal(size=(5, 2))
    np.testing.assert_allclose(features(X), np.hstack([np.sin(X @ B), np.cos(X @ B)]), atol=1e-12)
    assert jn.check_network(features, X)


def test_a_network_is_a_sequence_of_layers(rng):
    net = correct(rng)
    assert len(net) == 3 and net[1] is net.layers[1]
    head = net[1:]
    assert isinstance(head, jn.Network) and head.layers[0] is net.layers[1]  # shared, not copied
    X = rng.normal(size=(4, 3))
    np.testing.assert_array_equal(net(X), net.forward(X))
    np.testing.assert_allclose(head(net[0].forward(X)[0]), net(X), rtol=1e-15)
    assert isinstance(net, jn.Layer)


def test_a_shared_layer_is_listed_once_and_its_gradients_add_up(rng):
    shared = jn.Affine(rng.normal(size=(3, 3)), rng.normal(size=3))
    net = jn.Network([shared, jn.Tanh(), shared, jn.Tanh(), jn.Affine(rng.normal(size=(3, 2)))])
    assert len(net.params) == 3 and net.params[0] is shared.W and net.params[1] is shared.b
    assert net.get_flat_params().shape == (3 * 3 + 3 + 3 * 2,)
    X = rng.normal(size=(6, 3))
    assert jn.check_param_grads(net, X)
    # the same as two separate copies with their gradients added
    copy = jn.Affine(shared.W, shared.b)
    apart = jn.Network([shared, jn.Tanh(), copy, jn.Tanh(), net.layers[4]])
    G = rng.normal(size=(6, 2))
    together, separate = net.param_grad(X, G), apart.param_grad(X, G)
    np.testing.assert_allclose(together[0], separate[0] + separate[2], rtol=1e-12)
    np.testing.assert_allclose(together[1], separate[1] + separate[3], rtol=1e-12)


def test_modes_of_composite_networks_are_chosen_by_cost(rng):
    tall = jn.Network([jn.Affine(rng.normal(size=(1, 8))), jn.Residual(jn.Network([jn.Affine(rng.normal(size=(8, 8))), jn.Tanh()])),
                       jn.Parallel([jn.Affine(rng.normal(size=(8, 100))), jn.Affine(rng.normal(size=(8, 100)))])])
    costs = tall.mode_costs()
    assert costs["forward"] < costs["reverse"]
    x = rng.normal(size=(3, 1))
    assert np.array_equal(tall.jacobian(x), tall.jacobian(x, mode="forward"))


# --- the contract ------------------------------------------------------------------


class WrongWidthBackward(jn.Layer):
    d_in, d_out = 3, 2

    def forward(self, x):
        return x[..., :2] * 2, None

    def backward(self, dy, cache):
        return np.zeros(dy.shape[:-1] + (2,))  # should be 3 wide

    def tangent(self, dx, cache):
        return dx[..., :2] * 2


class WrongWidthTangent(WrongWidthBackward):
    def backward(self, dy, cache):
        out = np.zeros(dy.shape[:-1] + (3,))
        out[..., :2] = 2 * dy
        return out

    def tangent(self, dx, cache):
        return dx * 2  # should be 2 wide


class WrongWidthForward(jn.Layer):
    def forward(self, x):
        return x[..., :-1], None  # drops a column although it claims to keep the width

    def backward(self, dy, cache):
        return dy


def test_a_wrong_backward_shape_is_named(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), WrongWidthBackward()])
    with pytest.raises(ValueError, match=r"WrongWidthBackward.jacobian returned an array of shape \(4, 2, 2\); expected \(4, 2, 3\)"):
        net.jacobian(rng.normal(size=(4, 2)), mode="reverse")
    with pytest.raises(ValueError, match=r"WrongWidthBackward.backward returned an array of shape \(4, 1, 2\); expected \(4, 1, 3\)"):
        net.vjp(rng.normal(size=(4, 2)), np.ones(2))


def test_a_wrong_tangent_shape_is_named(rng):
    net = jn.Network([WrongWidthTangent(), jn.Affine(rng.normal(size=(2, 3)))])
    with pytest.raises(ValueError, match=r"WrongWidthTangent.tangent returned an array of shape \(4, 3, 3\); expected \(4, 3, 2\)"):
        net.jacobian(rng.normal(size=(4, 3)), mode="forward")


def test_the_layer_that_returns_the_wrong_width_is_named(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 4))), WrongWidthForward(), jn.Affine(rng.normal(size=(4, 1)))])
    with pytest.raises(ValueError, match=r"layer 1 \(WrongWidthForward\) returned shape \(5, 3\) for an input of shape \(5, 4\)"):
        net.forward_backward(rng.normal(size=(5, 2)))


def test_composites_refuse_what_they_cannot_be(rng):
    with pytest.raises(ValueError, match="Residual needs a block whose output width equals its input width"):
        jn.Residual(jn.Affine(rng.normal(size=(3, 4))))
    with pytest.raises(TypeError, match="Residual block must be a jacobian_np.Layer; got list"):
        jn.Residual([jn.Tanh()])
    with pytest.raises(ValueError, match="Parallel branches must take the same input width; got branch 0: 3, branch 1: 2"):
        jn.Parallel([jn.Affine(np.ones((3, 1))), jn.Affine(np.ones((2, 1)))])
    with pytest.raises(ValueError, match="Parallel needs at least one branch"):
        jn.Parallel([])
    with pytest.raises(TypeError, match="layer 0 is the class Network"):
        jn.Network([jn.Network])
    with pytest.raises(ValueError, match=r"layer 1 \(Network\) expects d_in = 3, but layer 0 \(Affine\) outputs width 2"):
        jn.Network([jn.Affine(np.ones((1, 2))), jn.Network([jn.Affine(np.ones((3, 1)))])])


def test_missing_rules_inside_composites_are_named(rng):
    class NoTangent(jn.Layer):
        def forward(self, x):
            return 2 * x, None

        def backward(self, dy, cache):
            return 2 * dy

    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), jn.Residual(jn.Network([jn.Tanh(), NoTangent()]))])
    with pytest.raises(NotImplementedError, match=r"layer 1 \(Residual\) > block \(Network\) > layer 1 \(NoTangent\) lacks tangent"):
        net.jacobian(np.ones(2), mode="forward")
    np.testing.assert_allclose(net.jacobian(np.ones(2)), jn.numerical_jacobian(net.forward, np.ones(2)), rtol=1e-7)
