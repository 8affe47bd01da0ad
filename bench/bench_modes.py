"""Benchmark: forward mode against reverse mode against the automatic choice.

A plain script, not collected by pytest::

    python bench/bench_modes.py [--repeats 20]

Workloads (float64; tanh on hidden layers, and on the output of W2):

- W1: 500 -> 100 (ReLU) -> 10 (softmax), one input
- W2: 2 -> 5 -> 5 -> 2 tanh, batch 1,000
- W3: 1 -> 50 -> 50 -> 50 -> 501 tanh, batch 256 (first derivative of a PINN)
- W5: 64 -> 256 -> 256 -> 32 tanh, batch 4,096

For each: medians of interleaved repeats of ``forward``, ``jacobian`` in each mode
and with ``mode="auto"``.  Then, from the same run: the rate of a 2000 x 2000
float64 matrix product, W5's rate counting only the necessary matrix-product work
of the cheaper mode (22.2 GFLOP: the forward pass and the backward pass with the
seed ``W.T`` free), and W5's peak memory (tracemalloc) against the size of ``J``.

Targets: W5 >= 0.65 of the matmul rate with peak memory <= 1.3 x J (issue 13; it
was 0.7 and 2 x in issue 3, with glibc's heap trimming off); W3 <= 1.5 x forward;
auto within 10% of the better explicit mode everywhere.  W5's peak memory is taken
on a network's first call, which allocates the buffers its execution plan keeps.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
from _timing import argument_parser, interleaved_medians, start

import jacobian_np as jn


def mlp(rng, widths, hidden, out=None):
    """Affine layers with ``hidden`` after each but the last, ``out`` after the last."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(jn.Affine(rng.normal(0, 1 / np.sqrt(a), (a, b)), rng.normal(0, 0.1, b)))
        last = i == len(widths) - 2
        if not last:
            layers.append(hidden())
        elif out is not None:
            layers.append(out())
    return jn.Network(layers)


def workloads(rng):
    return {
        "W1 500->100 ReLU->10 softmax, 1 input": (
            mlp(rng, [500, 100, 10], jn.ReLU, jn.Softmax),
            rng.normal(size=500),
        ),
        "W2 2->5->5->2 tanh, n=1000": (mlp(rng, [2, 5, 5, 2], jn.Tanh, jn.Tanh), rng.normal(size=(1000, 2))),
        "W3 1->50->50->50->501 tanh, n=256": (mlp(rng, [1, 50, 50, 50, 501], jn.Tanh), rng.normal(size=(256, 1))),
        "W5 64->256->256->32 tanh, n=4096": (mlp(rng, [64, 256, 256, 32], jn.Tanh), rng.normal(size=(4096, 64))),
    }


def w5_gemm_flops(n=4096, widths=(64, 256, 256, 32)):
    """Necessary matrix-product work of reverse mode on W5: forward pass + backward pass."""
    pairs = list(zip(widths[:-1], widths[1:]))
    forward = sum(a * b for a, b in pairs)
    backward = widths[-1] * sum(a * b for a, b in pairs[:-1])  # the last layer seeds, free
    return 2 * n * (forward + backward)


def matmul_rate(repeats=7):
    A = np.random.default_rng(1).normal(size=(2000, 2000))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        A @ A
        times.append(time.perf_counter() - start)
    return 2 * 2000**3 / float(np.median(times))


def peak_memory(f, x):
    tracemalloc.start()
    try:
        f(x)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main():
    args = argument_parser(__doc__, 20).parse_args()
    start(args.repeats, f"; memory budget {jn.get_memory_budget() / 2**20:g} MiB")
    header = (
        f"{'workload':<38} {'forward':>9} {'reverse':>9} {'fwd mode':>9} {'auto':>9} {'picks':>8} "
        f"{'best/fwd':>8} {'auto/best':>9}"
    )
    print(header)
    print("-" * len(header))
    best_times, misses = {}, []
    for label, (net, x) in workloads(np.random.default_rng(0)).items():
        J = net.jacobian(x, mode="reverse")
        np.testing.assert_allclose(net.jacobian(x, mode="forward"), J, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(net.jacobian(x), J, rtol=1e-10, atol=1e-13)
        t = interleaved_medians(
            {
                "forward": net.forward,
                "reverse": lambda x: net.jacobian(x, mode="reverse"),
                "fwd mode": lambda x: net.jacobian(x, mode="forward"),
                "auto": net.jacobian,
            },
            x,
            args.repeats,
        )
        best = min(t["reverse"], t["fwd mode"])
        best_times[label[:2]] = best
        auto_ratio = t["auto"] / best
        if auto_ratio > 1.1:
            misses.append(f"{label[:2]} auto/best")
        picks = "forward" if net.mode_costs()["forward"] < net.mode_costs()["reverse"] else "reverse"
        print(
            f"{label:<38} {t['forward'] * 1e3:>7.3f}ms {t['reverse'] * 1e3:>7.3f}ms {t['fwd mode'] * 1e3:>7.3f}ms "
            f"{t['auto'] * 1e3:>7.3f}ms {picks:>8} {best / t['forward']:>8.2f} {auto_ratio:>9.2f}"
        )
        if label.startswith("W3"):
            w3_ratio = best / t["forward"]
        if label.startswith("W5"):
            w5_net, w5_x, w5_J_bytes = net, x, J.nbytes

    rate = matmul_rate()
    w5_rate = w5_gemm_flops() / best_times["W5"]
    # a fresh network with the same layers: its first call builds its plan and buffers,
    # which stay allocated afterwards and so count towards the peak
    peak = peak_memory(jn.Network(w5_net.layers).jacobian, w5_x)
    print()
    print(f"2000x2000 float64 matmul: {rate / 1e9:.1f} GFLOP/s")
    print(
        f"W5: {w5_gemm_flops() / 1e9:.1f} GFLOP of necessary matrix products in {best_times['W5'] * 1e3:.0f} ms = "
        f"{w5_rate / 1e9:.1f} GFLOP/s, {w5_rate / rate:.2f} of the matmul rate (target >= 0.65)"
    )
    print(f"W3: Jacobian / forward = {w3_ratio:.2f} (target <= 1.5)")
    print(
        f"W5: peak memory {peak / 2**20:.1f} MiB for J of {w5_J_bytes / 2**20:.1f} MiB = "
        f"{peak / w5_J_bytes:.2f} x (target <= 1.3)"
    )
    misses += ["W5 rate"] * (w5_rate / rate < 0.65) + ["W3 ratio"] * (w3_ratio > 1.5)
    misses += ["W5 memory"] * (peak > 1.3 * w5_J_bytes)
    if misses:
        print(f"targets missed: {', '.join(misses)}")


if __name__ == "__main__":
    main()
