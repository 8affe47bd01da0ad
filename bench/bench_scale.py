"""Benchmark: Jacobians of a dataset on disk, one process against a two-worker Dask cluster.

A plain script, not collected by pytest::

    python bench/bench_scale.py [--repeats 5] [--rows 8192] [--budget-multiple 10] [--block-rows R]

Network: 64 -> 256 -> 256 -> 32 tanh (W5 of bench_modes.py), float64; its Jacobian
is 16 KiB per row.  Blocks of rows are sized so that a block's Jacobian equals the
memory budget (``jacobian_np.get_memory_budget()``, 8 MiB by default: 512 rows).

1. Memory: a dataset whose Jacobian is ``--budget-multiple`` (10) times the memory
   budget is written to a Zarr store, and a ``distributed.LocalCluster`` of two
   worker processes (one thread and one BLAS thread each) writes its Jacobian to
   another Zarr store with ``jacobian_np.dask.jacobian(...).to_zarr``.  Reported per
   worker: the peak of traced allocations (tracemalloc) above the level before the
   run, and the peak resident set size, against the budget and against the size of
   J.
2. Throughput (rows per second) of the Jacobian of ``--rows`` rows, each variant
   reducing each block's J to one number per row so that nothing large travels:
   ``net.jacobian`` block by block in this process with one BLAS thread (the
   baseline) and with the default BLAS threads; Dask's threaded scheduler with
   two threads in this process; and the two-worker cluster reading the rows from
   Zarr.  Medians of interleaved repeats; the first repeat checks that every
   variant gives the baseline's numbers.

Target (issue 16): the cluster >= 1.7 x the single-thread baseline.  The machine's
other load shows in these figures: compare ratios within one run.

Dask, distributed and zarr are optional: without them the script says so and
exits.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import tempfile
import time
import tracemalloc

import numpy as np
from _timing import _ALLOCATOR, argument_parser, start

import jacobian_np as jn

WIDTHS = (64, 256, 256, 32)


def mlp(rng, widths):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(jn.Affine(rng.normal(0, 1 / np.sqrt(a), (a, b)), rng.normal(0, 0.1, b)))
        if i < len(widths) - 2:
            layers.append(jn.Tanh())
    return jn.Network(layers)


def squared_norms(J):
    """Per-row sum of squares of a Jacobian block: what each variant returns."""
    return np.einsum("ijk,ijk->i", J, J)


# --- run inside the worker processes ----------------------------------------------


def growth_start():
    """Start tracing; return the traced level and the current RSS in bytes."""
    import psutil

    tracemalloc.start()
    tracemalloc.reset_peak()
    return tracemalloc.get_traced_memory()[0], psutil.Process().memory_info().rss


def growth_stop(start_level):
    """Peak traced bytes above ``start_level``, and the peak RSS of the process, in bytes."""
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - start_level, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds():
    """CPU time of this process so far, all its threads, user and system."""
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def malloc_trim():
    return os.environ.get("MALLOC_TRIM_THRESHOLD_", "default")


def blas_threads():
    import threadpoolctl

    return max(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")


# ---------------------------------------------------------------------------------------


def write_zarr(zarr, path, x, rows):
    zarr.create_array(path, shape=x.shape, chunks=(rows, x.shape[1]), dtype=x.dtype)[:] = x


def memory_run(client, net, folder, rows, multiple, rng, dask, da, jnd, zarr):
    budget = jn.get_memory_budget()
    n = multiple * budget // (WIDTHS[-1] * WIDTHS[0] * 8)
    x = rng.normal(size=(n, WIDTHS[0]))
    write_zarr(zarr, os.path.join(folder, "x_memory.zarr"), x, rows)
    X = da.from_zarr(os.path.join(folder, "x_memory.zarr"))
    J = jnd.jacobian(net, X)
    starts = client.run(growth_start)
    t0 = time.perf_counter()
    dask.compute(J.to_zarr(os.path.join(folder, "J_memory.zarr"), compute=False), scheduler=client)
    seconds = time.perf_counter() - t0
    peaks = client.run(growth_stop, 0)
    written = zarr.open_array(os.path.join(folder, "J_memory.zarr"), mode="r")
    check = np.sort(rng.choice(n, 256, replace=False))
    np.testing.assert_allclose(written.oindex[check], net.jacobian(x[check]), rtol=1e-12, atol=1e-14)

    mib = 2**20
    print(
        f"1. memory: {n:,} rows on disk (Zarr), J = {J.nbytes / mib:.0f} MiB = {J.nbytes / budget:.0f} x the "
        f"budget of {budget / mib:g} MiB; blocks of {rows} rows (J block {rows * J.nbytes / n / mib:.0f} MiB); "
        f"J written to Zarr in {seconds:.2f} s"
    )
    print(f"   {'worker':<24} {'traced peak':>12} {'/ budget':>9} {'/ J':>6} {'peak RSS':>10} {'RSS before':>11}")
    for worker, (traced, rss) in peaks.items():
        traced -= starts[worker][0]
        print(
            f"   {worker:<24} {traced / mib:>8.1f} MiB {traced / budget:>9.2f} {traced / J.nbytes:>6.2f} "
            f"{rss / mib:>6.0f} MiB {starts[worker][1] / mib:>7.0f} MiB"
        )
    print()


def throughput_run(client, net, folder, n, rows, repeats, rng, dask, da, jnd, zarr, threadpoolctl):
    x = rng.normal(size=(n, WIDTHS[0]))
    write_zarr(zarr, os.path.join(folder, "x.zarr"), x, rows)
    X = da.from_zarr(os.path.join(folder, "x.zarr"))
    blocks = [x[i : i + rows] for i in range(0, n, rows)]

    def in_process():
        return np.concatenate([squared_norms(net.jacobian(b)) for b in blocks])

    def in_process_one_thread():
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            return in_process()

    def dask_threads():
        lazy = jnd.jacobian(net, X).map_blocks(squared_norms, drop_axis=(1, 2), dtype=x.dtype)
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            return lazy.compute(scheduler="threads", num_workers=2)

    def cluster():
        lazy = jnd.jacobian(net, X).map_blocks(squared_norms, drop_axis=(1, 2), dtype=x.dtype)
        return dask.compute(lazy, scheduler=client)[0]

    variants = {
        "1 process, net.jacobian, 1 BLAS thread": in_process_one_thread,
        f"1 process, net.jacobian, {blas_threads()} BLAS threads": in_process,
        "1 process, Dask threads x2, 1 BLAS thread": dask_threads,
        "LocalCluster, 2 workers x 1 thread, from Zarr": cluster,
    }
    def cpu_used():  # this process's and the workers' CPU seconds so far
        return cpu_seconds() + sum(client.run(cpu_seconds).values())

    times = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    expected = None
    for repeat in range(repeats):
        for name, f in variants.items():
            c0 = cpu_used()
            t0 = time.perf_counter()
            result = f()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(cpu_used() - c0)
            if repeat == 0:  # every variant gives the baseline's numbers (the baseline runs first)
                expected = result if expected is None else expected
                np.testing.assert_allclose(result, expected, rtol=1e-12, err_msg=name)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    cpu_medians = {name: float(np.median(t)) for name, t in cpu.items()}
    baseline_name, cluster_name = "1 process, net.jacobian, 1 BLAS thread", "LocalCluster, 2 workers x 1 thread, from Zarr"
    baseline = medians[baseline_name]

    print(f"2. throughput: J of {n:,} rows in blocks of {rows} (J = {n * 16 / 1024:.0f} MiB)")
    print(f"   {'variant':<46} {'median':>9} {'rows/s':>9} {'/ baseline':>11} {'CPU s':>7} {'rows/CPU s':>11}")
    for name, t in medians.items():
        print(
            f"   {name:<46} {t:>7.3f} s {n / t:>9,.0f} {baseline / t:>11.2f} "
            f"{cpu_medians[name]:>7.2f} {n / cpu_medians[name]:>11,.0f}"
        )
    ratio = baseline / medians[cluster_name]
    verdict = "meets" if ratio >= 1.7 else "misses"
    print(f"\n   cluster / single-thread baseline: {ratio:.2f} x ({verdict} the 1.7 x target)")
    # Wall-clock ratios need two idle cores; rows per CPU second do not. The cluster's
    # work per row over the baseline's tells what two idle cores would give.
    efficiency = (n / cpu_medians[cluster_name]) / (n / cpu_medians[baseline_name])
    busy = cpu_medians[cluster_name] / medians[cluster_name]
    print(
        f"   the cluster used {busy:.2f} cores on average and did {efficiency:.2f} of the baseline's rows per CPU "
        f"second: with two idle cores, about {2 * efficiency:.2f} x"
    )


def main():
    parser = argument_parser(__doc__, 5)
    parser.add_argument("--rows", type=int, default=8192, help="rows of the throughput dataset (default %(default)s)")
    parser.add_argument(
        "--budget-multiple", type=int, default=10, help="J of the memory run over the budget (default %(default)s)"
    )
    parser.add_argument(
        "--block-rows", type=int, default=None, help="rows per block (default: a block of J the size of the budget)"
    )
    args = parser.parse_args()
    try:
        import dask
        import dask.array as da
        import distributed
        import threadpoolctl
        import zarr

        import jacobian_np.dask as jnd
    except ImportError as error:
        print(f"bench_scale: skipped, {error.name} is not installed (pip install 'jacobian_np[dask]' zarr)")
        return
    start(args.repeats, f"; Dask {dask.__version__}, distributed {distributed.__version__}, zarr {zarr.__version__}")

    rng = np.random.default_rng(0)
    net = mlp(rng, WIDTHS)
    rows = args.block_rows or max(1, jn.get_memory_budget() // (WIDTHS[-1] * WIDTHS[0] * 8))
    # distributed starts its workers with MALLOC_TRIM_THRESHOLD_=65536: give them this
    # process's allocator settings instead, so that both sides allocate alike
    environ = dask.config.get("distributed.nanny.pre-spawn-environ")
    environ = {**environ, **{k: os.environ[k] for k in _ALLOCATOR if k in os.environ}}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), tempfile.TemporaryDirectory() as folder, distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as local, distributed.Client(local, set_as_default=False) as client:
        # warm the workers up: imports, the first Zarr store
        warm = rng.normal(size=(4 * rows, WIDTHS[0]))
        write_zarr(zarr, os.path.join(folder, "warm.zarr"), warm, rows)
        dask.compute(
            jnd.jacobian(net, da.from_zarr(os.path.join(folder, "warm.zarr"))).to_zarr(
                os.path.join(folder, "J_warm.zarr"), compute=False
            ),
            scheduler=client,
        )
        print(
            f"workers: BLAS threads {sorted(set(client.run(blas_threads).values()))}, MALLOC_TRIM_THRESHOLD_ "
            f"{sorted(set(client.run(malloc_trim).values()))}; this process: BLAS threads {blas_threads()}, "
            f"MALLOC_TRIM_THRESHOLD_ {malloc_trim()}\n"
        )
        memory_run(client, net, folder, rows, args.budget_multiple, rng, dask, da, jnd, zarr)
        throughput_run(client, net, folder, args.rows, rows, args.repeats, rng, dask, da, jnd, zarr, threadpoolctl)


if __name__ == "__main__":
    sys.exit(main())
