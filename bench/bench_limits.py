"""Benchmark: what bounds the workloads on which jacobian_np is slower than compiled JAX.

A plain script, not collected by pytest::

    python bench/bench_limits.py [--repeats 20] [--quick]

bench_peers.py gives the headline ratios; this script measures, side by side in one
process (interleaved repeats, one thread per library, the default allocator), the
parts that bound the workloads where ours misses its issue-13 target, so that each
miss is explained by a measurement, not a guess:

- the matrix products every method must do, timed alone in NumPy (W1: the
  ``(10, 100) @ (100, 500)`` product of reverse mode; W3: the ``(501, 50) @ (50, 256)``
  product of the last layer);
- the activations: NumPy's ``tanh`` and the layer's derivatives (``Tanh.fprime``, and
  ``fprimes`` for second order) over the workload's pre-activations, against XLA's
  ``tanh`` with the derivative JAX differentiates it to, ``1 - tanh(x)**2`` (and
  ``-2 t (1 - t**2)``), all layers in one jitted call.  That derivative is not
  accurate in the tails (relative error printed: at ``|x| = 20`` it is 0 against
  about 4e-17), which the layer's rule is (``docs/conventions.md``), and XLA's tanh
  is a faster rational approximation than NumPy's;
- the per-call floor of one sample (W4): the fewest NumPy calls that compute ``y``
  and ``J`` with accurate derivatives, written by hand for this network, and the
  dispatch of a jitted identity in JAX (what any jitted call costs).

JAX is optional; without it only our side is printed.
"""

from __future__ import annotations

import os
import sys

from _timing import argument_parser, environment, interleaved_medians, one_blas_thread

import numpy as np
from scipy.special import expit

from bench_peers import det_step, mlp, pin_threads

import jacobian_np as jn


def us(t):
    return f"{t * 1e6:9.1f} us"


def pre_activations(net, X):
    """The inputs of each elementwise layer of ``net`` at ``X``."""
    out, v = [], X
    for layer in net.layers:
        if not isinstance(layer, jn.Affine):
            out.append(v)
        v, _ = layer.forward_with_cache(v)
    return out


def numpy_activations(zs, second):
    tanh = jn.Tanh()

    def run(_):
        for z in zs:
            t = np.tanh(z)
            tanh.fprimes(z, t) if second else tanh.fprime(z, t)

    return run


def jax_activations(jax, jnp, zs, second):
    def all_layers(zs):
        out = []
        for z in zs:
            t = jnp.tanh(z)
            d = 1 - t**2
            out.append((t, d, -2 * t * d) if second else (t, d))
        return out

    f = jax.jit(all_layers)
    zj = [jnp.asarray(z) for z in zs]
    return lambda _: jax.block_until_ready(f(zj))


def jax_jacobian(jax, jnp, net, X, task):
    """JAX's fastest method of bench_peers.py for ``task``, on ``net`` (tanh/sigmoid/relu/softmax)."""
    from bench_peers import Jax, describe

    methods = Jax().methods(task, describe(net), X)
    calls = [call for call, _ in methods.values()]
    warm = []
    for call in calls:
        call()
        times = interleaved_medians({"c": lambda _, call=call: call()}, None, 5)
        warm.append(times["c"])
    best = calls[int(np.argmin(warm))]
    return lambda _: best()


def w4_fewest_calls(net):
    """y and J of the 2 -> 2 -> 2 -> 1 sigmoid network in the fewest NumPy calls, accurate
    derivatives (``s(z) s(-z)``): what any NumPy code must spend on one sample."""
    (A0, _, A2, _, A4, _) = net.layers
    dot = np.dot

    def run(x):
        z = dot(x, A0.W); z += A0.b; a1 = expit(z); d1 = -z; expit(d1, d1); d1 *= a1  # noqa: E702
        z = dot(a1, A2.W); z += A2.b; a2 = expit(z); d2 = -z; expit(d2, d2); d2 *= a2  # noqa: E702
        z = dot(a2, A4.W); z += A4.b; y = expit(z); d3 = -z; expit(d3, d3); d3 *= y  # noqa: E702
        J = A4.W.T * d3[:, None]
        J *= d2
        J = dot(J, A2.W.T)
        J *= d1
        return y, dot(J, A0.W.T)

    return run


def main():
    parser = argument_parser(__doc__, 20)
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 repeats")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    pin_threads(1)
    blas = one_blas_thread()
    print(environment())
    print(blas + "; the C library's allocator as it comes")
    try:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_cpu_enable_async_dispatch", False)
        print(f"JAX {jax.__version__}, one intra-op thread (XLA_FLAGS={os.environ.get('XLA_FLAGS', '')})")
    except ImportError:
        jax = jnp = None
        print("JAX not installed: our side only")
    print(f"medians of {repeats} interleaved repeats\n")

    rng = np.random.default_rng(0)
    w1 = mlp(rng, [500, 100, 10], jn.ReLU, jn.Softmax)
    x1 = rng.normal(size=500)
    w2 = mlp(rng, [2, 5, 5, 2], jn.Tanh, jn.Tanh)
    X2 = rng.normal(size=(1000, 2))
    w3 = mlp(rng, [1, 50, 50, 50, 501], jn.Tanh)
    X3 = rng.normal(size=(256, 1))
    w4 = mlp(rng, [2, 2, 2, 1], jn.Sigmoid, jn.Sigmoid)
    x4 = rng.normal(size=2)
    step = mlp(rng, [2, 5, 5, 2], jn.Tanh)
    Xs = rng.normal(size=(256, 2))

    def det(X):
        J = w2.jacobian(X)
        return J, J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0]

    B1 = rng.normal(size=(10, 100))
    B3 = rng.normal(size=(50, 256))
    cases = {  # workload -> (ours, JAX task and network, [(part, function)], input)
        "W1": (w1.jacobian, ("J1", w1), [("(10,100) @ (100,500) alone", lambda _: B1 @ w1.layers[0].W.T)], x1),
        "W2": (det, ("Jdet", w2), [("activations: NumPy (ours)", numpy_activations(pre_activations(w2, X2), False)),
                                   ("activations: XLA", "jax", False)], X2),
        "W3 J": (w3.jacobian, ("J", w3), [("(501,50) @ (50,256) alone", lambda _: w3.layers[-1].W.T @ B3),
                                          ("activations: NumPy (ours)", numpy_activations(pre_activations(w3, X3), False)),
                                          ("activations: XLA", "jax", False)], X3),
        "W3 d2": (w3.laplacian, ("d2", w3), [("(501,50) @ (50,256) alone", lambda _: w3.layers[-1].W.T @ B3),
                                             ("activations: NumPy (ours)", numpy_activations(pre_activations(w3, X3), True)),
                                             ("activations: XLA", "jax", True)], X3),
        "W4": (w4.forward_backward, ("J1", w4), [("fewest NumPy calls, by hand", w4_fewest_calls(w4)),
                                                 ("JAX dispatch of jit(identity)", "dispatch", None)], x4),
        "step": (lambda X: det_step(step, X), ("step", step),
                 [("activations: NumPy (ours)", numpy_activations(pre_activations(step, Xs), True)),
                  ("activations: XLA", "jax", True)], Xs),
    }
    net_of = {"W2": w2, "W3 J": w3, "W3 d2": w3, "step": step}
    print(f"{'workload':8} {'what':38} {'median':>12} {'/ ours':>7}")
    print("-" * 68)
    for name, (ours, (task, net), parts, X) in cases.items():
        functions = {"ours": ours}
        if jax is not None:
            functions["JAX (its fastest method)"] = jax_jacobian(jax, jnp, net, X, task)
        for label, part, *extra in parts:
            if part == "jax" or part == "dispatch":
                if jax is None:
                    continue
                if part == "jax":
                    part = jax_activations(jax, jnp, pre_activations(net_of[name], X), extra[0])
                else:
                    identity = jax.jit(lambda a: a)
                    xj = jnp.asarray(X)
                    part = lambda _, identity=identity, xj=xj: jax.block_until_ready(identity(xj))  # noqa: E731
            functions[label] = part
        for f in functions.values():
            f(X)
        times = interleaved_medians(functions, X, repeats)
        for i, (label, t) in enumerate(times.items()):
            print(f"{name if i == 0 else '':8} {label:38} {us(t)} {t / times['ours']:7.2f}")
    if jax is not None:
        x = np.array([1.0, 5.0, 10.0, 20.0])
        t = np.tanh(x)
        ours_d = jn.Tanh().fprime(x, t)
        xla_d = np.asarray(1 - jnp.tanh(jnp.asarray(x)) ** 2)
        print("\ntanh'(x) at x = 1, 5, 10, 20: relative error of XLA's 1 - tanh^2 against the layer's rule:",
              ", ".join(f"{e:.1g}" for e in np.abs(xla_d - ours_d) / ours_d))


if __name__ == "__main__":
    sys.exit(main())
