"""Execution plans (jacobian_np._plans): cached per input shape, always the current weights,
safe across threads, and the same results as the generic passes."""

import threading

import numpy as np
import pytest
from test_network import random_network

import jacobian_np as jn
from jacobian_np import _plans
from jacobian_np._plans import plan_cache_info


def mlp(rng, widths, hidden=jn.Tanh, out=None, dtype=np.float64):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(jn.Affine(rng.normal(size=(a, b)).astype(dtype), rng.normal(size=b).astype(dtype)))
        if i < len(widths) - 2:
            layers.append(hidden())
        elif out is not None:
            layers.append(out())
    return jn.Network(layers)


@pytest.fixture
def plans_off():
    """Call ``plans_off(f)`` to run ``f`` with the generic passes only."""

    def run(f):
        previous = _plans.set_plans_enabled(False)
        try:
            return f()
        finally:
            _plans.set_plans_enabled(previous)

    return run


def assert_same(got, want, dtype=np.float64):
    """Equal up to the rounding of a different summation order (the plan's layout)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = np.max(np.abs(want), initial=1.0)
    tol = 1e-14 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


# --- the same results as the generic passes -------------------------------------------


NETWORKS = {
    "tanh, tanh output": lambda rng: mlp(rng, [2, 5, 5, 2], jn.Tanh, jn.Tanh),
    "tanh, linear output": lambda rng: mlp(rng, [3, 6, 4], jn.Tanh),
    "one input, wide output": lambda rng: mlp(rng, [1, 7, 9], jn.Sigmoid),
    "one output": lambda rng: mlp(rng, [5, 4, 1], jn.GELU),
    "affine only": lambda rng: mlp(rng, [3, 4]),
    "affine after affine": lambda rng: jn.Network(
        [jn.Affine(rng.normal(size=(3, 4))), jn.Affine(rng.normal(size=(4, 5)), rng.normal(size=5)), jn.SiLU(),
         jn.Affine(rng.normal(size=(5, 2))), jn.Affine(rng.normal(size=(2, 2)))]
    ),
    "activations around": lambda rng: jn.Network(
        [jn.Tanh(), jn.Affine(rng.normal(size=(3, 4))), jn.ReLU(), jn.Softplus(), jn.Affine(rng.normal(size=(4, 2))),
         jn.Tanh(), jn.ELU()]
    ),
    "nested network": lambda rng: jn.Network(
        [jn.Affine(rng.normal(size=(3, 4))), jn.Network([jn.Tanh(), jn.Affine(rng.normal(size=(4, 2)))]), jn.Sigmoid()]
    ),
    "float32": lambda rng: mlp(rng, [3, 5, 2], jn.Tanh, dtype=np.float32),
}


@pytest.mark.parametrize("make", NETWORKS.values(), ids=NETWORKS.keys())
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_plans_give_the_results_of_the_generic_passes(make, mode, rng, plans_off):
    net = make(rng)
    for X in (rng.normal(size=(9, net.d_in)), rng.normal(size=net.d_in), np.zeros((0, net.d_in)),
              rng.normal(size=(6, net.d_in)).astype(np.float32)):
        for chunk_size in (None, 4):
            want_y, want_J = plans_off(lambda: net.forward_backward(X, mode=mode, chunk_size=chunk_size))
            y, J = net.forward_backward(X, mode=mode, chunk_size=chunk_size)
            dtype = want_J.dtype
            assert_same(y, want_y, dtype)
            assert_same(J, want_J, dtype)
            assert_same(net.jacobian(X, mode=mode, chunk_size=chunk_size), want_J, dtype)
    assert plan_cache_info(net).generic == 0  # every call above used a plan


@pytest.mark.parametrize("seed", range(30))
def test_plans_on_random_architectures(seed, plans_off):
    rng = np.random.default_rng(seed)
    net = random_network(rng)
    for X in (rng.normal(size=(7, net.d_in)), rng.normal(size=net.d_in)):  # a batch, and one point
        for mode in ("forward", "reverse"):
            want_y, want_J = plans_off(lambda: net.forward_backward(X, mode=mode))
            y, J = net.forward_backward(X, mode=mode)
            assert_same(y, want_y)
            assert_same(J, want_J)
            assert J.flags.c_contiguous and not any(np.shares_memory(J, p) for p in net.params)


def test_plans_go_through_the_chunks_of_the_memory_budget(rng, plans_off):
    net = mlp(rng, [4, 8, 3])
    X = rng.normal(size=(50, 4))
    want = plans_off(lambda: net.jacobian(X))
    previous = jn.set_memory_budget(2000)  # a few samples per chunk, and a last, shorter one
    try:
        assert_same(net.jacobian(X), want)
        assert_same(net.jacobian(X, mode="forward"), want)
    finally:
        jn.set_memory_budget(previous)


# --- caching -------------------------------------------------------------------------


def test_a_second_call_reuses_the_plan(rng):
    net = mlp(rng, [2, 4, 2])
    X = rng.normal(size=(5, 2))
    net.jacobian(X)
    assert plan_cache_info(net)[:3] == (0, 1, 1)
    net.jacobian(X + 1)  # same shape, dtype, quantity and mode
    assert plan_cache_info(net)[:3] == (1, 1, 1)
    net.forward_backward(X)  # another quantity
    net.jacobian(X, mode="forward")  # another mode
    net.jacobian(X[:3])  # another shape
    net.jacobian(X.astype(np.float32))  # another dtype
    assert plan_cache_info(net)[:3] == (1, 5, 5)


def test_the_cache_is_bounded_and_drops_the_least_recently_used(rng):
    net = mlp(rng, [2, 4, 2])
    first = rng.normal(size=(1, 2))
    net.jacobian(first)
    for n in range(2, 2 + _plans.MAX_PLANS):
        net.jacobian(rng.normal(size=(n, 2)))
        net.jacobian(first)  # kept: used again each time
    info = plan_cache_info(net)
    assert info.size == info.maxsize == _plans.MAX_PLANS
    assert info.misses == _plans.MAX_PLANS + 1  # the first shape was never rebuilt
    net.jacobian(rng.normal(size=(2, 2)))  # the least recently used: dropped, so built again
    assert plan_cache_info(net).misses == _plans.MAX_PLANS + 2


# --- the current weights, and the caller's arrays ---------------------------------------


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_a_plan_uses_the_current_weights(mode, rng):
    net = mlp(rng, [3, 5, 5, 2], jn.Tanh, jn.Sigmoid)
    X = rng.normal(size=(6, 3))
    before = net.forward_backward(X, mode=mode)

    def fresh():  # a new network with the same weights: its first call builds its plan anew
        return jn.Network([jn.Affine(l.W, l.b) if isinstance(l, jn.Affine) else type(l)() for l in net.layers])

    for p in net.params:  # in place, as an optimiser does
        p *= 1.5
        p += 0.1
    y, J = net.forward_backward(X, mode=mode)
    assert not np.allclose(J, before[1])
    want_y, want_J = fresh().forward_backward(X, mode=mode)
    assert_same(y, want_y)
    assert_same(J, want_J)
    net.set_flat_params(rng.normal(size=net.get_flat_params().size))
    y, J = net.forward_backward(X, mode=mode)
    want_y, want_J = fresh().forward_backward(X, mode=mode)
    assert_same(y, want_y)
    assert_same(J, want_J)
    assert plan_cache_info(net).misses == 1  # the same plan throughout
    net.layers[0].W = net.layers[0].W * 2  # a new array of the same shape
    assert_same(net.jacobian(X, mode=mode), fresh().jacobian(X, mode=mode))


def test_results_are_never_overwritten_by_a_later_call(rng):
    net = mlp(rng, [2, 4, 3])
    for X1, X2 in ((rng.normal(size=(4, 2)), rng.normal(size=(4, 2))), (rng.normal(size=2), rng.normal(size=2))):
        y1, J1 = net.forward_backward(X1)
        kept = y1.copy(), J1.copy()
        y2, J2 = net.forward_backward(X2)
        np.testing.assert_array_equal(y1, kept[0])
        np.testing.assert_array_equal(J1, kept[1])
        assert not np.shares_memory(J1, J2) and not np.shares_memory(y1, y2)
        J1[...] = 0  # ours to write
        np.testing.assert_array_equal(net.forward_backward(X2)[1], J2)


def test_one_network_from_several_threads(rng, plans_off):
    net = mlp(rng, [3, 16, 16, 2], jn.Tanh, jn.Tanh)
    inputs = [rng.normal(size=(200, 3)) for _ in range(6)]
    wanted = [plans_off(lambda X=X: (net.jacobian(X), net.forward_backward(X, mode="forward"))) for X in inputs]
    results: dict = {}
    start = threading.Barrier(len(inputs))

    def work(k):
        start.wait()
        for _ in range(20):
            got = net.jacobian(inputs[k]), net.forward_backward(inputs[k], mode="forward")
            results.setdefault(k, []).append(got)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, runs in results.items():
        assert len(runs) == 20
        for J, (y, J_forward) in runs:
            assert_same(J, wanted[k][0])
            assert_same(y, wanted[k][1][0])
            assert_same(J_forward, wanted[k][1][1])


# --- where plans do not apply ----------------------------------------------------------


class Doubled(jn.Tanh):
    """Tanh whose backward rule is overridden (twice the true one): the fused pull is dropped."""

    def backward(self, dy, cache):
        return 2 * super().backward(dy, cache)


class Scale(jn.Layer):
    def forward(self, x):
        return 3 * x, None

    def backward(self, dy, cache):
        return 3 * dy

    def tangent(self, dx, cache):
        return 3 * dx


def test_overriding_subclasses_and_user_layers_run_the_generic_passes(rng):
    W1, W2 = rng.normal(size=(2, 4)), rng.normal(size=(4, 3))
    X = rng.normal(size=(5, 2))
    plain = jn.Network([jn.Affine(W1), jn.Tanh(), jn.Affine(W2)])
    doubled = jn.Network([jn.Affine(W1), Doubled(), jn.Affine(W2)])
    # forward mode: Doubled keeps the fused push (its tangent rule is Tanh's): a plan
    assert_same(doubled.jacobian(X, mode="forward"), plain.jacobian(X))
    assert plan_cache_info(doubled).generic == 0
    # reverse mode: its pull is the generic step, so the override is honoured (from it
    # on, the pass runs the layers' own steps)
    assert_same(doubled.jacobian(X, mode="reverse"), 2 * plain.jacobian(X))
    first = jn.Network([Doubled(), jn.Affine(W1.T @ W1)])  # nothing fusable before it
    X4 = rng.normal(size=(5, 4))
    assert_same(first.jacobian(X4, mode="reverse"), 2 * plans_off_jacobian(jn.Network([jn.Tanh(), first[1]]), X4))
    assert plan_cache_info(first).generic == 1
    scaled = jn.Network([jn.Affine(W1), Scale(), jn.Affine(W2)])
    for mode in ("forward", "reverse"):
        assert_same(scaled.jacobian(X, mode=mode), 3 * (W1 @ W2).T[None].repeat(5, axis=0))
    assert plan_cache_info(scaled).generic == 1  # forward mode: a user layer, no plan


def plans_off_jacobian(net, X):
    previous = _plans.set_plans_enabled(False)
    try:
        return net.jacobian(X)
    finally:
        _plans.set_plans_enabled(previous)


SEEDED = {
    "softmax output": lambda rng: mlp(rng, [5, 7, 3], jn.ReLU, jn.Softmax),
    "log-softmax output": lambda rng: mlp(rng, [5, 7, 3], jn.Tanh, jn.LogSoftmax),
    "softmax inside": lambda rng: jn.Network(
        [jn.Affine(rng.normal(size=(3, 4))), jn.Tanh(), jn.Softmax(), jn.Affine(rng.normal(size=(4, 2))), jn.Tanh()]
    ),
    "layer norm and residual": lambda rng: jn.Network(
        [jn.Affine(rng.normal(size=(3, 4))), jn.Tanh(), jn.LayerNorm(4),
         jn.Residual(jn.Network([jn.Affine(rng.normal(size=(4, 4))), jn.Tanh()]))]
    ),
}


@pytest.mark.parametrize("make", SEEDED.values(), ids=SEEDED.keys())
def test_reverse_mode_plans_seeded_by_the_generic_steps_of_the_last_layers(make, rng, plans_off):
    net = make(rng)
    for X in (rng.normal(size=(9, net.d_in)), rng.normal(size=net.d_in), np.zeros((0, net.d_in))):
        for chunk_size in (None, 4):
            want_y, want_J = plans_off(lambda: net.forward_backward(X, mode="reverse", chunk_size=chunk_size))
            y, J = net.forward_backward(X, mode="reverse", chunk_size=chunk_size)
            assert_same(y, want_y)
            assert_same(J, want_J)
            assert_same(net.jacobian(X, mode="reverse", chunk_size=chunk_size), want_J)
    assert plan_cache_info(net).generic == 0


def test_plans_can_be_switched_off(rng):
    net = mlp(rng, [2, 3, 2])
    previous = _plans.set_plans_enabled(False)
    try:
        net.jacobian(rng.normal(size=(3, 2)))
        assert plan_cache_info(net).misses == 0
    finally:
        assert _plans.set_plans_enabled(previous) is False


# --- training through the Jacobian ----------------------------------------------------


@pytest.fixture(params=[False, True], ids=["fresh stacks", "kept stacks"])
def keep_stacks(request, monkeypatch):
    """Training plans built with every call's stacks kept for the next call, as on large
    batches, or (the default on these small ones) fresh for every call."""
    if request.param:
        monkeypatch.setattr(_plans, "_KEEP_BYTES", 0)
    return request.param


def generic_training(net, X, G, plans_off):
    def run():
        J, pullback = net.jacobian_and_pullback(X)
        return J, pullback(G), net.jacobian_param_grad(X, G)

    return plans_off(run)


def assert_same_grads(got, want, dtype=np.float64):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_same(g, w, dtype)


@pytest.mark.parametrize("make", NETWORKS.values(), ids=NETWORKS.keys())
def test_training_plans_give_the_results_of_the_generic_passes(make, rng, plans_off, keep_stacks):
    net = make(rng)
    for X in (rng.normal(size=(9, net.d_in)), rng.normal(size=net.d_in), np.zeros((0, net.d_in)),
              rng.normal(size=(6, net.d_in)).astype(np.float32)):
        J_shape = X.shape[:-1] + (net.d_out, net.d_in)
        G = rng.normal(size=J_shape)
        want_J, want_pullback, want_param_grad = generic_training(net, X, G, plans_off)
        J, pullback = net.jacobian_and_pullback(X)
        assert_same(J, want_J, want_J.dtype)
        assert_same_grads(pullback(G), want_pullback, want_J.dtype)
        assert_same_grads(net.jacobian_param_grad(X, G), want_param_grad, want_J.dtype)
    assert plan_cache_info(net).generic == 0


def test_a_pullback_keeps_its_own_state_and_the_current_weights(rng, plans_off, keep_stacks):
    net = mlp(rng, [2, 5, 5, 2], jn.Tanh)
    X1, X2 = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
    G = rng.normal(size=(8, 2, 2))
    _, want, _ = generic_training(net, X1, G, plans_off)
    J1, pullback1 = net.jacobian_and_pullback(X1)
    kept = J1.copy()
    net.jacobian_and_pullback(X2)[1](G)  # another call, and its pullback, in between
    np.testing.assert_array_equal(J1, kept)
    assert_same_grads(pullback1(G), want)
    assert_same_grads(pullback1(G), want)  # twice: the same
    for p in net.params:
        p *= 0.5
    _, want, want_param_grad = generic_training(net, X1, G, plans_off)
    assert_same_grads(net.jacobian_and_pullback(X1)[1](G), want)
    assert_same_grads(net.jacobian_param_grad(X1, G), want_param_grad)
    del pullback1
    wants = [generic_training(net, X, G, plans_off)[1] for X in (X1, X2)]
    for k in (0, 1, 0, 1, 0):  # as a loop does: the previous pullback alive during the next call
        J, pullback = net.jacobian_and_pullback((X1, X2)[k])
        assert_same_grads(pullback(G), wants[k])
    assert_same_grads(pullback(G), wants[0])
    entry = _plans._pool.entries.get((id(_plans.training_plan_for(net, X1)), "stacks"))
    # this thread's kept stacks, both in use by the loop
    assert (entry is not None and all(owner is not None for _, owner in entry[1].sets)) == keep_stacks


@pytest.mark.parametrize("plans", [True, False])
def test_a_pullback_does_not_read_the_callers_x_later(plans, rng):
    """jacobian_and_pullback copies x only where the pass would keep it (the generic one);
    either way, writing into x after the call must not change what the pullback returns."""
    net = mlp(rng, [2, 5, 5, 2], jn.Tanh)
    X, G = rng.normal(size=(7, 2)), rng.normal(size=(7, 2, 2))
    want = net.jacobian_param_grad(X, G)
    previous = _plans.set_plans_enabled(plans)
    try:
        J, pullback = net.jacobian_and_pullback(X)
        X[...] = 0
        grads = pullback(G)
    finally:
        _plans.set_plans_enabled(previous)
    assert_same_grads(grads, want)


def test_training_from_several_threads(rng, plans_off, keep_stacks):
    net = mlp(rng, [3, 8, 3], jn.Tanh)
    inputs = [(rng.normal(size=(64, 3)), rng.normal(size=(64, 3, 3))) for _ in range(4)]
    wanted = [generic_training(net, X, G, plans_off)[1] for X, G in inputs]
    failures = []
    start = threading.Barrier(len(inputs))

    def work(k):
        start.wait()
        X, G = inputs[k]
        for _ in range(20):
            try:
                assert_same_grads(net.jacobian_and_pullback(X)[1](G), wanted[k])
            except AssertionError as error:
                failures.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_shared_parameters_run_the_generic_training_pass(rng):
    shared = jn.Affine(rng.normal(size=(3, 3)), rng.normal(size=3))
    net = jn.Network([shared, jn.Tanh(), shared])
    X = rng.normal(size=(5, 3))
    J, pullback = net.jacobian_and_pullback(X)
    assert len(pullback(np.ones_like(J))) == 2  # W and b once, summed over both uses
    assert plan_cache_info(net).generic == 1


def test_large_weights_run_the_generic_training_and_second_order_passes(rng, plans_off, monkeypatch):
    net = mlp(rng, [3, 6, 2])  # weights of 144 and 96 bytes
    X = rng.normal(size=(5, 3))
    monkeypatch.setitem(_plans.MAX_WEIGHT_BYTES, "training", 100)  # the first layer's is too large
    monkeypatch.setitem(_plans.MAX_WEIGHT_BYTES, "second order", 100)
    J, pullback = net.jacobian_and_pullback(X)
    L = net.laplacian(X)
    assert plan_cache_info(net).generic == 2  # both ran the generic passes
    want_J, want_pullback = plans_off(lambda: net.jacobian_and_pullback(X))
    np.testing.assert_array_equal(J, want_J)
    np.testing.assert_array_equal(L, plans_off(lambda: net.laplacian(X)))
    net.jacobian(X)  # first-order plans have no such bound
    assert plan_cache_info(net).generic == 2


# --- second order ---------------------------------------------------------------------


SMOOTH = {name: make for name, make in NETWORKS.items() if name not in ("activations around",)}  # ReLU, ELU: kinks
SMOOTH["activation first"] = lambda rng: jn.Network(  # a seed stack, not entered by an affine layer, then reused
    [jn.Tanh(), jn.Affine(rng.normal(size=(3, 3)), rng.normal(size=3)), jn.Sigmoid(), jn.Affine(rng.normal(size=(3, 2)))]
)


@pytest.mark.parametrize("make", SMOOTH.values(), ids=SMOOTH.keys())
def test_second_order_plans_give_the_results_of_the_generic_passes(make, rng, plans_off):
    net = make(rng)
    for X in (rng.normal(size=(9, net.d_in)), rng.normal(size=net.d_in), np.zeros((0, net.d_in)),
              rng.normal(size=(6, net.d_in)).astype(np.float32)):
        calls = [
            lambda: net.laplacian(X),
            lambda: net.laplacian(X, chunk_size=4),
            lambda: net.laplacian(X, dims=[net.d_in - 1]),
            lambda: net.laplacian(X, method="hutchinson", samples=3, seed=0),
            lambda: net.hessian_diagonal(X),
        ]
        if net.d_in == 1:
            calls.append(lambda: net.hessian(X))
        for call in calls:
            with pytest.warns(jn.ZeroCurvatureWarning) if net.piecewise_linear else _no_warning():
                want = plans_off(call)
            with pytest.warns(jn.ZeroCurvatureWarning) if net.piecewise_linear else _no_warning():
                got = call()
            assert_same(got, want, want.dtype)
    assert plan_cache_info(net).generic == 0


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_second_order_plans_use_the_current_weights(rng, plans_off):
    net = mlp(rng, [3, 6, 6, 2], jn.Tanh)
    X = rng.normal(size=(5, 3))
    net.laplacian(X)
    for p in net.params:
        p *= 0.7
    assert_same(net.laplacian(X), plans_off(lambda: net.laplacian(X)))
    assert plan_cache_info(net).misses == 1


def test_copies_of_a_network_share_a_bounded_pool_of_buffers(rng):
    """A Dask worker keeps the network of every task it ran, each a copy with its own plans:
    together their buffers stay within twice the memory budget per thread."""
    import pickle
    import tracemalloc

    net = mlp(rng, [16, 32, 24], jn.Tanh)
    X = rng.normal(size=(512, 16))
    previous = jn.set_memory_budget(2**20)
    try:
        copies = [pickle.loads(pickle.dumps(net)) for _ in range(24)]
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        results = [copy.jacobian(X) for copy in copies]
        kept = tracemalloc.get_traced_memory()[0] - start - sum(J.nbytes for J in results)
        tracemalloc.stop()
    finally:
        jn.set_memory_budget(previous)
    assert kept < 3 * 2**20, kept  # each copy's plan holds about 1.3 MiB of buffers on its own
    assert_same(results[-1], results[0])
