"""Benchmark: Network.forward_backward against hand-written NumPy and against forward.

A plain script, not collected by pytest::

    python bench/bench_core.py [--repeats 200]

Workloads (float64):

- W1: 500 -> 100 (ReLU) -> 10 (softmax), one input
- W2: 2 -> 5 -> 5 -> 2 tanh, batch 1,000, J and the per-sample 2x2 determinant
- W4: 2 -> 2 -> 2 -> 1 sigmoid, one input

"hand" is a minimal hand-written NumPy function computing the same value and Jacobian
with the same numerically stable derivative formulas, so ``ours / hand`` measures the
cost of the library's abstraction.  "naive" uses the textbook formulas ``1 - tanh**2``
and ``s * (1 - s)``, which are cheaper but lose all relative accuracy in the tails;
``ours / naive`` shows what that accuracy costs.  Every timing is the median over
interleaved repeats of a block of calls; results are checked equal before timing.
"""

from __future__ import annotations


import numpy as np
from _timing import argument_parser, interleaved_medians, start
from scipy.special import expit

import jacobian_np as jn

TARGETS = {"W1": 1.0, "W2": 1.0, "W4": 1.0}  # ours / hand, from issue 13 (issue 2: 1.2, 1.1, 1.5)


# --- hand-written derivative formulas -----------------------------------------------


def sigmoid_prime(z, s):
    return s * expit(-z)  # s(z) s(-z), with s = expit(z) from the forward pass


def tanh_prime(z):
    e = np.exp(-2 * np.abs(z))
    return 4 * e / (1 + e) ** 2


def det2(J):
    return J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0]


# --- workloads: (network, input, ours, hand, naive) ---------------------------------


def workload_w1(rng):
    W1, b1 = rng.normal(0, np.sqrt(2 / 500), (500, 100)), rng.normal(0, 0.1, 100)
    W2, b2 = rng.normal(0, np.sqrt(2 / 100), (100, 10)), rng.normal(0, 0.1, 10)
    net = jn.Network([jn.Affine(W1, b1), jn.ReLU(), jn.Affine(W2, b2), jn.Softmax()])
    x = rng.normal(size=500)

    def hand(x):
        z1 = x @ W1 + b1
        z2 = np.maximum(z1, 0) @ W2 + b2
        e = np.exp(z2 - z2.max())
        s = e / e.sum()
        J = (np.diag(s) - np.outer(s, s)) @ W2.T
        return s, (J * (z1 > 0)) @ W1.T

    return net, x, net.forward_backward, hand, hand  # no tail-sensitive derivative here


def workload_w2(rng):
    Ws = [rng.normal(size=(2, 5)), rng.normal(size=(5, 5)), rng.normal(size=(5, 2))]
    bs = [rng.normal(size=5), rng.normal(size=5), rng.normal(size=2)]
    W1, W2, W3 = Ws
    b1, b2, b3 = bs
    net = jn.Network(
        [jn.Affine(W1, b1), jn.Tanh(), jn.Affine(W2, b2), jn.Tanh(), jn.Affine(W3, b3), jn.Tanh()]
    )
    X = rng.normal(size=(1000, 2))
    n = len(X)

    def ours(X):
        y, J = net.forward_backward(X)
        return y, J, det2(J)

    def make(prime_from):
        def hand(X):
            z1 = X @ W1 + b1
            a1 = np.tanh(z1)
            z2 = a1 @ W2 + b2
            a2 = np.tanh(z2)
            z3 = a2 @ W3 + b3
            y = np.tanh(z3)
            J = prime_from(z3, y)[:, :, None] * W3.T
            J = (J * prime_from(z2, a2)[:, None, :]).reshape(-1, 5) @ W2.T
            J = (J.reshape(n, 2, 5) * prime_from(z1, a1)[:, None, :]).reshape(-1, 5) @ W1.T
            J = J.reshape(n, 2, 2)
            return y, J, det2(J)

        return hand

    return net, X, ours, make(lambda z, a: tanh_prime(z)), make(lambda z, a: 1 - a**2)


def workload_w4(rng):
    W1, W2, W3 = rng.normal(size=(2, 2)), rng.normal(size=(2, 2)), rng.normal(size=(2, 1))
    b1, b2, b3 = rng.normal(size=2), rng.normal(size=2), rng.normal(size=1)
    net = jn.Network(
        [jn.Affine(W1, b1), jn.Sigmoid(), jn.Affine(W2, b2), jn.Sigmoid(), jn.Affine(W3, b3), jn.Sigmoid()]
    )
    x = rng.normal(size=2)

    def make(prime_from):
        def hand(x):
            z1 = x @ W1 + b1
            a1 = expit(z1)
            z2 = a1 @ W2 + b2
            a2 = expit(z2)
            z3 = a2 @ W3 + b3
            y = expit(z3)
            J = prime_from(z3, y)[:, None] * W3.T
            J = (J * prime_from(z2, a2)) @ W2.T
            return y, (J * prime_from(z1, a1)) @ W1.T

        return hand

    return net, x, net.forward_backward, make(sigmoid_prime), make(lambda z, s: s * (1 - s))


WORKLOADS = {
    "W1": ("500->100 ReLU->10 softmax, 1 input", workload_w1),
    "W2": ("2->5->5->2 tanh, n=1000, J + det", workload_w2),
    "W4": ("2->2->2->1 sigmoid, 1 input", workload_w4),
}


def check_equal(ours, reference, x, name):
    for got, want in zip(ours(x), reference(x)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14, err_msg=f"{name} disagrees")


def main():
    args = argument_parser(__doc__, 200).parse_args()
    start(args.repeats)
    header = (
        f"{'workload':<38} {'forward':>9} {'fwd_bwd':>9} {'hand':>9} {'naive':>9} "
        f"{'fb/fwd':>7} {'ours/hand':>9} {'target':>7} {'ours/naive':>10}"
    )
    print(header)
    print("-" * len(header))
    misses = []
    for key, (label, build) in WORKLOADS.items():
        net, x, ours, hand, naive = build(np.random.default_rng(0))
        check_equal(ours, hand, x, f"{key} hand")
        t = interleaved_medians(
            {"forward": net.forward, "ours": ours, "hand": hand, "naive": naive}, x, args.repeats
        )
        ratio = t["ours"] / t["hand"]
        verdict = "ok" if ratio <= TARGETS[key] else "MISS"
        if verdict == "MISS":
            misses.append(key)
        print(
            f"{key + ' ' + label:<38} {t['forward'] * 1e6:>7.1f}us {t['ours'] * 1e6:>7.1f}us "
            f"{t['hand'] * 1e6:>7.1f}us {t['naive'] * 1e6:>7.1f}us {t['ours'] / t['forward']:>7.2f} "
            f"{ratio:>9.2f} {'<=' + str(TARGETS[key]):>7} {t['ours'] / t['naive']:>10.2f}  {verdict}"
        )
    print("\nfwd_bwd: ours, value and Jacobian (W2 includes the determinant)")
    if misses:
        print(f"targets missed: {', '.join(misses)}")


if __name__ == "__main__":
    main()
