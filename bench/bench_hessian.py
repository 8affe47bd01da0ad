"""Benchmark: second derivatives (Hessians and Laplacians) against the forward pass.

A plain script, not collected by pytest::

    python bench/bench_hessian.py [--repeats 30]

Workloads (float64, tanh on hidden layers, linear output):

- W3: 1 -> 50 -> 50 -> 50 -> 501, batch 256: u, d2u/dx2 of a PINN (``laplacian``,
  the same as ``hessian`` for one input);
- L3: 3 -> 64 -> 64 -> 1, batch 4,096: the Laplacian, and the full 3 x 3 Hessian.

Also, on W3: the same Laplacian with the textbook tanh derivatives ``1 - y**2``
and ``-2 y (1 - y**2)``, which are cheaper but lose relative accuracy as |x|
grows, to measure what the accurate forms cost; and JAX's
``jit(vmap(jacfwd(jacfwd)))`` when JAX is installed.

Target (issue 4): W3's second derivative <= 1.5 x the forward pass.
"""

from __future__ import annotations

import time

import numpy as np
from _timing import argument_parser, interleaved_medians, start
from bench_modes import mlp

import jacobian_np as jn


class TextbookTanh(jn.Tanh):
    """tanh with the cheap derivatives 1 - y**2 and -2 y (1 - y**2)."""

    def fprime(self, x, y):
        return 1 - y * y

    def fsecond(self, x, y):
        return -2 * y * (1 - y * y)


def jax_w3(net, X):
    """jit(vmap(jacfwd(jacfwd(u)))) on the same weights; None if JAX is missing."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    params = [(jnp.asarray(layer.W), jnp.asarray(layer.b)) for layer in net.layers if isinstance(layer, jn.Affine)]

    def u(x):
        for W, b in params[:-1]:
            x = jnp.tanh(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    second = jax.jit(jax.vmap(jax.jacfwd(jax.jacfwd(u))))
    Xj = jnp.asarray(X)
    start = time.perf_counter()
    second(Xj).block_until_ready()
    compile_time = time.perf_counter() - start
    return (lambda X: second(X).block_until_ready()), Xj, compile_time


def main():
    args = argument_parser(__doc__, 30).parse_args()
    start(args.repeats)

    rng = np.random.default_rng(0)
    w3 = mlp(rng, [1, 50, 50, 50, 501], jn.Tanh)
    X3 = rng.normal(size=(256, 1))
    textbook = jn.Network([TextbookTanh() if isinstance(layer, jn.Tanh) else layer for layer in w3.layers])
    l3 = mlp(rng, [3, 64, 64, 1], jn.Tanh)
    XL = rng.normal(size=(4096, 3))
    np.testing.assert_allclose(w3.laplacian(X3)[:, :, None, None], w3.hessian(X3), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(textbook.laplacian(X3), w3.laplacian(X3), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(l3.laplacian(XL), np.trace(l3.hessian(XL), axis1=-2, axis2=-1), rtol=1e-12, atol=1e-14)

    t3 = interleaved_medians(
        {
            "forward": w3.forward,
            "jacobian": w3.jacobian,
            "laplacian": w3.laplacian,
            "hessian": w3.hessian,
            "textbook": textbook.laplacian,
        },
        X3,
        args.repeats,
    )
    tl = interleaved_medians(
        {"forward": l3.forward, "laplacian": l3.laplacian, "hessian": l3.hessian}, XL, args.repeats
    )
    rows = [
        ("W3 1->50->50->50->501, n=256: d2u/dx2 (laplacian)", t3["laplacian"], t3["forward"]),
        ("W3 same, hessian (n, 501, 1, 1)", t3["hessian"], t3["forward"]),
        ("W3 same, textbook tanh derivatives", t3["textbook"], t3["forward"]),
        ("W3 first derivative (jacobian), for reference", t3["jacobian"], t3["forward"]),
        ("L3 3->64->64->1, n=4096: laplacian", tl["laplacian"], tl["forward"]),
        ("L3 same, full 3x3 hessian", tl["hessian"], tl["forward"]),
    ]
    print(f"{'workload':<52} {'time':>10} {'forward':>10} {'ratio':>6}")
    print("-" * 81)
    for label, t, forward in rows:
        print(f"{label:<52} {t * 1e3:>8.3f}ms {forward * 1e3:>8.3f}ms {t / forward:>6.2f}")
    ratio = t3["laplacian"] / t3["forward"]
    print(f"\nW3 second derivative / forward = {ratio:.2f} (target <= 1.5)")
    print(f"accurate / textbook tanh derivatives on W3: {t3['laplacian'] / t3['textbook']:.2f}")
    jax_run = jax_w3(w3, X3)
    if jax_run is None:
        print("JAX not installed: jit(vmap(jacfwd(jacfwd))) comparison skipped")
    else:
        f, Xj, compile_time = jax_run
        t_jax = interleaved_medians({"jax": f}, Xj, args.repeats)["jax"]
        print(
            f"JAX jit(vmap(jacfwd(jacfwd))) on W3: {t_jax * 1e3:.3f} ms (first call with compilation "
            f"{compile_time:.2f} s); ours / JAX = {t3['hessian'] / t_jax:.2f}"
        )
    if ratio > 1.5:
        print("targets missed: W3 ratio")


if __name__ == "__main__":
    main()
