import numpy as np
import pytest

import jacobian_np as jn


def test_forward_is_x_at_W_plus_b(rng):
    W, b, x = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(5, 3))
    y, _ = jn.Affine(W, b).forward(x)
    np.testing.assert_allclose(y, x @ W + b, rtol=1e-14)
    np.testing.assert_allclose(jn.Affine(W).forward(x)[0], x @ W, rtol=1e-14)


def test_backward_over_extra_batch_axes_is_dy_at_W_transposed(rng):
    W = rng.normal(size=(3, 4))
    dy = rng.normal(size=(2, 5, 6, 4))
    dx = jn.Affine(W).backward(dy, None)
    np.testing.assert_allclose(dx, np.einsum("...j,kj->...k", dy, W), rtol=1e-13)


def test_integer_weights_become_float64():
    layer = jn.Affine(np.array([[1, 2]]), np.array([0, 1]))
    assert layer.W.dtype == layer.b.dtype == np.float64


def test_weight_and_bias_share_the_promoted_dtype():
    layer = jn.Affine(np.ones((2, 2), np.float32), np.ones(2, np.float64))
    assert layer.W.dtype == layer.b.dtype == np.float64
    layer = jn.Affine(np.ones((2, 2), np.float32), np.ones(2, np.float32))
    assert layer.W.dtype == layer.b.dtype == np.float32


@pytest.mark.parametrize(
    "W, b, error, match",
    [
        (np.ones(3), None, ValueError, r"Affine W must have shape \(any, any\); got shape \(3,\)"),
        (np.ones((2, 3)), np.ones(2), ValueError, r"Affine b must have shape \(3,\); got shape \(2,\)"),
        (np.ones((2, 3)), np.ones((3, 1)), ValueError, r"Affine b must have shape \(3,\); got shape \(3, 1\)"),
        (np.ones((2, 3)), np.ones((1, 2)), ValueError, r"Affine b must have shape \(3,\); got shape \(1, 2\)"),
        (np.ones((2, 3)), np.ones((1, 1, 3)), ValueError, r"Affine b must have shape \(3,\); got shape \(1, 1, 3\)"),
        (np.ones((0, 3)), None, ValueError, r"Affine W must not have a zero-length axis; got shape \(0, 3\)"),
        (np.array([[1.0, np.nan]]), None, ValueError, "Affine W must be finite"),
        (np.ones((1, 2)), np.array([np.inf, 0]), ValueError, "Affine b must be finite"),
        (np.ones((2, 2), complex), None, TypeError, "Affine W must be real; got complex dtype"),
        ([["a", "b"]], None, TypeError, r"Affine W must be a real numeric array; got dtype <U1"),
    ],
)
def test_bad_parameters(W, b, error, match):
    with pytest.raises(error, match=match):
        jn.Affine(W, b)


def test_a_row_bias_is_flattened(rng):
    """``b`` of shape ``(1, d_out)``, the layout of hand-written ``x @ W + b`` code."""
    W, b_row = rng.normal(size=(2, 3)), rng.normal(size=(1, 3))
    b_before = b_row.copy()
    layer = jn.Affine(W, b_row)
    assert layer.b.shape == (3,) and not np.shares_memory(layer.b, b_row)
    x = rng.normal(size=(4, 2))
    np.testing.assert_array_equal(layer.forward(x)[0], x @ W + b_row)
    assert layer.forward(x[0])[0].shape == (3,)  # one point stays one point
    layer.b[...] = 0.0
    np.testing.assert_array_equal(b_row, b_before)


def test_wrong_input_width_is_named(rng):
    with pytest.raises(ValueError, match=r"Affine expects x with last axis 3; got shape \(4, 5\)"):
        jn.Affine(np.ones((3, 2))).forward(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"Affine.backward expects dy with last axis 2; got shape \(4, 3\)"):
        jn.Affine(np.ones((3, 2))).backward(np.ones((4, 3)), None)


def test_repr():
    assert repr(jn.Affine(np.ones((3, 2)))) == "Affine(d_in=3, d_out=2)"


def test_jacobian_follows_the_weights_when_changed_or_replaced(rng):
    layer = jn.Affine(rng.normal(size=(2, 3)))
    x = rng.normal(size=2)
    y, cache = layer.forward(x)
    layer.W[0, 0] = 5.0  # in place
    assert layer.jacobian(y, cache)[0, 0] == 5.0
    layer.W = rng.normal(size=(2, 3))  # replaced
    np.testing.assert_array_equal(layer.jacobian(y, cache), layer.W.T)
    np.testing.assert_array_equal(jn.Network([layer]).jacobian(x), layer.W.T)


def test_jacobian_is_a_read_only_view(rng):
    layer = jn.Affine(rng.normal(size=(2, 3)))
    y, cache = layer.forward(np.ones((4, 2)))
    J = layer.jacobian(y, cache)
    assert J.shape == (4, 3, 2) and not J.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        J[0, 0, 0] = 1.0
