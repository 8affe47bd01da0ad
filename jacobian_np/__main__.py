"""Command line: ``python -m jacobian_np`` (also installed as ``jacobian-np``).

Errors are one line on stderr and a non-zero exit status, never a traceback;
usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np

from . import __version__
from .activations import ReLU, Softmax
from .affine import Affine
from .checks import check_network
from .network import Network


def demo_network(seed: int = 0) -> Network:
    """The demo's 500 -> 100 (ReLU) -> 10 (softmax) classifier with fixed random weights.

    Examples
    --------
    >>> from jacobian_np.__main__ import demo_network
    >>> demo_network()
    Network([Affine(d_in=500, d_out=100), ReLU(), Affine(d_in=100, d_out=10), Softmax()])
    """
    rng = np.random.default_rng(seed)
    return Network(
        [
            Affine(rng.normal(0, np.sqrt(2 / 500), (500, 100)), rng.normal(0, 0.1, 100)),
            ReLU(),
            Affine(rng.normal(0, np.sqrt(2 / 100), (100, 10)), rng.normal(0, 0.1, 10)),
            Softmax(),
        ]
    )


def _median_seconds(f: Callable[[], object], repeats: int) -> float:
    f()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def demo(args: argparse.Namespace) -> int:
    """Differentiate a fixed-seed classifier at one input and explain the result."""
    net = demo_network()
    x = np.random.default_rng(1).normal(size=500)
    y, J = net.forward_backward(x)
    top = int(np.argmax(y))
    print("jacobian_np demo: a 500 -> 100 (ReLU) -> 10 (softmax) classifier, fixed seed\n")
    print("class probabilities:")
    print("  " + "  ".join(f"{j}: {p:.3f}" for j, p in enumerate(y)))
    print(f"\nJacobian J[j, k] = d p_j / d x_k: shape {J.shape} (outputs x inputs)")
    print(f"top class {top} (p = {y[top]:.3f}); the five inputs with the largest influence on it:")
    print(f"  {'input':>5}  {'x_k':>8}  {f'dp_{top}/dx_k':>12}")
    for k in np.argsort(-np.abs(J[top]))[:5]:
        print(f"  {k:>5}  {x[k]:>+8.3f}  {J[top, k]:>+12.4e}")
    result = check_network(net, x)
    verdict = "passed" if result else "FAILED"
    print(
        f"\ncheck_network against central differences (float64): {verdict}, "
        f"max abs error {result.max_abs_error:.1e}"
    )
    t_forward = _median_seconds(lambda: net.forward(x), args.repeats)
    t_both = _median_seconds(lambda: net.forward_backward(x), args.repeats)
    print(
        f"time (median of {args.repeats}): forward {t_forward * 1e6:.1f} us, "
        f"forward_backward {t_both * 1e6:.1f} us, ratio {t_both / t_forward:.2f}"
    )
    return 0 if result else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jacobian-np",
        description="Input Jacobians of feed-forward neural networks, in pure NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = commands.add_parser("demo", help="differentiate a built-in example classifier")
    p.add_argument("--repeats", type=_positive_int, default=200, help="timing repeats (default 200)")
    p.set_defaults(run=demo)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (ValueError, TypeError, OSError) as error:
        print(f"jacobian-np: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
