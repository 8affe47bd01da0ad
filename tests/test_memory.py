"""Every method keeps its intermediates within the memory budget.

Measured with ``tracemalloc`` (which sees NumPy's allocations): the peak of a call,
less its result, stays within 1.5 times the budget, for a batch whose
intermediates unchunked would be about 30 times the budget.
"""

import tracemalloc

import numpy as np
import pytest

import jacobian_np as jn

N = 10_000
BUDGET = 2**19


@pytest.fixture
def budget():
    previous = jn.set_memory_budget(BUDGET)
    yield BUDGET
    jn.set_memory_budget(previous)


@pytest.fixture
def net(rng):
    return jn.Network([
        jn.Affine(rng.normal(size=(2, 64)) / 2, rng.normal(size=64)),
        jn.Tanh(),
        jn.Residual(jn.Network([jn.Affine(rng.normal(size=(64, 64)) / 8), jn.Tanh()])),
        jn.Affine(rng.normal(size=(64, 2)) / 8),
    ])


def _g(rng, *shape):
    return rng.normal(size=shape)


CALLS = {
    "jacobian": lambda net, X, rng: net.jacobian(X),
    "jacobian forward": lambda net, X, rng: net.jacobian(X, mode="forward"),
    "forward_backward": lambda net, X, rng: net.forward_backward(X),
    "jvp": lambda net, X, rng: net.jvp(X, _g(rng, N, 2)),
    "vjp": lambda net, X, rng: net.vjp(X, _g(rng, N, 2)),
    "param_grad": lambda net, X, rng: net.param_grad(X, _g(rng, N, 2)),
    "jacobian_param_grad": lambda net, X, rng: net.jacobian_param_grad(X, _g(rng, N, 2, 2)),
    "hessian": lambda net, X, rng: net.hessian(X),
    "laplacian": lambda net, X, rng: net.laplacian(X),
    "laplacian hutchinson": lambda net, X, rng: net.laplacian(X, method="hutchinson", samples=4, seed=0),
    "hessian_diagonal": lambda net, X, rng: net.hessian_diagonal(X),
    "divergence": lambda net, X, rng: net.divergence(X),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_intermediates_stay_within_the_budget(name, net, budget, rng):
    X = rng.normal(size=(N, 2))
    call = CALLS[name]
    arguments = np.random.default_rng(0)
    expected = call(net, X, arguments)
    tracemalloc.start()
    try:
        result = call(net, X, np.random.default_rng(0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    parts = result if isinstance(result, (tuple, list)) else [result]
    result_bytes = sum(part.nbytes for part in parts)
    argument_bytes = 2 * N * 2 * 8  # the random upstream arrays drawn inside the call
    assert peak - result_bytes - argument_bytes <= 1.5 * budget, f"{name}: {(peak - result_bytes) / budget:.2f} budgets"
    for a, b in zip(parts, expected if isinstance(expected, (tuple, list)) else [expected]):
        np.testing.assert_array_equal(a, b)


def test_unchunked_the_same_calls_would_exceed_the_budget(net, budget, rng):
    """The test above means something: with one chunk, the intermediates are far larger."""
    X = rng.normal(size=(N, 2))
    tracemalloc.start()
    try:
        net.jacobian(X, chunk_size=N)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak > 10 * budget
