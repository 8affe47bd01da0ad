"""Benchmark: a Jacobian-determinant loss and its weight gradient, against a forward pass.

A plain script, not collected by pytest::

    python bench/bench_training.py [--repeats 200]

The 2 -> 5 -> 5 -> 2 tanh network (linear output) at a batch of 256:
``loss = mean((det J(x) - 1)**2)`` and its gradient with respect to all weights,
as one optimisation step needs it, relative to one forward pass.  For comparison
the same step as a plain mean-squared-error loss (``param_grad``), and, where
PyTorch is installed, the det loss with torch's double backward
(``autograd.functional.jacobian(create_graph=True, vectorize=True)`` then
``backward``) on the same float64 weights.

Target (issue 5): det-loss step <= 6 x forward (the question reported 12 x in PyTorch).
"""

from __future__ import annotations

import time

import numpy as np
from _timing import argument_parser, interleaved_medians, start

import jacobian_np as jn
from jacobian_np import losses


def network(rng):
    return jn.Network(
        [
            jn.Affine(rng.normal(size=(2, 5)) * 0.5, rng.normal(size=5) * 0.1),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(5, 5)) * 0.5, rng.normal(size=5) * 0.1),
            jn.Tanh(),
            jn.Affine(rng.normal(size=(5, 2)) * 0.5, rng.normal(size=2) * 0.1),
        ]
    )


def det_step(net, X):
    """The loss and its gradient with respect to every parameter."""
    J, pullback = net.jacobian_and_pullback(X)
    d, d_grad = losses.det(J)
    return np.mean((d - 1) ** 2), pullback((2 * (d - 1) / len(d))[:, None, None] * d_grad)


def mse_step(net, X, T):
    y = net.forward(X)
    return np.mean((y - T) ** 2), net.param_grad(X, 2 * (y - T) / y.size)


def torch_det_step(net, X):
    """The same loss with torch's double backward; None if torch is missing."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    params = [torch.tensor(p, requires_grad=True) for p in net.params]
    Xt = torch.tensor(X)

    def f(x):
        W1, b1, W2, b2, W3, b3 = params
        return torch.tanh(torch.tanh(x @ W1 + b1) @ W2 + b2) @ W3 + b3

    def step(_):
        for p in params:
            p.grad = None
        # per-sample J: the samples are independent, so differentiate the sum over them
        J = torch.autograd.functional.jacobian(lambda x: f(x).sum(0), Xt, create_graph=True, vectorize=True)
        loss = ((torch.linalg.det(J.permute(1, 0, 2)) - 1) ** 2).mean()
        loss.backward()
        # the last bias does not affect J: torch leaves its gradient None
        return loss.item(), [np.zeros(p.shape) if p.grad is None else p.grad.numpy() for p in params]

    forward = lambda _: f(Xt).detach()  # noqa: E731
    return step, forward, torch.__version__


def main():
    args = argument_parser(__doc__, 200).parse_args()
    start(args.repeats)

    rng = np.random.default_rng(0)
    net = network(rng)
    X = rng.uniform(-1, 1, size=(256, 2))
    T = rng.normal(size=(256, 2))
    loss, grads = det_step(net, X)
    functions = {
        "forward": net.forward,
        "det loss + gradient": lambda X: det_step(net, X),
        "mse loss + gradient": lambda X: mse_step(net, X, T),
    }
    torch_run = torch_det_step(net, X)
    if torch_run is not None:
        step, torch_forward, version = torch_run
        torch_loss, torch_grads = step(None)
        np.testing.assert_allclose(torch_loss, loss, rtol=1e-10)
        for a, b in zip(torch_grads, grads):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
        functions["torch forward"] = torch_forward
        functions["torch det loss + double backward"] = step
    t = interleaved_medians(functions, X, args.repeats)
    print(f"{'2->5->5->2 tanh, n=256':<40} {'time':>10} {'/ forward':>10}")
    print("-" * 62)
    for name in ("forward", "det loss + gradient", "mse loss + gradient"):
        print(f"{name:<40} {t[name] * 1e6:>8.1f}us {t[name] / t['forward']:>10.2f}")
    ratio = t["det loss + gradient"] / t["forward"]
    print(f"\ndet-loss step / forward = {ratio:.2f} (target <= 6)")
    if torch_run is None:
        print("PyTorch not installed: double-backward comparison skipped")
    else:
        tf, ts = t["torch forward"], t["torch det loss + double backward"]
        print(
            f"PyTorch {version} (1 thread): forward {tf * 1e6:.1f}us, det loss + double backward "
            f"{ts * 1e6:.1f}us = {ts / tf:.1f} x its forward; ours / torch = {t['det loss + gradient'] / ts:.2f}"
        )
    if ratio > 6:
        print("targets missed: det-loss ratio")


if __name__ == "__main__":
    main()
