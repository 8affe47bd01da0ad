"""jacobian_np.dask: lazy, row-chunked derivatives on every Dask scheduler.

The whole module skips when Dask is not installed.  One two-worker
``distributed.LocalCluster`` (loopback only, no dashboard) is shared by the tests
that need it.
"""

import concurrent.futures
import logging
import multiprocessing
import pickle
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import jacobian_np as jn

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
threadpoolctl = pytest.importorskip("threadpoolctl")
jnd = pytest.importorskip("jacobian_np.dask")

#: name -> (the Dask call, the in-memory call), both on (net, X, direction arrays).
FUNCTIONS = {
    "forward_backward": (lambda net, X, V, U: jnd.forward_backward(net, X), lambda net, x, v, u: net.forward_backward(x)),
    "jacobian": (lambda net, X, V, U: jnd.jacobian(net, X), lambda net, x, v, u: net.jacobian(x)),
    "jacobian_forward": (
        lambda net, X, V, U: jnd.jacobian(net, X, mode="forward"),
        lambda net, x, v, u: net.jacobian(x, mode="forward"),
    ),
    "hessian": (lambda net, X, V, U: jnd.hessian(net, X), lambda net, x, v, u: net.hessian(x)),
    "laplacian": (lambda net, X, V, U: jnd.laplacian(net, X), lambda net, x, v, u: net.laplacian(x)),
    "jvp_per_sample": (lambda net, X, V, U: jnd.jvp(net, X, V), lambda net, x, v, u: net.jvp(x, v)),
    "jvp_shared": (lambda net, X, V, U: jnd.jvp(net, X, np.arange(3.0)), lambda net, x, v, u: net.jvp(x, np.arange(3.0))),
    "vjp_per_sample": (lambda net, X, V, U: jnd.vjp(net, X, U), lambda net, x, v, u: net.vjp(x, u)),
}


def make_net(rng, dtype=np.float64):
    """3 -> 5 -> 4 -> 2: non-square widths, so a transposed result cannot pass."""
    return jn.Network(
        [
            jn.Affine(rng.normal(size=(3, 5)).astype(dtype), rng.normal(size=5).astype(dtype)),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(5, 4)).astype(dtype)),
            jn.Softplus(),
            jn.Affine(rng.normal(size=(4, 2)).astype(dtype)),
        ]
    )


@pytest.fixture
def net(rng):
    return make_net(rng)


@pytest.fixture
def data(rng):
    """In-memory x, v, u and their Dask versions in uneven row chunks (an empty one too)."""
    x, v, u = rng.normal(size=(11, 3)), rng.normal(size=(11, 3)), rng.normal(size=(11, 2))
    chunks = (4, 0, 5, 2)
    dask_arrays = tuple(da.from_array(a, chunks=(chunks, a.shape[1])) for a in (x, v, u))
    return (x, v, u), dask_arrays


def as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


@pytest.fixture(scope="module")
def process_pool():
    """Two spawned processes for Dask's multiprocessing scheduler, shared by the module."""
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture(scope="module")
def client():
    """A real two-worker cluster: separate processes, one thread each, loopback, no dashboard."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def compute(request):
    """``compute(*collections)`` on the scheduler named by the test's ``scheduler`` parameter."""
    scheduler = request.node.callspec.params["scheduler"]
    if scheduler == "processes":
        pool = request.getfixturevalue("process_pool")
        return lambda *c: dask.compute(*c, scheduler="processes", pool=pool)
    if scheduler == "distributed":
        client = request.getfixturevalue("client")
        return lambda *c: dask.compute(*c, scheduler=client)
    return lambda *c: dask.compute(*c, scheduler=scheduler)


# --- equal to the in-memory results, on every scheduler ---------------------------------


@pytest.mark.parametrize("scheduler", ["sync", "threads", "processes", "distributed"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_equals_the_in_memory_result(name, scheduler, compute, net, data):
    on_dask, in_memory = FUNCTIONS[name]
    (x, v, u), (X, V, U) = data
    lazy = as_tuple(on_dask(net, X, V, U))
    expected = as_tuple(in_memory(net, x, v, u))
    got = compute(*lazy)
    assert len(got) == len(expected)
    for g, e, d in zip(got, expected, lazy):
        assert g.shape == e.shape == d.shape and g.dtype == e.dtype == d.dtype
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("scheduler", ["processes", "distributed"])
def test_composite_and_nested_networks_travel_to_worker_processes(scheduler, compute, rng, data):
    (x, _, _), (X, _, _) = data
    inner = make_net(rng)  # 3 -> 2
    net = jn.Network(
        [
            jn.Affine(rng.normal(size=(3, 4))),
            jn.Residual(jn.Network([jn.LayerNorm(4), jn.Affine(rng.normal(size=(4, 4))), jn.Tanh()]), scale=0.5),
            jn.Parallel([jn.Affine(rng.normal(size=(4, 3))), jn.Network([jn.Affine(rng.normal(size=(4, 3))), inner])]),
        ]
    )
    J, H = compute(jnd.jacobian(net, X), jnd.hessian(net, X))
    np.testing.assert_allclose(J, net.jacobian(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(H, net.hessian(x), rtol=1e-12, atol=1e-14)


def test_jacobian_matches_central_differences(net, data):
    (x, _, _), (X, _, _) = data
    J = jnd.jacobian(net, X).compute(scheduler="sync")
    for i in (0, 6, 10):
        np.testing.assert_allclose(J[i], jn.numerical_jacobian(net.forward, x[i]), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("weights, inputs", [(np.float32, np.float32), (np.float64, np.float32), (np.float32, np.int64)])
def test_dtypes_follow_the_in_memory_methods(weights, inputs, rng):
    net = make_net(rng, weights)
    x = rng.normal(size=(6, 3)).astype(inputs)
    X = da.from_array(x, chunks=4)
    for lazy, expected in [(jnd.jacobian(net, X), net.jacobian(x)), (jnd.laplacian(net, X), net.laplacian(x))]:
        assert lazy.dtype == expected.dtype
        got = lazy.compute(scheduler="sync")
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-6 if expected.dtype == np.float32 else 1e-12)


def test_activation_only_network_takes_the_width_of_x(rng):
    net = jn.Network([jn.Tanh()])
    x = rng.normal(size=(5, 4))
    J = jnd.jacobian(net, da.from_array(x, chunks=2))
    assert J.shape == (5, 4, 4)
    np.testing.assert_allclose(J.compute(scheduler="sync"), net.jacobian(x))


# --- chunks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FUNCTIONS)
def test_row_chunks_are_those_of_x(name, net, data):
    _, (X, V, U) = data
    for result in as_tuple(FUNCTIONS[name][0](net, X, V, U)):
        assert result.chunks[0] == X.chunks[0] == (4, 0, 5, 2)
        assert all(len(c) == 1 for c in result.chunks[1:])


def test_split_columns_are_merged(net, data):
    (x, _, _), _ = data
    X = da.from_array(x, chunks=((6, 5), (1, 2)))
    y, J = jnd.forward_backward(net, X)
    assert J.chunks == ((6, 5), (2,), (3,)) and y.chunks == ((6, 5), (2,))
    y_ref, J_ref = net.forward_backward(x)
    np.testing.assert_allclose(J.compute(scheduler="sync"), J_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y.compute(scheduler="sync"), y_ref, rtol=1e-12, atol=1e-14)


def test_per_sample_directions_are_rechunked_to_the_rows_of_x(net, data):
    (x, v, _), (X, _, _) = data
    V = da.from_array(v, chunks=((3, 8), (2, 1)))
    y, Jv = jnd.jvp(net, X, V)
    assert Jv.chunks[0] == X.chunks[0]
    np.testing.assert_allclose(Jv.compute(scheduler="sync"), net.jvp(x, v)[1], rtol=1e-12, atol=1e-14)


class TaylorLike(jn.Network):
    """A per-row method whose batch axis comes second, as ``taylor``'s does: (order + 1, n, d_out)."""

    def powers(self, x, v, order):
        y = self.forward(x) + np.sum(x * v, axis=-1, keepdims=True)
        return np.stack([y**k for k in range(order + 1)])


@pytest.mark.parametrize("shared", [True, False])
def test_the_generic_wrapper_serves_a_method_with_the_batch_axis_second(shared, rng, data):
    (x, v, _), (X, V, _) = data
    net = TaylorLike(make_net(rng).layers)
    direction, v_used = (v[0], v[0]) if shared else (V, v)
    T = jnd._rowwise(net, X, "powers", direction, order=3, batch_axis=1)
    assert T.shape == (4, 11, 2) and T.chunks == ((4,), X.chunks[0], (2,))
    np.testing.assert_allclose(T.compute(scheduler="sync"), net.powers(x, v_used, 3), rtol=1e-12)


# --- lazy: nothing runs before compute, and then one call per block ---------------------------


class CountingNetwork(jn.Network):
    """Counts the calls of its methods on more than zero rows."""

    def __init__(self, layers):
        super().__init__(layers)
        self.calls = []

    def jacobian(self, x, *args, **kwargs):
        if len(x):
            self.calls.append(len(x))
        return super().jacobian(x, *args, **kwargs)


def test_nothing_is_computed_before_compute(rng, data):
    (x, _, _), (X, _, _) = data
    read = []

    def reading(block):
        read.append(len(block))
        return block

    net = CountingNetwork(make_net(rng).layers)
    J = jnd.jacobian(net, X.map_blocks(reading, meta=X._meta))  # meta given: no trial call
    assert read == [] and net.calls == []
    J.compute(scheduler="sync")
    assert sorted(read) == [0, 2, 4, 5]  # each block of X once
    assert sorted(net.calls) == [2, 4, 5]  # one call per non-empty block, none on the whole
    np.testing.assert_allclose(J.compute(scheduler="sync"), net.jacobian(x))


def test_the_graph_pickles_with_the_standard_library(net, data):
    (x, _, _), (X, _, _) = data
    y, J = pickle.loads(pickle.dumps(jnd.forward_backward(net, X)))
    np.testing.assert_allclose(J.compute(scheduler="sync"), net.jacobian(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y.compute(scheduler="sync"), net.forward(x), rtol=1e-12, atol=1e-14)


# --- errors come before any work --------------------------------------------------------------


def never(block):
    raise AssertionError("a block of X was computed")


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda net, X: jnd.jacobian(net, X[:, :2]), ValueError, r"expects X with 3 columns .* got shape \(11, 2\)"),
        (lambda net, X: jnd.hessian(net, X[:, :, None]), ValueError, r"shape \(n, d_in\) .* 3-D array of shape \(11, 3, 1\)"),
        (lambda net, X: jnd.laplacian(net, X[:, 0]), ValueError, r"1-D array of shape \(11,\)"),
        (lambda net, X: jnd.jacobian(net, X, mode="sideways"), ValueError, "sideways"),
        (lambda net, X: jnd.jvp(net, X, X[:5]), ValueError, r"one row per row of X; got shape \(5, 3\)"),
        (lambda net, X: jnd.jvp(net, X, np.ones(4)), ValueError, "v"),
        (lambda net, X: jnd.vjp(net, X, X), ValueError, "u"),
        (lambda net, X: jnd.jacobian(net, X.astype(complex)), TypeError, "complex"),
        (lambda net, X: jnd.jacobian(net, X, blas_threads=0), ValueError, "blas_threads as a positive integer or None; got 0"),
        (lambda net, X: jnd.jacobian(net, X, blas_threads=1.5), TypeError, "blas_threads .* got float"),
    ],
)
def test_bad_arguments_raise_before_any_work(call, error, match, net, data):
    _, (X, _, _) = data
    with pytest.raises(error, match=match):
        call(net, X.map_blocks(never, meta=X._meta))


def test_an_in_memory_array_is_a_type_error_that_says_how_to_wrap_it(net, data):
    (x, _, _), _ = data
    with pytest.raises(TypeError, match=r"expects X as a dask.array.Array .* got ndarray.*from_array"):
        jnd.jacobian(net, x)


def test_a_layer_without_second_derivatives_fails_before_any_work(rng, data):
    class FirstOrderOnly(jn.Layer):
        def forward(self, x):
            return 2 * x, None

        def backward(self, dy, cache):
            return 2 * dy

    _, (X, _, _) = data
    net = jn.Network([jn.Affine(rng.normal(size=(3, 2))), FirstOrderOnly()])
    with pytest.raises(NotImplementedError, match="FirstOrderOnly"):
        jnd.hessian(net, X.map_blocks(never, meta=X._meta))


# --- BLAS threads and the memory budget inside the blocks ------------------------------------


def blas_threads():
    return max(info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas")


class SettingsProbe(jn.Network):
    """A network with one more per-row method: the settings in force where a block runs."""

    def settings(self, x):
        return np.tile(np.array([blas_threads(), jn.get_memory_budget()], float), (len(x), 1))


def settings_in_blocks(rng, X, compute, **kwargs):
    """The distinct (BLAS threads, memory budget) pairs seen by the blocks, through the generic wrapper."""
    net = SettingsProbe(make_net(rng).layers)
    (seen,) = compute(jnd._rowwise(net, X, "settings", **kwargs))
    return {tuple(int(v) for v in row) for row in seen}


@pytest.fixture
def budget():
    previous = jn.get_memory_budget()
    yield
    jn.set_memory_budget(previous)


@pytest.mark.parametrize("scheduler", ["processes", "distributed"])
def test_worker_processes_take_the_blas_limit_and_the_budget_of_the_graph(scheduler, compute, budget, rng, data):
    _, (X, _, _) = data
    jn.set_memory_budget(12345)
    assert settings_in_blocks(rng, X, compute) == {(1, 12345)}
    jn.set_memory_budget(54321)
    assert settings_in_blocks(rng, X, compute, blas_threads=2) == {(2, 54321)}
    assert settings_in_blocks(rng, X, compute) == {(1, 54321)}


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_the_building_process_keeps_its_own_settings(scheduler, compute, budget, rng, data):
    _, (X, _, _) = data
    jn.set_memory_budget(12345)
    before = blas_threads()
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):  # the caller's choice stands
        assert settings_in_blocks(rng, X, compute) == {(1, 12345)}
    assert settings_in_blocks(rng, X, compute) == {(before, 12345)}
    assert blas_threads() == before


# --- a dataset on disk, its Jacobian written back to disk, on the cluster ---------------------


def traced_growth_start():
    tracemalloc.start()
    tracemalloc.reset_peak()
    return tracemalloc.get_traced_memory()[0]


def traced_growth(start):
    """Peak traced memory above ``start`` since then, in bytes; stops tracing."""
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - start


def test_cluster_writes_the_jacobian_of_a_zarr_dataset_without_holding_it(client, budget, tmp_path, rng):
    zarr = pytest.importorskip("zarr")
    d_in, d_out, n, rows = 16, 24, 16384, 512
    net = jn.Network([jn.Affine(rng.normal(size=(d_in, 32))), jn.Tanh(), jn.Affine(rng.normal(size=(32, d_out)))])
    x = rng.normal(size=(n, d_in))
    zarr.create_array(str(tmp_path / "x.zarr"), shape=x.shape, chunks=(rows, d_in), dtype=x.dtype)[:] = x
    X = da.from_zarr(str(tmp_path / "x.zarr"))
    jn.set_memory_budget(2**20)  # the workers take the budget of the graph: 1 MiB of intermediates

    # warm both workers up (imports, connections) so that what follows measures the Jacobian alone
    warm = jnd.jacobian(net, X[: 8 * rows]).to_zarr(str(tmp_path / "warm.zarr"), compute=False)
    dask.compute(warm, scheduler=client)
    J = jnd.jacobian(net, X)
    assert J.chunks[0] == (rows,) * (n // rows)
    starts = client.run(traced_growth_start)
    start = traced_growth_start()
    try:
        dask.compute(J.to_zarr(str(tmp_path / "J.zarr"), compute=False), scheduler=client)
    finally:
        client_growth = traced_growth(start)
        worker_growth = {w: g for w, g in client.run(traced_growth, 0).items()}
    worker_growth = {w: worker_growth[w] - starts[w] for w in starts}

    # J is 48 MiB and a block's 1.5 MiB: no process comes near holding J
    assert len(worker_growth) == 2
    assert max(worker_growth.values()) < J.nbytes / 4, (worker_growth, J.nbytes)
    assert client_growth < J.nbytes / 4, (client_growth, J.nbytes)
    written = zarr.open_array(str(tmp_path / "J.zarr"), mode="r")
    assert written.shape == (n, d_out, d_in) and written.chunks == (rows, d_out, d_in)
    rows_checked = np.sort(rng.choice(n, 500, replace=False))  # from every block
    np.testing.assert_allclose(written.oindex[rows_checked], net.jacobian(x[rows_checked]), rtol=1e-12, atol=1e-14)


def test_import_jacobian_np_imports_no_dask():
    code = (
        "import sys, jacobian_np, jacobian_np.dask; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'threadpoolctl', 'zarr'}))"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "name, args, kwargs",
    [
        ("hessian_diagonal", ([1, 0],), {}),
        ("laplacian", ([2],), {}),
        ("biharmonic", (), {}),
        ("taylor", (np.array([0.5, -1.0, 2.0]), 3), {}),
    ],
)
def test_taylor_operators_match_in_memory(name, args, kwargs):
    rng = np.random.default_rng(3)
    net = jn.Network([jn.Affine(rng.normal(size=(3, 5))), jn.Tanh(), jn.Affine(rng.normal(size=(5, 2)))])
    X = rng.normal(size=(11, 3))
    lazy = getattr(jnd, name)(net, da.from_array(X, chunks=4), *args, **kwargs)
    in_memory = getattr(net, name)(X, *args) if name not in ("hessian_diagonal",) else net.hessian_diagonal(X, dims=args[0])
    np.testing.assert_allclose(lazy.compute(scheduler="sync"), in_memory, rtol=1e-13, atol=1e-14)


def test_divergence_matches_in_memory():
    rng = np.random.default_rng(4)
    net = jn.Network([jn.Affine(rng.normal(size=(3, 5))), jn.Tanh(), jn.Affine(rng.normal(size=(5, 3)))])
    X = rng.normal(size=(9, 3))
    lazy = jnd.divergence(net, da.from_array(X, chunks=4))
    assert lazy.chunks == ((4, 4, 1),)
    np.testing.assert_allclose(lazy.compute(scheduler="sync"), net.divergence(X), rtol=1e-13)
