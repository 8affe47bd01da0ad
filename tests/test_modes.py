"""Forward and reverse mode, the automatic choice, jvp/vjp, and chunking."""

import tracemalloc

import numpy as np
import pytest
from test_network import random_network, reference_jacobian

import jacobian_np as jn


@pytest.fixture
def budget():
    """Restore the memory budget after a test that changes it."""
    previous = jn.get_memory_budget()
    yield
    jn.set_memory_budget(previous)


def mlp(rng, widths, hidden=jn.Tanh, out=None):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(jn.Affine(rng.normal(0, 1 / np.sqrt(a), (a, b)), rng.normal(0, 0.1, b)))
        if i < len(widths) - 2:
            layers.append(hidden())
        elif out is not None:
            layers.append(out())
    return jn.Network(layers)


# --- the modes agree ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_forward_mode_matches_reference_on_random_architectures(seed):
    rng = np.random.default_rng(seed)
    net = random_network(rng)
    X = rng.normal(size=(6, net.d_in))
    J_forward = net.jacobian(X, mode="forward")
    np.testing.assert_allclose(J_forward, net.jacobian(X, mode="reverse"), rtol=1e-12, atol=1e-14)
    for i in (0, 5):
        np.testing.assert_allclose(J_forward[i], reference_jacobian(net.layers, X[i])[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(net.jacobian(X[2], mode="forward"), J_forward[2], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("mode", ["forward", "reverse", "auto"])
@pytest.mark.parametrize("shape", [(3,), (5, 3), (0, 3)])
def test_every_mode_gives_a_writable_c_contiguous_result_of_the_documented_shape(mode, shape, rng):
    net = jn.Network([jn.Affine(rng.normal(size=(3, 4))), jn.Sigmoid(), jn.Affine(rng.normal(size=(4, 2)))])
    y, J = net.forward_backward(np.ones(shape), mode=mode)
    assert J.shape == shape[:-1] + (2, 3)
    assert y.shape == shape[:-1] + (2,)
    assert J.flags.writeable and J.flags.c_contiguous


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_single_affine_jacobian_is_a_copy_in_both_modes(mode, rng):
    layer = jn.Affine(rng.normal(size=(3, 2)))
    W = layer.W.copy()
    J = jn.Network([layer]).jacobian(np.ones(3), mode=mode)
    J[...] = 0
    np.testing.assert_array_equal(layer.W, W)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_activation_only_network_in_both_modes(mode, rng):
    net = jn.Network([jn.Tanh(), jn.Sigmoid()])
    x = rng.normal(size=(3, 4))
    J = net.jacobian(x, mode=mode)
    s = 1 / (1 + np.exp(-np.tanh(x)))
    expected = s * (1 - s) * (1 - np.tanh(x) ** 2)
    np.testing.assert_allclose(np.diagonal(J, axis1=1, axis2=2), expected, rtol=1e-12)
    assert np.count_nonzero(J - np.apply_along_axis(np.diag, 1, np.diagonal(J, axis1=1, axis2=2))) == 0


def test_float32_stays_float32_in_forward_mode(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(3, 4)).astype(np.float32)), jn.Tanh()])
    y, J = net.forward_backward(rng.normal(size=(5, 3)).astype(np.float32), mode="forward")
    assert y.dtype == J.dtype == np.float32


# --- the automatic choice -----------------------------------------------------------


def test_auto_picks_by_the_widths(rng):
    pinn = mlp(rng, [1, 50, 50, 50, 501])
    classifier = mlp(rng, [500, 100, 10], jn.ReLU, jn.Softmax)
    wide = mlp(rng, [64, 256, 256, 32])
    assert pinn.mode_costs()["forward"] < pinn.mode_costs()["reverse"]
    assert classifier.mode_costs()["forward"] > classifier.mode_costs()["reverse"]
    assert wide.mode_costs()["forward"] > wide.mode_costs()["reverse"]
    # the choice is the one the costs say: auto mode gives that mode's result to the bit
    for net, mode in ((pinn, "forward"), (classifier, "reverse"), (wide, "reverse")):
        x = rng.normal(size=(3, net.d_in))
        assert np.array_equal(net.jacobian(x), net.jacobian(x, mode=mode))


def test_mode_costs_count_multiply_adds(rng):
    net = jn.Network([jn.Affine(np.ones((2, 3))), jn.Tanh(), jn.Affine(np.ones((3, 4)))])
    # reverse: seed W2.T (3*4), then 4 rows through Tanh (4*3) and Affine 2->3 (4*2*3)
    # forward: seed W1 (2*3), then 2 tangents through Tanh (2*3) and Affine 3->4 (2*3*4), transpose (4*2)
    assert net.mode_costs() == {"forward": 6 + 6 + 24 + 8, "reverse": 12 + 12 + 24}


def test_auto_uses_reverse_when_forward_mode_is_unavailable(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(1, 30))), BackwardOnly(), jn.Affine(rng.normal(size=(30, 40)))])
    assert net.mode_costs()["forward"] is None
    X = rng.normal(size=(4, 1))
    np.testing.assert_allclose(net.jacobian(X), net.jacobian(X, mode="reverse"))


# --- errors -------------------------------------------------------------------------


class BackwardOnly(jn.Layer):
    """A user layer without tangent: reverse mode only."""

    def forward(self, x):
        return 2 * x, None

    def backward(self, dy, cache):
        return 2 * dy


def test_unknown_mode_lists_the_valid_ones(rng):
    net = mlp(rng, [2, 3])
    with pytest.raises(ValueError, match=r"mode must be one of 'auto', 'forward', 'reverse'; got 'backward'"):
        net.jacobian(np.ones(2), mode="backward")


def test_forward_mode_names_the_layer_without_tangent(rng):
    net = jn.Network([jn.Affine(rng.normal(size=(2, 3))), BackwardOnly(), jn.Tanh()])
    with pytest.raises(NotImplementedError, match=r"forward mode needs Layer.tangent: layer 1 \(BackwardOnly\) lacks tangent"):
        net.jacobian(np.ones(2), mode="forward")
    with pytest.raises(NotImplementedError, match=r"Network.jvp needs Layer.tangent: layer 1 \(BackwardOnly\) lacks tangent"):
        net.jvp(np.ones(2), np.ones(2))
    # forward mode pushes tangents through every layer, the first one too (so that an
    # overridden tangent is what it computes); auto mode falls back to reverse mode
    first = jn.Network([BackwardOnly(), jn.Affine(rng.normal(size=(2, 3)))])
    with pytest.raises(NotImplementedError, match=r"layer 0 \(BackwardOnly\) lacks tangent"):
        first.jacobian(np.ones(2), mode="forward")
    assert first.mode_costs()["forward"] is None
    np.testing.assert_allclose(first.jacobian(np.ones(2)), first.jacobian(np.ones(2), mode="reverse"))


@pytest.mark.parametrize(
    "chunk_size, error, match",
    [
        (0, ValueError, "chunk_size to be a positive integer; got 0"),
        (-3, ValueError, "chunk_size to be a positive integer; got -3"),
        (2.5, TypeError, "chunk_size to be a positive integer; got 2.5"),
        (True, TypeError, "chunk_size to be a positive integer; got True"),
        ("8", TypeError, "chunk_size to be a positive integer; got '8'"),
    ],
)
def test_bad_chunk_size(chunk_size, error, match, rng):
    net = mlp(rng, [2, 3])
    with pytest.raises(error, match=match):
        net.jacobian(np.ones((4, 2)), chunk_size=chunk_size)


def test_bad_memory_budget(budget):
    with pytest.raises(ValueError, match="nbytes to be a positive integer; got 0"):
        jn.set_memory_budget(0)
    with pytest.raises(TypeError, match="nbytes to be a positive integer; got 1.5"):
        jn.set_memory_budget(1.5)


# --- chunking -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["forward", "reverse"])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 10, 50])
def test_chunked_equals_unchunked(mode, chunk_size, rng):
    net = mlp(rng, [3, 6, 6, 4])
    X = rng.normal(size=(10, 3))
    y, J = net.forward_backward(X, mode=mode, chunk_size=len(X))
    y_chunked, J_chunked = net.forward_backward(X, mode=mode, chunk_size=chunk_size)
    np.testing.assert_allclose(J_chunked, J, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(y_chunked, y, rtol=1e-13, atol=1e-15)


class Recorder(jn.Identity):
    """The identity, recording the batch sizes it sees."""

    def __init__(self):
        self.calls = []

    def f(self, x):
        self.calls.append(len(x))
        return x.copy()


def test_memory_budget_sets_the_chunks(budget, rng):
    recorder = Recorder()
    net = jn.Network([recorder, *mlp(rng, [3, 6, 4]).layers])
    X = rng.normal(size=(10, 3))
    J = net.jacobian(X)
    calls = recorder.calls
    calls.clear()
    previous = jn.set_memory_budget(1)  # one sample per chunk
    np.testing.assert_allclose(net.jacobian(X), J, rtol=1e-13, atol=1e-15)
    assert calls == [1] * 10
    jn.set_memory_budget(previous)
    calls.clear()
    net.jacobian(X)
    assert calls == [10]


def test_peak_memory_of_w5_is_at_most_twice_the_jacobian(rng):
    """64 -> 256 -> 256 -> 32 tanh at batch 4,096: J is 64 MiB; unchunked, the
    intermediates alone would be over 800 MiB."""
    net = mlp(rng, [64, 256, 256, 32])
    X = rng.normal(size=(4096, 64))
    tracemalloc.start()
    try:
        J = net.jacobian(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert J.shape == (4096, 32, 64)
    assert peak <= 2 * J.nbytes, f"peak {peak / 2**20:.0f} MiB for J of {J.nbytes / 2**20:.0f} MiB"


# --- jvp and vjp --------------------------------------------------------------------


@pytest.fixture
def net(rng):
    return jn.Network(
        [
            jn.Affine(rng.normal(size=(3, 5)), rng.normal(size=5)),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(5, 4))),
            jn.Softmax(),
        ]
    )


def test_jvp_and_vjp_against_the_jacobian(net, rng):
    X, V, U = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 4))
    J = net.jacobian(X)
    y, Jv = net.jvp(X, V)
    y2, uJ = net.vjp(X, U)
    np.testing.assert_allclose(y, net.forward(X), rtol=1e-15)
    np.testing.assert_allclose(y2, y, rtol=1e-15)
    np.testing.assert_allclose(Jv, np.einsum("ijk,ik->ij", J, V), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(uJ, np.einsum("ij,ijk->ik", U, J), rtol=1e-12, atol=1e-15)


def test_jvp_and_vjp_for_one_point_and_a_shared_direction(net, rng):
    X, v, u = rng.normal(size=(6, 3)), rng.normal(size=3), rng.normal(size=4)
    J = net.jacobian(X)
    _, Jv = net.jvp(X[1], v)
    _, uJ = net.vjp(X[1], u)
    assert Jv.shape == (4,) and uJ.shape == (3,)
    np.testing.assert_allclose(Jv, J[1] @ v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(uJ, u @ J[1], rtol=1e-12, atol=1e-15)
    _, Jv_all = net.jvp(X, v)  # one direction for every sample
    _, uJ_all = net.vjp(X, u)
    np.testing.assert_allclose(Jv_all, J @ v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(uJ_all, u @ J, rtol=1e-12, atol=1e-15)


def test_jvp_matches_finite_differences_on_every_layer_in_a_network(net, rng):
    x, v = rng.normal(size=3), rng.normal(size=3)
    h = 1e-6
    _, Jv = net.jvp(x, v)
    np.testing.assert_allclose(Jv, (net.forward(x + h * v) - net.forward(x - h * v)) / (2 * h), rtol=1e-6, atol=1e-9)


def test_jvp_vjp_shape_errors(net):
    with pytest.raises(ValueError, match=r"Network.jvp expects v of shape \(2, 3\) or \(3,\); got shape \(2, 4\)"):
        net.jvp(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"Network.vjp expects u of shape \(4,\); got shape \(3,\)"):
        net.vjp(np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="v must be a real numeric array; got dtype <U1"):
        net.jvp(np.ones(3), ["a", "b", "c"])


def test_jvp_vjp_leave_their_arguments_unchanged(net, rng):
    X, V, U = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 4))
    copies = [a.copy() for a in (X, V, U)]
    net.jvp(X, V)
    net.vjp(X, U)
    for a, b in zip((X, V, U), copies):
        np.testing.assert_array_equal(a, b)


def test_jacobian_skips_the_values_of_final_affine_layers_in_forward_mode(rng):
    class CountingAffine(jn.Affine):
        calls = 0

        def forward(self, x):
            CountingAffine.calls += 1
            return super().forward(x)

    net = jn.Network([jn.Affine(rng.normal(size=(1, 5))), jn.Tanh(), CountingAffine(rng.normal(size=(5, 7)))])
    X = rng.normal(size=(4, 1))
    J = net.jacobian(X, mode="forward")
    assert CountingAffine.calls == 0  # its value is not needed for J
    y, J_with_value = net.forward_backward(X, mode="forward")
    assert CountingAffine.calls == 1
    np.testing.assert_array_equal(J, J_with_value)
    np.testing.assert_allclose(J, net.jacobian(X, mode="reverse"), rtol=1e-13)


# --- blocks updated in place --------------------------------------------------------


class KeepsItsResult(jn.Layer):
    """A user layer whose backward and tangent return an array it keeps."""

    def __init__(self):
        self.kept, self.as_returned = [], []

    def forward(self, x):
        return x.copy(), None

    def backward(self, dy, cache):
        self.kept.append(dy.copy())
        self.as_returned.append(dy.copy())
        return self.kept[-1]

    tangent = backward


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_arrays_a_user_layer_returns_are_not_updated_in_place(mode, rng):
    keeper = KeepsItsResult()
    affine = jn.Affine(rng.normal(size=(3, 3)))
    net = jn.Network([affine, jn.Tanh(), keeper, jn.Tanh(), affine, jn.Sigmoid()])
    X = rng.normal(size=(5, 3))
    J = net.jacobian(X, mode=mode)
    reference = jn.Network([affine, jn.Tanh(), jn.Tanh(), affine, jn.Sigmoid()]).jacobian(X, mode=mode)
    np.testing.assert_allclose(J, reference, rtol=1e-13)
    assert keeper.kept
    for kept, as_returned in zip(keeper.kept, keeper.as_returned):
        np.testing.assert_array_equal(kept, as_returned)  # not scaled by the Tanh next to it


def test_in_place_updates_keep_the_promoted_dtype(rng):
    """float32 weights with a float64 input: the activations' float64 derivatives
    promote the blocks to float64, as an out-of-place product would."""
    ws = [rng.normal(size=(3, 8)), rng.normal(size=(8, 8)), rng.normal(size=(8, 8)), rng.normal(size=(8, 2))]
    a, b, c, d = (jn.Affine(w.astype(np.float32)) for w in ws)
    net = jn.Network([a, b, jn.Tanh(), c, d])  # two affine layers in a row at either end
    X = rng.normal(size=(6, 3))
    J_forward, J_reverse = net.jacobian(X, mode="forward"), net.jacobian(X, mode="reverse")
    assert J_forward.dtype == J_reverse.dtype == np.float64
    np.testing.assert_allclose(J_forward, J_reverse, rtol=1e-5)
