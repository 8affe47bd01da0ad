"""Benchmark: Taylor mode (derivatives of any order, PDE operators, their weight gradients).

A plain script, not collected by pytest::

    python bench/bench_taylor.py [--repeats 10] [--threads 1] [--system-malloc]

Workloads (float64, tanh on hidden layers, linear output; batch sizes of the issue):

- W3: 1 -> 50 -> 50 -> 50 -> 501, batch 256: ``taylor(x, [1], 4)``, all derivatives
  to order 4 in one call, against the forward pass (target <= 6x);
- LAP: 50 -> 768 -> 768 -> 512 -> 512 -> 1, batch 64: the exact Laplacian
  ``laplacian(x)`` (target <= 1.2 (d + 2) forward passes, and <= 0.6x JAX's
  ``vmap(trace(hessian))``), the Hutchinson estimate with S = 8 directions
  (target <= 1.2 (S + 2) forward passes; skipped until ``laplacian`` takes
  ``method=``), and ``laplacian_param_grad`` (target <= 4x the Laplacian);
- BIH: 5 -> 768 -> 768 -> 512 -> 512 -> 1, batch 64: the exact ``biharmonic(x)``
  against JAX's nested ``hessian`` of the Laplacian (target <= 0.6x).

JAX, when installed: ``jit`` with the parameters passed as arguments, x64 enabled,
``vmap`` over the batch; W3 also against ``jax.experimental.jet`` (JAX's Taylor
mode).  Every JAX result is checked against ours before timing; without JAX our
results are checked against each other (``taylor`` against ``laplacian``).
Libraries run on ``--threads`` cores, 1 by default (see bench_peers.py).
"""

from __future__ import annotations

import time

import numpy as np
from _timing import argument_parser, interleaved_medians, start
from bench_modes import mlp
from bench_peers import pin_threads

import jacobian_np as jn


def jax_peers(nets):
    """name -> (function of X, X converted) for the JAX side; {} without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}
    jax.config.update("jax_enable_x64", True)

    def params_of(net):
        return [(jnp.asarray(layer.W), jnp.asarray(layer.b)) for layer in net.layers if isinstance(layer, jn.Affine)]

    def u(params, x):
        for W, b in params[:-1]:
            x = jnp.tanh(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    def scalar(params, x):
        return u(params, x)[0]

    def laplacian(params, x):
        return jnp.trace(jax.hessian(scalar, argnums=1)(params, x))

    def biharmonic(params, x):
        return jnp.trace(jax.hessian(laplacian, argnums=1)(params, x))

    def derivatives4(params, x):  # W3: jet along e_0 = 1
        from jax.experimental import jet

        v = jnp.ones_like(x)
        zero = jnp.zeros_like(x)
        y, terms = jet.jet(lambda z: u(params, z), (x,), ((v, zero, zero, zero),))
        return jnp.stack([y] + list(terms))

    peers = {}
    for key, fn in (("W3", derivatives4), ("LAP", laplacian), ("BIH", biharmonic)):
        net, X = nets[key]
        params = params_of(net)
        compiled = jax.jit(jax.vmap(fn, in_axes=(None, 0)))
        Xj = jnp.asarray(X)
        begin = time.perf_counter()
        jax.block_until_ready(compiled(params, Xj))
        first = time.perf_counter() - begin
        peers[key] = (lambda X, f=compiled, p=params: jax.block_until_ready(f(p, X)), Xj, first)
    return peers


def hutchinson(net):
    """The Hutchinson Laplacian with S = 8, or None before ``laplacian`` takes ``method=``."""

    def estimate(X):
        return net.laplacian(X, method="hutchinson", samples=8, seed=0)

    try:
        estimate(np.zeros((1, net.d_in)))
    except TypeError:
        return None
    return estimate


def main():
    parser = argument_parser(__doc__, 10)
    parser.add_argument("--threads", type=int, default=1, help="cores per library (default %(default)s)")
    args = parser.parse_args()
    pin_threads(args.threads)
    start(args.repeats, f", {args.threads} thread(s)")

    rng = np.random.default_rng(0)
    nets = {
        "W3": (mlp(rng, [1, 50, 50, 50, 501], jn.Tanh), rng.normal(size=(256, 1))),
        "LAP": (mlp(rng, [50, 768, 768, 512, 512, 1], jn.Tanh), rng.normal(size=(64, 50))),
        "BIH": (mlp(rng, [5, 768, 768, 512, 512, 1], jn.Tanh), rng.normal(size=(64, 5))),
    }
    w3, X3 = nets["W3"]
    lap, XL = nets["LAP"]
    bih, XB = nets["BIH"]
    ones = np.ones((len(XL), 1))
    estimate = hutchinson(lap)

    # correctness first: our methods against each other
    T = w3.taylor(X3, [1.0], 4)
    np.testing.assert_allclose(T[2], w3.laplacian(X3), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lap.laplacian_and_pullback(XL)[0], lap.laplacian(XL), rtol=1e-10, atol=1e-12)

    # ours first: JAX's thread pool, once started, slows NumPy on the same core
    t3 = interleaved_medians({"forward": w3.forward, "taylor4": lambda X: w3.taylor(X, [1.0], 4)}, X3, args.repeats)
    laplacian_methods = {
        "forward": lap.forward,
        "laplacian": lap.laplacian,
        "collapsed": lambda X: lap.laplacian_and_pullback(X)[0],
        "laplacian_param_grad": lambda X: lap.laplacian_param_grad(X, ones),
    }
    if estimate is not None:
        laplacian_methods["hutchinson"] = estimate
    tl = interleaved_medians(laplacian_methods, XL, args.repeats)
    tb = interleaved_medians({"forward": bih.forward, "biharmonic": bih.biharmonic}, XB, args.repeats)

    peers = jax_peers(nets)
    if peers:
        ours = {"W3": T, "LAP": lap.laplacian(XL)[:, 0], "BIH": bih.biharmonic(XB)[:, 0]}
        for key, (f, Xj, _) in peers.items():
            theirs = np.asarray(f(Xj))
            theirs = np.moveaxis(theirs, 1, 0) if key == "W3" else theirs
            np.testing.assert_allclose(theirs, ours[key], rtol=1e-8, atol=1e-10 * np.abs(ours[key]).max())
    tj = {key: interleaved_medians({"jax": f}, Xj, args.repeats)["jax"] for key, (f, Xj, _) in peers.items()}

    d, S = XL.shape[1], 8
    rows = [
        ("W3 taylor order 4 / forward", t3["taylor4"], t3["forward"], 6.0),
        ("LAP exact laplacian / forward", tl["laplacian"], tl["forward"], 1.2 * (d + 2)),
        ("LAP hutchinson S=8 / forward", tl.get("hutchinson"), tl["forward"], 1.2 * (S + 2)),
        ("LAP laplacian_param_grad / laplacian", tl["laplacian_param_grad"], tl["laplacian"], 4.0),
        ("LAP collapsed Taylor laplacian (with tape) / forward", tl["collapsed"], tl["forward"], None),
        ("BIH biharmonic / forward", tb["biharmonic"], tb["forward"], None),
    ]
    if peers:
        rows += [
            ("W3 taylor order 4 / JAX jet", t3["taylor4"], tj["W3"], None),
            ("LAP exact laplacian / JAX vmap(trace(hessian))", tl["laplacian"], tj["LAP"], 0.6),
            ("BIH biharmonic / JAX hessian of the laplacian", tb["biharmonic"], tj["BIH"], 0.6),
        ]
    print(f"{'ratio':<48} {'time':>10} {'against':>10} {'ratio':>7} {'target':>7}")
    print("-" * 86)
    misses = []
    for label, t, against, target in rows:
        if t is None:
            print(f"{label:<48} {'n/a':>10} {against * 1e3:>8.3f}ms {'':>7} {target:>7.2f}  (not available yet)")
            continue
        ratio = t / against
        mark = "" if target is None else f"{target:>7.2f}" + ("  MISSED" if ratio > target else "")
        if target is not None and ratio > target:
            misses.append(label)
        print(f"{label:<48} {t * 1e3:>8.3f}ms {against * 1e3:>8.3f}ms {ratio:>7.2f} {mark}")
    if peers:
        print("\nJAX first calls (tracing, compilation and one run): "
              + ", ".join(f"{key} {first:.2f} s" for key, (_, _, first) in peers.items()))
    else:
        print("\nJAX not installed: the JAX rows are skipped")
    print("targets missed: " + (", ".join(misses) if misses else "none"))


if __name__ == "__main__":
    main()
