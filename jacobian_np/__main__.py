"""Command line: ``python -m jacobian_np`` (also installed as ``jacobian-np``).

Commands: ``demo``, ``jacobian MODEL INPUTS -o OUT``, ``check MODEL``, ``info MODEL``
(see ``docs/command_line.md``).

Errors are one line on stderr and a non-zero exit status, never a traceback;
usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np

from . import __version__
from .activations import ReLU, Softmax
from .affine import Affine
from .checks import check_layer, check_network
from ._validation import as_input
from .io import load
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


def read_model(path: str) -> Network:
    """A network from a ``.npz`` file of :func:`jacobian_np.save` or an ``.onnx`` file."""
    if path.endswith(".onnx"):
        from .importers import from_onnx

        return from_onnx(path)
    if path.endswith(".npz"):
        return load(path)
    raise ValueError(f"MODEL must be a .npz file (jacobian_np.save) or an .onnx file; got {path!r}")


def read_inputs(path: str) -> np.ndarray:
    """Inputs from ``.npy`` (1-D or 2-D, no pickle) or ``.csv`` (one sample per row)."""
    if path.endswith((".npy", ".csv")) and not os.path.exists(path):
        raise FileNotFoundError(f"no such inputs file: {path!r}")
    if path.endswith(".npy"):
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"cannot read {path!r} as .npy: {error}") from None
    if path.endswith(".csv"):
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, comments="#")
        except ValueError as error:
            raise ValueError(f"cannot read {path!r} as CSV of numbers: {error}") from None
    raise ValueError(f"INPUTS must be a .npy or .csv file; got {path!r}")


def write_jacobian(path: str, J: np.ndarray) -> None:
    """``.npy`` keeps the shape; ``.csv`` has one row per sample, ``J[i, j, k]`` in column ``j * d_in + k``."""
    if path.endswith(".npy"):
        np.save(path, J)
    elif path.endswith(".csv"):
        rows = J.reshape(1, -1) if J.ndim == 2 else J.reshape(len(J), -1)
        d_out, d_in = J.shape[-2:]
        header = f"J[i, j, k] = dy_j/dx_k of sample i (one row per sample), column j*{d_in}+k; d_out={d_out}, d_in={d_in}"
        np.savetxt(path, rows, delimiter=",", header=header, fmt="%.17g")
    else:
        raise ValueError(f"OUT must be a .npy or .csv file; got {path!r}")


def jacobian(args: argparse.Namespace) -> int:
    """Per-sample Jacobians of a saved model at the inputs of a file."""
    net = read_model(args.model)
    x = as_input(read_inputs(args.inputs), net.d_in, "the model")  # whole-batch shape in errors
    if x.ndim != 2 or len(x) <= 1:
        J = net.jacobian(x, mode=args.mode, chunk_size=args.chunk_size)
    else:
        J = _with_progress(net, x, args.chunk_size, args.mode)
    write_jacobian(args.output, J)
    print(f"wrote J of shape {J.shape} to {args.output}")
    return 0


def _with_progress(net: Network, x: np.ndarray, chunk_size: Optional[int], mode: str) -> np.ndarray:
    """The Jacobian of a batch in chunks, with a progress bar on stderr once it
    is clear the whole batch will take more than about a second."""
    n = len(x)
    step = chunk_size or max(1, n // 100)  # about 100 updates; each call still chunks to the budget
    start = time.perf_counter()
    first = net.jacobian(x[:step], mode=mode, chunk_size=chunk_size)
    J = np.empty((n,) + first.shape[1:], dtype=first.dtype)
    J[:step] = first
    show = (time.perf_counter() - start) * n / step > 1.0
    for begin in range(step, n, step):
        J[begin : begin + step] = net.jacobian(x[begin : begin + step], mode=mode, chunk_size=chunk_size)
        if show:
            done = min(n, begin + step)
            bar = "#" * (30 * done // n)
            print(
                f"\r[{bar:<30}] {done}/{n} samples, {time.perf_counter() - start:.1f} s",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if show:
        print(file=sys.stderr)
    return J


def check(args: argparse.Namespace) -> int:
    """Finite-difference checks of every layer and of the whole network."""
    net = read_model(args.model)
    rng = np.random.default_rng(args.seed)
    if net.d_in is None:
        raise ValueError("the model has no input width (activations only): nothing to check")
    x = rng.standard_normal((args.points, net.d_in))
    print(f"checking {net} at {args.points} random inputs (seed {args.seed})")
    ok = True
    h: np.ndarray = x
    for index, layer in enumerate(net.layers):
        result = check_layer(layer, h, rng=rng)
        ok &= bool(result)
        print(f"  layer {index} {layer!r}: {'ok' if result else 'FAILED'}, max rel error {result.max_rel_error:.1e}")
        if not result:
            print("    " + str(result).replace("\n", "\n    "))
        h = layer.forward(h)[0]
    result = check_network(net, x)
    ok &= bool(result)
    print(f"  network: {'ok' if result else 'FAILED'}, max rel error {result.max_rel_error:.1e}")
    if not result:
        print("    " + str(result).replace("\n", "\n    "))
    print("passed" if ok else "FAILED")
    return 0 if ok else 1


def info(args: argparse.Namespace) -> int:
    """Layers, widths, parameter count and mode costs of a model."""
    net = read_model(args.model)
    print(f"{args.model}: {len(net.layers)} layers, d_in = {net.d_in}, d_out = {net.d_out}")
    width = net.d_in
    for index, layer in enumerate(net.layers):
        out = layer.d_out if layer.d_out is not None else width
        count = sum(p.size for p in layer.params)
        print(f"  {index:>3}  {layer!r:<32} {width} -> {out}" + (f"  ({count} parameters)" if count else ""))
        width = out
    total = sum(p.size for p in net.params)
    dtypes = sorted({str(p.dtype) for p in net.params}) or ["none"]
    print(f"parameters: {total} ({', '.join(dtypes)})")
    costs = net.mode_costs()
    if costs["reverse"] is not None:
        print(
            "multiply-adds per sample for J: "
            + ", ".join(f"{mode} {cost}" for mode, cost in costs.items() if cost is not None)
            + f"; mode='auto' uses {net._auto_mode}"
        )
    return 0


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
    p = commands.add_parser("jacobian", help="per-sample Jacobians of a model at inputs from a file")
    p.add_argument("model", metavar="MODEL", help="model file: .npz (jacobian_np.save) or .onnx")
    p.add_argument("inputs", metavar="INPUTS", help="inputs: .npy (d_in,) or (n, d_in), or .csv, one sample per row")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="output: .npy (J as is) or .csv (a row per sample)")
    p.add_argument("--mode", choices=("auto", "forward", "reverse"), default="auto", help="default auto")
    p.add_argument("--chunk-size", type=_positive_int, default=None, help="samples per chunk (default: by memory)")
    p.set_defaults(run=jacobian)
    p = commands.add_parser("check", help="finite-difference checks of every layer and of the network")
    p.add_argument("model", metavar="MODEL", help="model file: .npz or .onnx")
    p.add_argument("--points", type=_positive_int, default=5, help="random inputs (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(run=check)
    p = commands.add_parser("info", help="layers, widths and parameter count of a model")
    p.add_argument("model", metavar="MODEL", help="model file: .npz or .onnx")
    p.set_defaults(run=info)
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
    except (ValueError, TypeError, OSError, NotImplementedError, ImportError) as error:
        print(f"jacobian-np: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
