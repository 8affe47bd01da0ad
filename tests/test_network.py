"""Network: shapes, dtypes, input contract, errors, and random architectures against
an independent reference implementation written here."""

import numpy as np
import pytest

import jacobian_np as jn

# --- an independent reference: per-sample products of explicit layer Jacobians ------


def reference_jacobian(layers, x):
    """J of one point by the chain rule with dense per-layer Jacobian matrices.

    Deliberately naive and unshared with the library: textbook derivative formulas
    (1 - tanh^2, s (1 - s)), explicit matrices, a Python loop over layers.
    """
    J = np.eye(x.shape[-1])
    for layer in layers:
        if isinstance(layer, jn.Affine):
            local = layer.W.T
            x = x @ layer.W + (0 if layer.b is None else layer.b)
        elif isinstance(layer, jn.Tanh):
            local = np.diag(1 - np.tanh(x) ** 2)
            x = np.tanh(x)
        elif isinstance(layer, jn.Sigmoid):
            s = 1 / (1 + np.exp(-x))
            local = np.diag(s * (1 - s))
            x = s
        elif isinstance(layer, jn.ReLU):
            local = np.diag((x > 0).astype(float))
            x = np.maximum(x, 0)
        elif isinstance(layer, jn.Softmax):
            e = np.exp(x - x.max())
            s = e / e.sum()
            local = np.diag(s) - np.outer(s, s)
            x = s
        else:
            raise AssertionError(f"no reference for {layer!r}")
        J = local @ J
    return x, J


ACTIVATIONS = [jn.Tanh, jn.Sigmoid, jn.ReLU]


def random_network(rng):
    depth = rng.integers(1, 4)
    widths = rng.integers(1, 7, size=depth + 1)
    layers = []
    for i in range(depth):
        bias = rng.normal(size=widths[i + 1]) if rng.random() < 0.7 else None
        layers.append(jn.Affine(rng.normal(size=(widths[i], widths[i + 1])), bias))
        if i < depth - 1 or rng.random() < 0.5:
            layers.append(ACTIVATIONS[rng.integers(len(ACTIVATIONS))]())
    if rng.random() < 0.3:
        layers.append(jn.Softmax())
    while rng.random() < 0.3:  # stacked trailing activations, also after Softmax
        layers.append(ACTIVATIONS[rng.integers(len(ACTIVATIONS))]())
    return jn.Network(layers)


@pytest.mark.parametrize("seed", range(40))
def test_random_architectures_match_reference(seed):
    rng = np.random.default_rng(seed)
    net = random_network(rng)
    X = rng.normal(size=(7, net.d_in))
    Y, J = net.forward_backward(X)
    assert J.shape == (7, net.d_out, net.d_in)
    for i in range(len(X)):
        y_ref, J_ref = reference_jacobian(net.layers, X[i])
        np.testing.assert_allclose(Y[i], y_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(J[i], J_ref, rtol=1e-9, atol=1e-12)
    # one point gives the same as the matching row of the batch
    y0, J0 = net.forward_backward(X[3])
    np.testing.assert_allclose(J0, J[3], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(y0, Y[3], rtol=1e-13, atol=1e-15)


# --- shapes -------------------------------------------------------------------------


@pytest.fixture
def net(rng):
    """2 -> 5 -> 5 -> 3: non-square so a transposed Jacobian has the wrong shape."""
    return jn.Network(
        [
            jn.Affine(rng.normal(size=(2, 5)), rng.normal(size=5)),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(5, 5))),
            jn.Sigmoid(),
            jn.Affine(rng.normal(size=(5, 3)), rng.normal(size=3)),
        ]
    )


def test_shapes_for_one_point_a_batch_and_an_empty_batch(net, rng):
    y, J = net.forward_backward(rng.normal(size=2))
    assert (y.shape, J.shape) == ((3,), (3, 2))
    Y, J = net.forward_backward(rng.normal(size=(4, 2)))
    assert (Y.shape, J.shape) == ((4, 3), (4, 3, 2))
    Y, J = net.forward_backward(np.zeros((0, 2)))
    assert (Y.shape, J.shape) == ((0, 3), (0, 3, 2))
    assert net.forward(np.zeros((0, 2))).shape == (0, 3)


def test_forward_backward_value_equals_forward(net, rng):
    X = rng.normal(size=(6, 2))
    np.testing.assert_array_equal(net.forward_backward(X)[0], net.forward(X))


def test_widths(net):
    assert (net.d_in, net.d_out) == (2, 3)
    assert jn.Network([jn.Tanh()]).d_in is None
    assert jn.Network([jn.ReLU(), jn.Affine(np.ones((4, 2))), jn.Softmax()]).d_in == 4
    assert jn.Network([jn.ReLU(), jn.Affine(np.ones((4, 2))), jn.Softmax()]).d_out == 2


def test_activation_only_network_accepts_any_width(rng):
    x = rng.normal(size=(3, 7))
    Y, J = jn.Network([jn.Tanh()]).forward_backward(x)
    assert J.shape == (3, 7, 7)
    np.testing.assert_allclose(np.diagonal(J, axis1=1, axis2=2), 1 - np.tanh(x) ** 2)


def test_single_affine_jacobian_is_a_writable_copy(rng):
    W = rng.normal(size=(3, 2))
    layer = jn.Affine(W)
    y, J = jn.Network([layer]).forward_backward(rng.normal(size=(4, 3)))
    np.testing.assert_array_equal(J, np.broadcast_to(W.T, (4, 2, 3)))
    J[...] = 0.0  # must not write into the layer's weights
    np.testing.assert_array_equal(layer.W, W)


# --- dtypes -------------------------------------------------------------------------


def float32_net(rng):
    return jn.Network(
        [
            jn.Affine(rng.normal(size=(2, 4)).astype(np.float32), np.zeros(4, np.float32)),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(4, 3)).astype(np.float32)),
            jn.Softmax(),
        ]
    )


def test_float32_stays_float32(rng):
    net = float32_net(rng)
    y, J = net.forward_backward(rng.normal(size=(5, 2)).astype(np.float32))
    assert y.dtype == J.dtype == np.float32


def test_dtype_follows_numpy_promotion(net, rng):
    y, J = net.forward_backward(rng.normal(size=(5, 2)).astype(np.float32))
    assert y.dtype == J.dtype == np.float64  # float64 weights win
    y, J = float32_net(rng).forward_backward(rng.normal(size=(5, 2)))
    assert y.dtype == J.dtype == np.float64  # float64 input wins


@pytest.mark.parametrize("x", [[1, 2], [[1, 0], [0, 1]], [True, False]])
def test_integer_and_boolean_inputs_become_float64(net, x):
    y, J = net.forward_backward(np.array(x))
    assert J.dtype == np.float64
    np.testing.assert_allclose(J, net.forward_backward(np.array(x, dtype=float))[1])


# --- the caller's arrays ------------------------------------------------------------


def test_inputs_and_weights_are_never_modified(rng):
    W1, b1, W2 = rng.normal(size=(2, 4)), rng.normal(size=4), rng.normal(size=(4, 3))
    for a in (W1, b1, W2):
        a.setflags(write=False)  # any write raises
    net = jn.Network([jn.Affine(W1, b1), jn.Sigmoid(), jn.Affine(W2), jn.Softmax()])
    X = rng.normal(size=(5, 2))
    X_before = X.copy()
    X.setflags(write=False)
    net.forward(X)
    net.forward_backward(X)
    net.forward_backward(X[0])
    np.testing.assert_array_equal(X, X_before)


def test_weights_are_copied(rng):
    W = rng.normal(size=(2, 3))
    layer = jn.Affine(W)
    W[0, 0] = 100.0
    assert layer.W[0, 0] != 100.0


def test_non_contiguous_inputs(net, rng):
    wide = rng.normal(size=(6, 4))
    X = wide[::2, ::2]  # strided in both axes
    assert not X.flags.c_contiguous
    expected = net.forward_backward(np.ascontiguousarray(X))
    # equal up to rounding, not bit for bit: NumPy 1.24 to 2.0 may take another
    # BLAS path for strided operands
    for layout in (X, np.asfortranarray(X)):
        for got, want in zip(net.forward_backward(layout), expected):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_row_does_not_affect_other_rows(net, rng, bad):
    X = rng.normal(size=(4, 2))
    Y_clean, J_clean = net.forward_backward(X)
    X[1, 0] = bad
    with np.errstate(invalid="ignore"):  # inf - inf inside that row is allowed to warn
        Y, J = net.forward_backward(X)
    rows = [0, 2, 3]
    np.testing.assert_array_equal(Y[rows], Y_clean[rows])
    np.testing.assert_array_equal(J[rows], J_clean[rows])


def test_nan_input_gives_nan_jacobian_through_relu(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), jn.ReLU(), jn.Affine(rng.normal(size=(3, 1)))])
    y, J = net.forward_backward(np.array([np.nan, 1.0]))
    assert np.isnan(y).all() and np.isnan(J).all()


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, match",
    [
        (1.0, r"shape \(d_in,\) for one point or \(n, d_in\) for a batch; got a 0-D array"),
        (np.zeros((2, 3, 2)), r"got a 3-D array of shape \(2, 3, 2\)"),
        (np.zeros(3), r"Network expects x with last axis 2; got shape \(3,\)"),
        (np.zeros((4, 5)), r"Network expects x with last axis 2; got shape \(4, 5\)"),
    ],
)
def test_bad_input_shape_is_a_value_error(net, x, match):
    with pytest.raises(ValueError, match=match):
        net.forward_backward(x)
    with pytest.raises(ValueError, match=match):
        net.forward(x)


@pytest.mark.parametrize(
    "x, match",
    [
        (np.array(["1", "2"]), r"x must be a real numeric array; got dtype <U1"),
        (np.array([1 + 2j, 0]), r"x must be real; got complex dtype complex128"),
        (np.array([1.0, 2.0], dtype=object), r"x must be a real numeric array; got dtype object"),
    ],
)
def test_bad_input_type_is_a_type_error(net, x, match):
    with pytest.raises(TypeError, match=match):
        net.forward_backward(x)


def test_empty_network_is_rejected():
    with pytest.raises(ValueError, match="Network needs at least one layer; got none"):
        jn.Network([])


def test_non_layer_is_rejected():
    with pytest.raises(TypeError, match=r"layer 1 must be a jacobian_np.Layer; got ufunc"):
        jn.Network([jn.Tanh(), np.tanh])


def test_layer_class_instead_of_instance_is_explained():
    with pytest.raises(TypeError, match=r"layer 0 is the class Tanh; pass an instance, Tanh\(...\)"):
        jn.Network([jn.Tanh, jn.Affine(np.ones((2, 2)))])


def test_widths_must_chain():
    layers = [jn.Affine(np.ones((3, 4))), jn.ReLU(), jn.Affine(np.ones((5, 2)))]
    with pytest.raises(
        ValueError, match=r"layer 2 \(Affine\) expects d_in = 5, but layer 1 \(ReLU\) outputs width 4"
    ):
        jn.Network(layers)
    with pytest.raises(
        ValueError, match=r"layer 1 \(Affine\) expects d_in = 3, but layer 0 \(Affine\) outputs width 4"
    ):
        jn.Network([jn.Affine(np.ones((3, 4))), jn.Affine(np.ones((3, 4)))])


def test_repr(net):
    assert repr(net) == (
        "Network([Affine(d_in=2, d_out=5), Tanh(), Affine(d_in=5, d_out=5), Sigmoid(), "
        "Affine(d_in=5, d_out=3)])"
    )
