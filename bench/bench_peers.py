"""Benchmark: jacobian_np against HIPS autograd, JAX and PyTorch on the same float64 networks.

A plain script, not collected by pytest::

    python bench/bench_peers.py [--repeats 20] [--budget 12] [--threads 1]
                                [--quick] [--write] [--tuned-malloc]

Workloads (float64; one set of weights per network, built by jacobian_np with a
fixed seed and copied into every peer):

- W1: 500 -> 100 (ReLU) -> 10 (softmax), one input: J of shape (10, 500);
- W2: 2 -> 5 -> 5 -> 2 tanh (tanh on the output too), batch 1,000: per-sample J
  and its determinant, in closed form (``ad - bc``) in every library;
- W3: 1 -> 50 -> 50 -> 50 -> 501 tanh (linear output), batch 256: the first
  derivative J, and the second derivative d2u/dx2 (ours: ``laplacian``, and
  ``hessian`` for reference);
- W4: 2 -> 2 -> 2 -> 1 sigmoid (on every layer), one input: J of shape (1, 2);
- W5: 64 -> 256 -> 256 -> 32 tanh (linear output), batch 4,096: per-sample J;
- step: 2 -> 5 -> 5 -> 2 tanh (linear output), batch 256: ``mean((det J - 1)**2)``
  and its gradient with respect to every weight (ours:
  ``jacobian_and_pullback`` + ``losses.det``, as in bench_training.py; the peers
  differentiate the same closed-form 2 x 2 determinant).

Peers, each timed only when installed (a note is printed otherwise):

- HIPS autograd: ``jacobian`` (of ``x -> f(x).sum(0)`` for a batch: the samples
  are independent, so that is every per-sample Jacobian, transposed), ``deriv``
  (its forward mode; for W3's single input, nested for d2u/dx2), and
  ``value_and_grad`` through ``jacobian`` for the training step;
- JAX: ``jit`` of ``vmap(jacrev)`` and ``vmap(jacfwd)`` (no vmap for one input),
  ``vmap(jacfwd(jacfwd))`` for d2u/dx2, ``value_and_grad`` through either for
  the training step; x64 enabled; parameters passed as arguments, not baked in
  as constants;
- PyTorch: ``torch.func`` ``vmap(jacrev)`` and ``vmap(jacfwd)``,
  ``torch.autograd.functional.jacobian(vectorize=True)`` (with the sum over the
  batch), ``vmap(jacfwd(jacfwd))`` for d2u/dx2; for the training step double
  backward (as in bench_training.py) and ``torch.func.grad`` through
  ``vmap(jacrev)``.  No ``torch.compile``.

Every method's result is checked against ours (``rtol=1e-9``) before anything is
timed.  Inputs are converted to each library's array type beforehand and results
are left in it (JAX results are waited for with ``block_until_ready``).  Times are
medians of interleaved repeats (``interleaved_medians``) of each method paired
with ours, with fewer repeats for a pair whose round of calls is slow
(``--budget`` seconds per workload, at least 5 repeats); ours is the median of its
medians in the pairs, leaving out those with methods more than 20 times slower,
whose memory traffic slows the calls after them.  Pairs, not all methods at once:
seven methods of four libraries interleaved evicted each other's code and data
from the caches, so that every call started cold (W4: ours 18 -> 32 us, JAX's
jacrev 10 -> 27 us), which measures the mix rather than the libraries.
The first call of every method, which includes JAX's tracing and XLA
compilation, is timed separately.

Threads: every library runs on ``--threads`` cores, 1 by default.  The script
re-executes itself with ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` set to that number, ``XLA_FLAGS`` asking XLA for that many
intra-op threads (``--xla_cpu_multi_thread_eigen=false`` for one) and, when it is
below the CPU count, its CPU affinity restricted to that many cores; it limits
NumPy's BLAS with threadpoolctl, calls ``torch.set_num_threads`` and turns JAX's
asynchronous CPU dispatch off (``jax_cpu_enable_async_dispatch``: results are
waited for anyway, and its worker thread kept the core busy after each call, so
that the next library's calls ran up to 20 times slower).  One core each is the
default because several thread pools in one process disturb each other: on a
2-core virtual machine, NumPy's OpenBLAS threads were starved after JAX or PyTorch
calls, and a 0.4 ms forward pass took 16 ms.  ``--threads 2`` (or more) measures
multi-threaded runs, with that caveat.

Allocator: the C library's allocator as it comes (the user's setting).  After the
main table, jacobian_np's headline methods are timed alone in fresh processes,
alternately with that allocator and with glibc's heap trimming off (the variables
``--tuned-malloc`` sets), for comparison; ``--tuned-malloc`` runs everything that
way.

Then, for the W2 and W5 shapes, time against batch size (16 ... 4,096).

``--write`` saves the results to bench/RESULTS.md and, when matplotlib is
installed, the batch-size plot to bench/results.png; without it nothing is
written (``.ci/run`` smoke-runs this script with ``--repeats 2``).  ``--quick``
(2 repeats, batches of at most 256 samples, two batch sizes in the sweep) is a
smoke test and cannot be combined with ``--write``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _timing import (
    _ALLOCATOR,
    allocator_note,
    argument_parser,
    environment,
    interleaved_medians,
    one_blas_thread,
    steady_allocator,
)
from bench_modes import mlp
from bench_training import det_step as training_step

import jacobian_np as jn
from jacobian_np import losses

HERE = Path(__file__).resolve().parent
RTOL = 1e-9
#: methods slower than this many times our warm call are timed in a separate interleaved
#: set: their memory traffic (hundreds of MiB per call) would slow the next method's
#: first call (JAX's jacfwd on W3 took 11 ms instead of 0.5 ms right after its jacrev)
SLOW = 20
#: repeats of a set whose round of calls exceeds the time budget
MIN_REPEATS = 5
ACTIVATIONS = {jn.ReLU: "relu", jn.Tanh: "tanh", jn.Sigmoid: "sigmoid", jn.Softmax: "softmax"}

# --- networks and our side of every task -------------------------------------------


def describe(net):
    """The network as ``[("affine", W, b) | (activation name,)]`` for the peers."""
    spec = []
    for layer in net.layers:
        if isinstance(layer, jn.Affine):
            spec.append(("affine", layer.W, layer.b))
        else:
            spec.append((ACTIVATIONS[type(layer)],))
    return spec


def det2(J):
    """Closed-form determinants of 2 x 2 matrices, for arrays of any of the libraries."""
    return J[..., 0, 0] * J[..., 1, 1] - J[..., 0, 1] * J[..., 1, 0]


def det_step(net, X):
    """The det-loss step of bench_training.py, as a flat tuple (loss, *gradients)."""
    loss, grads = training_step(net, X)
    return (loss, *grads)


def ours_methods(task, net, X):
    """Our methods for ``task``: name -> function of X returning a tuple of arrays."""
    if task in ("J1", "J"):
        mode = net.mode_costs()
        picks = "forward" if mode["forward"] < mode["reverse"] else "reverse"
        return {f"jacobian (auto: {picks})": lambda X: (net.jacobian(X),)}
    if task == "Jdet":

        def jdet(X):
            J = net.jacobian(X)
            return J, det2(J)

        return {"jacobian + closed-form det": jdet}
    if task == "d2":
        return {
            "laplacian": lambda X: (net.laplacian(X),),
            "hessian": lambda X: (net.hessian(X).reshape(len(X), -1),),
        }
    if task == "step":
        return {"jacobian_and_pullback + losses.det": lambda X: det_step(net, X)}
    raise ValueError(task)


def workloads(rng, max_batch=None):
    """key -> (label, task, network, input); inputs of one sample for J1.

    ``max_batch`` (for --quick) keeps the first ``max_batch`` samples of each batch.
    """
    w3 = mlp(rng, [1, 50, 50, 50, 501], jn.Tanh)
    X3 = rng.normal(size=(256, 1))
    table = {
        "W1": ("500->100 ReLU->10 softmax, 1 input: J", "J1", mlp(rng, [500, 100, 10], jn.ReLU, jn.Softmax),
               rng.normal(size=500)),
        "W2": ("2->5->5->2 tanh, n=1000: J + det", "Jdet", mlp(rng, [2, 5, 5, 2], jn.Tanh, jn.Tanh),
               rng.normal(size=(1000, 2))),
        "W3 J": ("1->50->50->50->501 tanh, n=256: J", "J", w3, X3),
        "W3 d2": ("1->50->50->50->501 tanh, n=256: d2u/dx2", "d2", w3, X3),
        "W4": ("2->2->2->1 sigmoid, 1 input: J", "J1", mlp(rng, [2, 2, 2, 1], jn.Sigmoid, jn.Sigmoid),
               rng.normal(size=2)),
        "W5": ("64->256->256->32 tanh, n=4096: J", "J", mlp(rng, [64, 256, 256, 32], jn.Tanh),
               rng.normal(size=(4096, 64))),
        "step": ("2->5->5->2 tanh, n=256: det loss + weight grad", "step", mlp(rng, [2, 5, 5, 2], jn.Tanh),
                 rng.uniform(-1, 1, size=(256, 2))),
    }
    if max_batch is None:
        return table
    out = {}
    for key, (label, task, net, X) in table.items():
        if X.ndim == 2 and len(X) > max_batch:
            label = label.replace(f"n={len(X)}", f"n={max_batch}")
            X = X[:max_batch]
        out[key] = (label, task, net, X)
    return out


SWEEPS = {  # batch-size sweeps for the plot, on the networks of these workloads
    "W2": "W2: 2->5->5->2 tanh, per-sample J + det",
    "W5": "W5: 64->256->256->32 tanh, per-sample J",
}


# --- peers ---------------------------------------------------------------------------
#
# Each peer's ``methods(task, spec, X)`` returns name -> (call, to_numpy): ``call()``
# runs the method on the input already converted to the library's arrays,
# ``to_numpy(result)`` gives the tuple of NumPy arrays that ours returns.


class Peer:
    """A library under comparison; ``act`` maps activation names to its functions."""

    act: dict

    def apply(self, spec, params, x):
        """The network of ``spec`` (from ``describe``) with ``params``, in the peer's arrays."""
        it = iter(params)
        for layer in spec:
            x = x @ next(it) + next(it) if layer[0] == "affine" else self.act[layer[0]](x)
        return x


class Autograd(Peer):
    library = "autograd"

    def __init__(self):
        import autograd
        import autograd.numpy as anp
        from autograd.scipy.special import expit

        self.ag, self.np = autograd, anp
        self.version = importlib.metadata.version("autograd")

        def softmax(z):
            e = anp.exp(z - anp.max(z, axis=-1, keepdims=True))
            return e / anp.sum(e, axis=-1, keepdims=True)

        self.act = {"relu": lambda z: anp.maximum(z, 0.0), "tanh": anp.tanh, "sigmoid": expit, "softmax": softmax}

    def methods(self, task, spec, X):
        ag, anp = self.ag, self.np
        params = [p for layer in spec if layer[0] == "affine" for p in layer[1:]]
        f = lambda x: self.apply(spec, params, x)  # noqa: E731
        # the samples are independent: the Jacobian of the sum over the batch is every
        # per-sample Jacobian, as (d_out, n, d_in)
        batch_jac = ag.jacobian(lambda X: anp.sum(f(X), axis=0))
        same = lambda r: (r,)  # noqa: E731
        if task == "J1":
            return {"jacobian": (lambda: ag.jacobian(f)(X), same)}
        if task == "J":
            out = {"jacobian of sum over batch": (lambda: batch_jac(X), lambda r: (r.transpose(1, 0, 2),))}
            if X.shape[1] == 1:  # one input: forward mode gives all of J in one pass
                out["deriv (forward mode)"] = (lambda: ag.deriv(f)(X), lambda r: (r[:, :, None],))
            return out
        if task == "Jdet":

            def jdet():
                J = batch_jac(X).transpose(1, 0, 2)
                return J, det2(J)

            return {"jacobian of sum over batch + det": (jdet, tuple)}
        if task == "d2":
            if X.shape[1] != 1:
                return {}
            return {"deriv(deriv) (forward mode)": (lambda: ag.deriv(ag.deriv(f))(X), same)}
        if task == "step":

            def loss(params):
                J = ag.jacobian(lambda X: anp.sum(self.apply(spec, params, X), axis=0))(X)
                return anp.mean((det2(anp.transpose(J, (1, 0, 2))) - 1) ** 2)

            step = ag.value_and_grad(loss)
            return {"value_and_grad through jacobian": (lambda: step(params), lambda r: (r[0], *r[1]))}
        raise ValueError(task)


class Jax(Peer):
    library = "JAX"

    def __init__(self):
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_cpu_enable_async_dispatch", False)  # see the module: threads
        self.jax, self.jnp = jax, jnp
        self.version = f"{jax.__version__} (jaxlib {importlib.metadata.version('jaxlib')})"
        self.act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "softmax": jax.nn.softmax}
        self.devices = ", ".join(str(d) for d in jax.devices())

    def methods(self, task, spec, X):
        jax, jnp = self.jax, self.jnp
        params = [jnp.asarray(p) for layer in spec if layer[0] == "affine" for p in layer[1:]]
        Xj = jnp.asarray(X)
        f = lambda p, x: self.apply(spec, p, x)  # noqa: E731
        wait = jax.block_until_ready

        def run(fn):
            return lambda: wait(fn(params, Xj))

        def as_numpy(r):
            return tuple(np.asarray(a) for a in (r if isinstance(r, tuple) else (r,)))

        out = {}
        for name, jac in (("jacrev", jax.jacrev), ("jacfwd", jax.jacfwd)):
            per_sample = jax.vmap(jac(f, argnums=1), in_axes=(None, 0))
            if task == "J1":
                out[f"jit({name})"] = (run(jax.jit(jac(f, argnums=1))), as_numpy)
            elif task == "J":
                out[f"jit(vmap({name}))"] = (run(jax.jit(per_sample)), as_numpy)
            elif task == "Jdet":

                def jdet(p, X, per_sample=per_sample):
                    J = per_sample(p, X)
                    return J, det2(J)

                out[f"jit(vmap({name})) + det"] = (run(jax.jit(jdet)), as_numpy)
            elif task == "d2":
                if name == "jacfwd":
                    second = jax.jit(jax.vmap(jax.jacfwd(jax.jacfwd(f, argnums=1), argnums=1), in_axes=(None, 0)))
                    out["jit(vmap(jacfwd(jacfwd)))"] = (run(second), lambda r: (np.asarray(r).reshape(len(X), -1),))
            elif task == "step":

                def loss(p, X, per_sample=per_sample):
                    return jnp.mean((det2(per_sample(p, X)) - 1) ** 2)

                step = jax.jit(jax.value_and_grad(loss))
                out[f"jit(value_and_grad) through vmap({name})"] = (
                    run(step),
                    lambda r: (np.asarray(r[0]), *(np.asarray(g) for g in r[1])),
                )
            else:
                raise ValueError(task)
        return out


class Torch(Peer):
    library = "PyTorch"

    def __init__(self, threads):
        import torch
        import torch.func

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set, or inter-op work already started
            pass
        self.torch = torch
        self.version = torch.__version__
        self.threads = torch.get_num_threads()
        self.act = {
            "relu": torch.relu,
            "tanh": torch.tanh,
            "sigmoid": torch.sigmoid,
            "softmax": lambda z: torch.softmax(z, dim=-1),
        }

    def methods(self, task, spec, X):
        torch = self.torch
        tf = torch.func
        params = [torch.tensor(p) for layer in spec if layer[0] == "affine" for p in layer[1:]]
        Xt = torch.tensor(X)
        f = lambda x: self.apply(spec, params, x)  # noqa: E731
        functional = torch.autograd.functional.jacobian

        def batch_functional():  # the sum over the batch, then (n, d_out, d_in)
            return functional(lambda X: f(X).sum(0), Xt, vectorize=True).permute(1, 0, 2)

        def as_numpy(r):
            return tuple(a.detach().numpy() for a in (r if isinstance(r, tuple) else (r,)))

        if task == "J1":
            return {
                "func.jacrev": (lambda: tf.jacrev(f)(Xt), as_numpy),
                "func.jacfwd": (lambda: tf.jacfwd(f)(Xt), as_numpy),
                "autograd.functional.jacobian(vectorize)": (lambda: functional(f, Xt, vectorize=True), as_numpy),
            }
        if task == "J":
            return {
                "func.vmap(jacrev)": (lambda: tf.vmap(tf.jacrev(f))(Xt), as_numpy),
                "func.vmap(jacfwd)": (lambda: tf.vmap(tf.jacfwd(f))(Xt), as_numpy),
                "autograd.functional.jacobian(vectorize), sum over batch": (batch_functional, as_numpy),
            }
        if task == "Jdet":

            def with_det(jac):
                def run():
                    J = jac()
                    return J, det2(J)

                return run

            return {
                "func.vmap(jacrev) + det": (with_det(lambda: tf.vmap(tf.jacrev(f))(Xt)), as_numpy),
                "func.vmap(jacfwd) + det": (with_det(lambda: tf.vmap(tf.jacfwd(f))(Xt)), as_numpy),
                "autograd.functional.jacobian(vectorize), sum over batch + det": (with_det(batch_functional), as_numpy),
            }
        if task == "d2":
            second = tf.vmap(tf.jacfwd(tf.jacfwd(f)))
            return {"func.vmap(jacfwd(jacfwd))": (lambda: second(Xt), lambda r: (r.numpy().reshape(len(X), -1),))}
        if task == "step":
            leaves = [p.clone().requires_grad_(True) for p in params]

            def double_backward():  # as torch_det_step in bench_training.py
                for p in leaves:
                    p.grad = None
                J = functional(lambda X: self.apply(spec, leaves, X).sum(0), Xt, create_graph=True, vectorize=True)
                loss = ((det2(J.permute(1, 0, 2)) - 1) ** 2).mean()
                loss.backward()
                # the last bias does not affect J: torch leaves its gradient None
                return (loss.detach(), *(torch.zeros_like(p) if p.grad is None else p.grad for p in leaves))

            def loss(params):
                J = tf.vmap(tf.jacrev(lambda x: self.apply(spec, params, x)))(Xt)
                return ((det2(J) - 1) ** 2).mean()

            grad_and_value = tf.grad_and_value(loss)

            def func_step():
                grads, value = grad_and_value(tuple(params))
                return (value, *grads)

            return {
                "double backward (functional.jacobian, create_graph)": (double_backward, as_numpy),
                "func.grad_and_value through vmap(jacrev)": (func_step, as_numpy),
            }
        raise ValueError(task)


def load_peers(threads):
    peers, notes = [], []
    for make, what in ((Autograd, "autograd"), (Jax, "jax, jaxlib"), (lambda: Torch(threads), "torch")):
        try:
            peers.append(make())
        except ImportError as error:
            notes.append(f"{what} not installed ({error}): skipped")
    return peers, notes


# --- threads -------------------------------------------------------------------------

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_threads(threads):
    """Re-run this script with every library limited to ``threads`` cores, once.

    NumPy (and its BLAS) is already loaded, so the environment variables only take
    effect in a new process, which inherits the CPU affinity set here.
    """
    marker = "JACOBIAN_NP_BENCH_THREADS"
    if os.environ.get(marker) == str(threads):
        return
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if threads < len(cpus):
            os.sched_setaffinity(0, cpus[:threads])
    except (AttributeError, OSError):  # no affinity control here: the variables still apply
        pass
    sys.stdout.flush()
    xla = "--xla_cpu_multi_thread_eigen=false" if threads == 1 else ""
    xla += f" intra_op_parallelism_threads={threads}"
    env = {**os.environ, **{k: str(threads) for k in THREAD_VARIABLES}, marker: str(threads),
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + xla).strip()}
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


# --- checking and timing -------------------------------------------------------------


def check(got, want, label):
    assert len(got) == len(want), f"{label}: {len(got)} results, expected {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        a, b = np.asarray(a), np.asarray(b)
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-13 * scale, err_msg=f"{label}, result {i} disagrees")


def run_group(group, task, net, X, peers, args):
    """Check every method against ours, then time them all interleaved.

    Returns rows ``(library, method, median s, first call s, repeats)``, ours first;
    repeats end in ``*`` for the slow methods, whose pairs do not count towards ours.
    """
    ours = ours_methods(task, net, X)
    reference = None
    calls = {}  # label -> (library, method, zero-argument call)
    first = {}
    for name, fn in ours.items():
        start = time.perf_counter()
        result = fn(X)
        first[("jacobian_np", name)] = time.perf_counter() - start
        if reference is None:
            reference = result
        else:
            check(result, reference, f"{group} jacobian_np {name}")
        calls[("jacobian_np", name)] = lambda fn=fn: fn(X)
    spec = describe(net)
    for peer in peers:
        for name, (call, to_numpy) in peer.methods(task, spec, X).items():
            start = time.perf_counter()
            result = call()
            first[(peer.library, name)] = time.perf_counter() - start
            check(to_numpy(result), reference, f"{group} {peer.library} {name}")
            calls[(peer.library, name)] = call
    # a warm call of each (the second of two in a row, so that no neighbour disturbs it)
    # sorts the methods and sets how many repeats fit the budget
    warm = {}
    for key, call in calls.items():
        call()
        start = time.perf_counter()
        call()
        warm[key] = time.perf_counter() - start
    ours = next(iter(calls))
    slow = [key for key in calls if key[0] != "jacobian_np" and warm[key] > SLOW * warm[ours]]
    # each method interleaved with ours, in pairs: interleaving all of them at once evicted
    # each one's code and data from the caches before its turn came (W4: ours 18 -> 32 us,
    # JAX's jacrev 10 -> 27 us), which measures the mix, not the libraries
    others = [key for key in calls if key != ours]
    medians, repeats, ours_times = {}, {}, []
    for key in others:
        round_time = warm[ours] + warm[key]
        share = args.budget / max(1, len(others))
        n = max(min(MIN_REPEATS, args.repeats), min(args.repeats, int(share / max(round_time, 1e-9))))
        pair = {k: (lambda _, call=calls[k]: call()) for k in (ours, key)}
        timed = interleaved_medians(pair, None, n)
        medians[key] = timed[key]
        repeats[key] = f"{n}*" if key in slow else str(n)
        if key not in slow:  # a slow method's memory traffic slows the calls after it
            ours_times.append(timed[ours])
    if not ours_times:  # nothing to pair with, or only slow methods: ours alone
        ours_times = [interleaved_medians({ours: lambda _: calls[ours]()}, None, max(MIN_REPEATS, args.repeats))[ours]]
    medians[ours] = float(np.median(ours_times))
    repeats[ours] = f"{len(ours_times)} pairs"
    return [(lib, name, medians[(lib, name)], first[(lib, name)], repeats[(lib, name)]) for lib, name in calls]


def ms(t):
    return f"{t * 1e3:.4g}"


# --- reporting -----------------------------------------------------------------------


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_name():
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - only informative
        return "unknown"


def thread_lines(peers, args):
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    lines = [
        f"threads: --threads {args.threads}; os.cpu_count() = {os.cpu_count()}, CPU affinity "
        f"{affinity if affinity is not None else 'unknown'}; NumPy BLAS: {blas_name()}; "
        + ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in THREAD_VARIABLES),
    ]
    for peer in peers:
        if peer.library == "PyTorch":
            lines.append(f"PyTorch: torch.set_num_threads({args.threads}) -> {peer.threads} threads")
        if peer.library == "JAX":
            lines.append(f"JAX: XLA's own thread pool, devices {peer.devices}; "
                         f"XLA_FLAGS={os.environ.get('XLA_FLAGS', 'unset')}")
    return lines


def table_lines(labels, results, markdown):
    out = []
    if markdown:
        out.append("| workload | library | method | median ms | peer / ours | first call ms | repeats |")
        out.append("|---|---|---|---:|---:|---:|---:|")
    else:
        header = (
            f"{'workload':<8} {'library':<12} {'method':<58} {'median':>10} {'/ours':>7} {'first call':>11} {'rep':>4}"
        )
        out += [header, "-" * len(header)]
    for group, rows in results.items():
        ours = rows[0][2]
        for i, (lib, name, t, first, repeats) in enumerate(rows):
            where = f"{group} {labels[group]}" if i == 0 else ""
            ratio = f"{t / ours:.2f}"
            if markdown:
                out.append(f"| {where} | {lib} | {name} | {ms(t)} | {ratio} | {ms(first)} | {repeats} |")
            else:
                if i == 0:
                    out.append(f"{group}: {labels[group]}")
                out.append(f"{'':<8} {lib:<12} {name:<58} {ms(t):>8}ms {ratio:>7} {ms(first):>9}ms {repeats:>4}")
    return out


def summary(results, libraries):
    """Per workload: ours, and each peer's fastest method as ms and peer / ours."""
    rows = []
    for group, table in results.items():
        ours = table[0][2]
        row = [group, ours]
        for lib in libraries:
            times = [(t, name) for l, name, t, _, _ in table if l == lib]
            row.append(min(times) if times else None)
        rows.append(row)
    return rows


def summary_lines(rows, libraries, markdown):
    out = []
    if markdown:
        cells = " | ".join(f"{lib}: best ms (/ ours)" for lib in libraries)
        out.append(f"| workload | jacobian_np ms | {cells} |")
        out.append("|---|---:|" + "---:|" * len(libraries))
        for group, ours, *best in rows:
            cells = ["—" if b is None else f"{ms(b[0])} ({b[0] / ours:.2f})" for b in best]
            out.append(f"| {group} | {ms(ours)} | " + " | ".join(cells) + " |")
    else:
        out.append(f"{'workload':<8} {'ours':>10}" + "".join(f" {lib + ' best (/ours)':>26}" for lib in libraries))
        for group, ours, *best in rows:
            cells = ["-" if b is None else f"{ms(b[0])}ms ({b[0] / ours:.2f})" for b in best]
            out.append(f"{group:<8} {ms(ours):>8}ms" + "".join(f" {c:>26}" for c in cells))
    return out


def faster_peers(results):
    found = []
    for group, rows in results.items():
        ours = rows[0][2]
        for lib, name, t, _, _ in rows[1:]:
            if lib != "jacobian_np" and t < ours:
                found.append(f"{group}: {lib} {name} {ms(t)} ms vs ours {ms(ours)} ms (peer / ours = {t / ours:.2f})")
    return found


def sweep_lines(sweeps, markdown):
    out = []
    for key, (title, sizes, series) in sweeps.items():
        if markdown:
            out.append(f"\n{title} (median ms):\n")
            out.append("| library: method | " + " | ".join(f"n = {n}" for n in sizes) + " |")
            out.append("|---|" + "---:|" * len(sizes))
        else:
            out.append(f"\n{title} (median ms)")
            out.append(f"{'library: method':<70}" + "".join(f" {'n=' + str(n):>9}" for n in sizes))
        for label, times in series.items():
            cells = [ms(times[n]) if n in times else "-" for n in sizes]
            if markdown:
                out.append(f"| {label} | " + " | ".join(cells) + " |")
            else:
                out.append(f"{label:<70}" + "".join(f" {c:>9}" for c in cells))
    return out


def plot(sweeps, path, threads):
    try:
        import matplotlib
    except ImportError:
        return "matplotlib not installed: no plot (bench/results.png not written)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    styles = {"jacobian_np": ("black", "o"), "autograd": ("tab:green", "s"), "JAX": ("tab:blue", "^"),
              "PyTorch": ("tab:red", "v")}
    dashes = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(6.6 * len(sweeps), 6.4), squeeze=False)
    for ax, (title, sizes, series) in zip(axes[0], sweeps.values()):
        seen = {}
        for label, times in series.items():
            lib = label.split(":")[0]
            color, marker = styles.get(lib, ("gray", "x"))
            k = seen[lib] = seen.get(lib, -1) + 1
            ns = [n for n in sizes if n in times]
            ax.plot(ns, [times[n] * 1e3 for n in ns], color=color, marker=marker, linestyle=dashes[k % 4],
                    linewidth=2.4 if lib == "jacobian_np" else 1.4, markersize=5, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(n) for n in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("batch size n (samples)")
        ax.set_ylabel("median time per call (ms)")
        ax.set_title(title, fontsize=11)
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", axis="y", alpha=0.1)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8.5, frameon=False)
    cores = "one core" if threads == 1 else f"{threads} cores"
    fig.suptitle(f"Per-sample input Jacobians against batch size: float64, CPU, {cores} per library "
                 "(log-log, lower is better)", fontsize=11.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to bench/{path.name}"


# --- main ----------------------------------------------------------------------------


def main():
    parser = argument_parser(__doc__, None, "interleaved repeats per group (default 20)")
    parser.add_argument("--budget", type=float, default=12.0,
                        help="seconds of timing per group: slow groups get fewer repeats (at least 5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="cores for every library: BLAS/OpenMP variables, CPU affinity, torch (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2 repeats, batches of at most 256, batch sizes 16 and 256 in the sweep")
    parser.add_argument("--write", action="store_true", help="write bench/RESULTS.md and bench/results.png")
    parser.add_argument("--ours-alone", action="store_true", help=argparse.SUPPRESS)  # see allocator_comparison
    args = parser.parse_args()
    if args.quick and args.write:
        parser.error("--write records a real run; it cannot be combined with --quick")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.repeats is None:
        args.repeats = 2 if args.quick else 20
    sizes = [16, 256] if args.quick else [16, 64, 256, 1024, 4096]
    pin_threads(args.threads)
    steady_allocator()
    blas = one_blas_thread() if args.threads == 1 else "NumPy's BLAS threads from the variables above"
    if args.ours_alone:  # a child of allocator_comparison: our times, as one line of JSON
        print(json.dumps(ours_alone(workloads(np.random.default_rng(0), 256 if args.quick else None), args)))
        return
    began = time.perf_counter()

    peers, notes = load_peers(args.threads)
    versions = [f"{peer.library} {peer.version}" for peer in peers]
    header = [environment(), f"CPU: {cpu_model()}", *thread_lines(peers, args), blas, allocator_note(),
              f"peers: {', '.join(versions) or 'none'}"]
    for line in header + notes:
        print(line)
    print(f"medians of up to {args.repeats} interleaved repeats ({args.budget:g} s budget per group); "
          f"every result checked against ours (rtol {RTOL:g}) first\n")

    results, labels, cases = {}, {}, workloads(np.random.default_rng(0), 256 if args.quick else None)
    print("\n".join(table_lines({}, {}, markdown=False)))
    for group, (label, task, net, X) in cases.items():
        labels[group] = label
        results[group] = run_group(group, task, net, X, peers, args)
        print("\n".join(table_lines({group: label}, {group: results[group]}, markdown=False)[2:]), flush=True)

    print(f"rep: interleaved repeats of the method paired with ours (ours: how many pairs); "
          f"* = slower than {SLOW} x ours, its pair left out of ours' time")
    libraries = [peer.library for peer in peers]
    print("\nfastest method of each library (peer / ours > 1: jacobian_np is faster)")
    for line in summary_lines(summary(results, libraries), libraries, markdown=False):
        print(line)

    # time against batch size on the W2 and W5 networks, for the plot
    sweeps = {}
    for key, title in SWEEPS.items():
        _, task, net, X_main = cases[key]
        series = {}
        for n in sizes:
            if n == len(X_main):
                rows = results[key]
            else:
                X = np.random.default_rng(n).normal(size=(n, X_main.shape[1]))
                rows = run_group(f"{key} n={n}", task, net, X, peers, args)
            for lib, name, t, _, _ in rows:
                series.setdefault(f"{lib}: {name}", {})[n] = t
        sweeps[key] = (title, sizes, series)
    for line in sweep_lines(sweeps, markdown=False):
        print(line)

    allocator = allocator_comparison(args)
    for line in allocator_lines(allocator, markdown=False):
        print(line)

    faster = faster_peers(results)
    print("\npeers faster than jacobian_np: " + ("none" if not faster else ""))
    for line in faster:
        print("  " + line)
    elapsed = time.perf_counter() - began
    print(f"\ntotal {elapsed:.0f} s")

    if not args.write:
        print("(not written: pass --write to save bench/RESULTS.md and bench/results.png)")
        return
    png = plot(sweeps, HERE / "results.png", args.threads)
    print(png)
    command = "python bench/bench_peers.py " + " ".join(sys.argv[1:])
    write_results(HERE / "RESULTS.md", command, header, notes, results, labels, libraries, sweeps, faster, png, args,
                  elapsed, allocator)
    print(f"results written to {HERE / 'RESULTS.md'}")


def ours_alone(cases, args):
    """Median seconds of jacobian_np's headline method of each workload, timed alone."""
    out = {}
    for group, (label, task, net, X) in cases.items():
        name, fn = next(iter(ours_methods(task, net, X).items()))
        fn(X)
        once = time.perf_counter()
        fn(X)
        once = time.perf_counter() - once
        repeats = max(MIN_REPEATS, min(args.repeats, int(args.budget / 8 / max(once, 1e-9))))
        out[group] = (name, interleaved_medians({name: lambda _, fn=fn, X=X: fn(X)}, None, repeats)[name])
    return out


def allocator_comparison(args, rounds=4):
    """jacobian_np's headline methods timed alone in fresh processes, alternately with the
    allocator as it comes and with glibc's heap trimming off (the variables of
    --tuned-malloc), ``rounds`` times each: workload -> (name, default s, tuned s), the
    fastest of the rounds (the others met other work on the machine); ``None`` off Linux
    or when the whole run is tuned."""
    if args.tuned_malloc or platform.system() != "Linux":
        return None
    command = [sys.executable, str(Path(__file__).resolve()), "--ours-alone", "--repeats", str(args.repeats),
               "--budget", str(args.budget), "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    default_env = {k: v for k, v in os.environ.items() if k not in _ALLOCATOR}
    times: dict = {"default": [], "tuned": []}
    for _ in range(rounds):
        for kind, env in (("default", default_env), ("tuned", {**default_env, **_ALLOCATOR})):
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            times[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        group: (name, min(run[group][1] for run in times["default"]), min(run[group][1] for run in times["tuned"]))
        for group, (name, _) in times["default"][0].items()
    }


def allocator_lines(allocator, markdown):
    if allocator is None:
        return []
    out = []
    if markdown:
        out += ["| workload | method | default allocator ms | heap trimming off ms | default / tuned |",
                "|---|---|---:|---:|---:|"]
        out += [f"| {g} | {name} | {ms(a)} | {ms(b)} | {a / b:.2f} |" for g, (name, a, b) in allocator.items()]
    else:
        out.append("\njacobian_np alone: the allocator as it comes, and heap trimming off (fresh processes, alternately)")
        out += [f"{g:<8} {name:<40} {ms(a):>9}ms {ms(b):>9}ms  {a / b:5.2f}" for g, (name, a, b) in allocator.items()]
    return out


def write_results(path, command, header, notes, results, labels, libraries, sweeps, faster, png, args, elapsed,
                  allocator=None):
    md = [
        "# jacobian_np against autograd, JAX and PyTorch",
        "",
        f"Written by `{command.strip()}` (bench/bench_peers.py; {elapsed:.0f} s). Regenerate with "
        "`python bench/bench_peers.py --write`; without `--write` the script writes nothing.",
        "",
        "## Machine and settings",
        "",
        *[f"- {line}" for line in header],
        f"- medians of up to {args.repeats} interleaved repeats of each method paired with jacobian_np's first "
        f"(fewer, at least {MIN_REPEATS}, when the pairs' rounds of calls would exceed the {args.budget:g} s "
        "budget per workload: see the repeats column); every result checked against jacobian_np's "
        f"(`assert_allclose`, rtol {RTOL:g}) before timing",
        "- float64 everywhere; the same weights (built by jacobian_np with a fixed seed) in every library; "
        "inputs converted to each library's arrays before timing and results left in them "
        "(JAX: `block_until_ready`)",
        "",
        "## Results",
        "",
        "Median time per call in milliseconds. *peer / ours* is the method's median over jacobian_np's "
        "(first row of each workload): above 1, jacobian_np is faster. *first call* is the first call of "
        "the method on this input shape, which for JAX includes tracing and XLA compilation (PyTorch and "
        "autograd trace on every call, so theirs is a warm-up). Each method is timed interleaved with "
        "jacobian_np's first method, in pairs; *repeats* counts the interleaved repeats of the pair, and for "
        "jacobian_np's first method the pairs its time is the median over. "
        f"`*` marks the methods more than {SLOW} x slower than ours, whose pairs are left out of ours' time "
        "(their memory traffic slows the calls after them). Interleaving all methods of a workload at once, "
        "as earlier versions did, evicted each library's code and data from the caches before its turn "
        "(W4: ours 18 -> 32 us, JAX's jacrev 10 -> 27 us).",
        "",
        *table_lines(labels, results, markdown=True),
        "",
        "Fastest method of each library per workload:",
        "",
        *summary_lines(summary(results, libraries), libraries, markdown=True),
        "",
        "## Compile and first-call times",
        "",
        "| workload | library | method | first call ms | median ms | first / median |",
        "|---|---|---|---:|---:|---:|",
    ]
    for group, rows in results.items():
        for lib, name, t, first, _ in rows:
            if lib != "jacobian_np":
                md.append(f"| {group} | {lib} | {name} | {ms(first)} | {ms(t)} | {first / t:.0f} |")
    md += [
        "",
        "For JAX the first call is the compilation cost, paid again for every new input shape (each batch "
        "size of the sweep below compiles anew).",
        "",
        "## Time against batch size",
        "",
        "The W2 and W5 networks (same weights) at batch sizes "
        f"{', '.join(str(n) for n in next(iter(sweeps.values()))[1])} (new inputs; a batch size equal to the "
        "workload's reuses its row above); `bench/results.png` plots them.",
        *sweep_lines(sweeps, markdown=True),
        "",
    ]
    if allocator:
        md += [
            "## Allocator",
            "",
            "The tables above use the C library's allocator as it comes. Here jacobian_np's headline method of "
            "each workload is timed alone (medians of interleaved repeats) in fresh processes, four with that "
            "allocator and four with glibc's heap trimming off (`MALLOC_TRIM_THRESHOLD_` and "
            "`MALLOC_MMAP_THRESHOLD_` at 1 GiB, as earlier versions of these benchmarks ran, `--tuned-malloc`), "
            "alternately; the fastest process of each kind (on a shared machine the others met other work):",
            "",
            *allocator_lines(allocator, markdown=True),
            "",
        ]
    md += [
        "## Notes",
        "",
    ]
    if faster:
        md.append("- Peer methods faster than jacobian_np (peer / ours < 1):")
        md += [f"  - {line}" for line in faster]
    else:
        md.append("- No peer method is faster than jacobian_np on any workload.")
    md += [f"- {note}" for note in notes] or ["- All three peers were installed: nothing was skipped."]
    cores = "one core" if args.threads == 1 else f"{args.threads} cores"
    md += [
        f"- Threads: every library ran on {cores} (`--threads {args.threads}`; the default is 1): NumPy's BLAS "
        "limited by threadpoolctl and the OpenBLAS/OpenMP/MKL variables, XLA by `XLA_FLAGS` "
        "(`--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`) and with asynchronous CPU "
        "dispatch off (`jax_cpu_enable_async_dispatch`; its worker thread otherwise kept the core busy after "
        "each call, and the next library's calls ran up to 20 times slower), PyTorch by `torch.set_num_threads`. "
        "With NumPy's OpenBLAS, XLA and PyTorch each keeping a thread pool in one process, on a 2-core virtual "
        "machine OpenBLAS's threads were starved after JAX or PyTorch calls (a 0.4 ms forward pass took 16 ms), "
        "which measures the co-tenancy, not the libraries; one core each avoids it. `--threads 2` measures "
        "multi-threaded runs, with that caveat.",
    ]
    jax_first = [first for rows in results.values() for lib, _, _, first, _ in rows if lib == "JAX"]
    if jax_first:
        md.append(
            f"- First calls: JAX compiles once per function and input shape ({min(jax_first):.2g} to "
            f"{max(jax_first):.2g} s here, compilation and the first run together); PyTorch's first `torch.func` "
            "call in a process pays a one-time set-up (the first PyTorch row, W1's `func.jacrev`)."
        )
    md += [
        "- autograd has no batched (vmap) Jacobian: `jacobian` of the sum over the batch runs one backward "
        "pass per output (501 for W3); for W3's single input its forward mode `deriv` is timed too, and "
        "nested for d2u/dx2 (`jacobian` nested would need 501 x 501 passes).",
        "- W2 and the training step: every library computes the 2 x 2 determinants in closed form, "
        "`J[..., 0, 0] * J[..., 1, 1] - J[..., 0, 1] * J[..., 1, 0]` (a general `det` is an LU factorisation "
        "per matrix and cost more than the Jacobian in some libraries); ours differentiates it with "
        "`losses.det`, the peers by automatic differentiation.",
        "- PyTorch: `torch.func` transforms are not compiled (no `torch.compile`); "
        "`autograd.functional.jacobian(vectorize=True)` differentiates the sum over the batch.",
        "- W3's d2u/dx2: ours is `laplacian` (equal to `hessian` for one input, which is also shown); the "
        "peers compute the full per-sample Hessian `jacfwd(jacfwd)`, of the same size here.",
        "- The training step's last bias does not affect J; its gradient is 0 in every library "
        "(PyTorch's double backward leaves it None, counted as zeros).",
        f"- {png[0].upper() + png[1:]}.",
        "",
    ]
    path.write_text("\n".join(md))


if __name__ == "__main__":
    main()
