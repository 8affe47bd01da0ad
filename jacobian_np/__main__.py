"""Command line: ``python -m jacobian_np`` (also installed as ``jacobian-np``).

Commands: ``demo``, ``jacobian MODEL INPUTS -o OUT``, ``check MODEL [--inputs FILE]``,
``info MODEL`` (see ``docs/command_line.md``).

Errors are one line on stderr and exit status 1, never a traceback (running out
of memory included); usage errors exit with status 2.  Everything that can be
checked before computing is: the output path and format, the model and inputs
files, and the size of the result.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from . import __version__, _npy
from ._validation import as_input
from .activations import ReLU, Softmax
from .affine import Affine
from .checks import check_layer, check_network
from .composite import Parallel, Residual
from .io import _read_model_file
from .network import Network

PROG = "jacobian-np"
#: Model formats that are pickles: never loaded, but the message says how to convert them.
_PICKLED = {
    ".joblib": "a scikit-learn model saved with joblib",
    ".pkl": "a pickled model",
    ".pickle": "a pickled model",
    ".pt": "a PyTorch file",
    ".pth": "a PyTorch file",
}


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


# --- files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A network read from a file, with the input statistics saved with it (if any)."""

    network: Network
    input_mean: Optional[np.ndarray] = None
    input_std: Optional[np.ndarray] = None


def read_model(path: str) -> Model:
    """A network from a ``.npz`` file of :func:`jacobian_np.save` or an ``.onnx`` file."""
    stem, extension = os.path.splitext(path)
    extension = extension.lower()
    if extension in _PICKLED:
        if extension in (".pt", ".pth"):
            how = "jacobian_np.save(jacobian_np.from_torch(module), ...) or export it with torch.onnx.export"
        else:
            how = f"jacobian_np.save(jacobian_np.from_sklearn(joblib.load({path!r})), ...)"
        raise ValueError(
            f"{path!r} is {_PICKLED[extension]}, which {PROG} does not load (unpickling can run any code); "
            f"convert it once in Python, where you trust it: {how} to write {os.path.basename(stem) + '.npz'!r}"
        )
    if extension == ".onnx":
        from .importers import from_onnx

        if not os.path.exists(path):
            raise FileNotFoundError(f"no such model file: {path!r}")
        return Model(from_onnx(path))
    if extension == ".npz":
        contents = _read_model_file(path)
        return Model(contents.network, contents.input_mean, contents.input_std)
    raise ValueError(f"MODEL must be a .npz file (jacobian_np.save) or an .onnx file; got {path!r}")


@dataclass(frozen=True)
class Inputs:
    """Inputs read from a file: the array and, for a CSV file with a header row, the column names."""

    x: np.ndarray
    names: Optional[tuple[str, ...]]
    path: str


def read_inputs(path: str, header: Optional[bool] = None) -> Inputs:
    """Inputs from ``.npy`` (1-D or 2-D, no pickle) or ``.csv`` (one sample per row).

    ``header``: whether a CSV file's first row holds column names; ``None`` detects
    it (a first row with a field that is not a number).
    """
    if not path.endswith((".npy", ".csv")):
        raise ValueError(f"INPUTS must be a .npy or .csv file; got {path!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such inputs file: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"INPUTS {path!r} is a directory, not a file")
    if path.endswith(".npy"):
        return Inputs(_read_npy(path), None, path)
    return _read_csv(path, header)


def _read_npy(path: str) -> np.ndarray:
    """A ``.npy`` file's array; the declared size is compared with the file's before allocating."""
    with open(path, "rb") as file:
        header = _npy.read_header(file, f"inputs file {path!r}")
        stored = _npy.stored_bytes_after(file)
        if stored is not None and header.nbytes > stored:
            raise ValueError(
                f"{path!r} declares shape {header.shape} ({_size(header.nbytes)}) but holds {_size(stored)} "
                "of data: the file is truncated or corrupt"
            )
        if header.dtype.kind not in "biuf":
            raise ValueError(f"{path!r} holds {header.dtype} values; expected real numbers")
        _check_memory(header.nbytes, f"the inputs in {path!r} (shape {header.shape}, {header.dtype})")
        return _npy.read_array(file, header, repr(path))


def _read_csv(path: str, header: Optional[bool]) -> Inputs:
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            text = file.read()
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {path!r} as CSV: it is not UTF-8 text") from None
    lines = [
        (number, line) for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    del text
    if not lines:
        raise ValueError(f"{path!r} is empty: it holds no rows of numbers")
    first = next(csv.reader([lines[0][1]]))
    if header is None:
        header = not all(_number_or_blank(field) for field in first)
    names = tuple(field.strip() for field in first) if header else None
    rows = lines[1:] if header else lines
    if not rows:
        raise ValueError(f"{path!r} has a header row but no rows of numbers")
    return Inputs(_parse_rows(rows, path), names, path)


def _number_or_blank(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return not field.strip()
    return True


def _parse_rows(rows: list[tuple[int, str]], path: str) -> np.ndarray:
    """CSV rows as a float64 array: NumPy's fast parser, or, when it refuses a row,
    a slow one that reads blank fields as NaN and names the bad field."""
    try:
        return np.loadtxt([line for _, line in rows], delimiter=",", ndmin=2, dtype=np.float64, quotechar='"')
    except ValueError:
        pass
    values = np.empty((len(rows), len(next(csv.reader([rows[0][1]])))))
    for index, (number, line) in enumerate(rows):
        fields = next(csv.reader([line]))
        if len(fields) != values.shape[1]:
            raise ValueError(
                f"{path!r}, line {number}: {len(fields)} columns, but the rows before have {values.shape[1]}"
            )
        for column, field in enumerate(fields):
            if not field.strip():
                values[index, column] = np.nan  # a missing value, as pandas writes NaN
                continue
            try:
                values[index, column] = float(field)
            except ValueError:
                raise ValueError(f"{path!r}, line {number}, column {column + 1}: {field!r:.40} is not a number") from None
    return values


def _refuse_index_column(inputs: Inputs, d_in: Optional[int]) -> None:
    """Refuse a first column that is a row index (as ``DataFrame.to_csv`` writes by default)."""
    x = inputs.x
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        return
    first = x[:, 0]
    unnamed = inputs.names is not None and inputs.names[0] in ("", "Unnamed: 0")
    integers = bool(np.all(np.isfinite(first)) and np.all(first == np.round(first)))
    counting = np.array_equal(first, np.arange(len(x))) or np.array_equal(first, np.arange(1, len(x) + 1))
    if (unnamed and integers) or (counting and d_in is not None and x.shape[1] == d_in + 1):
        what = "unnamed, with whole numbers" if unnamed else f"{int(first[0])}, {int(first[1])}, ..., {int(first[-1])}"
        raise ValueError(
            f"the first column of {inputs.path!r} looks like a row index ({what}), not an input: "
            "write the file with DataFrame.to_csv(path, index=False), or remove that column"
        )


def _warn_non_finite_rows(inputs: Inputs, x: np.ndarray) -> None:
    bad = np.flatnonzero(~np.all(np.isfinite(x.reshape(-1, x.shape[-1])), axis=-1))
    if len(bad):
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        _warn(
            f"{len(bad)} of {len(x.reshape(-1, x.shape[-1]))} rows of {inputs.path!r} contain NaN or infinity "
            f"(sample {shown}); their results are NaN or meaningless"
        )


def check_output(path: str) -> None:
    """Refuse an output path that cannot be written, before any computing."""
    if not path.endswith((".npy", ".csv")):
        raise ValueError(f"OUT must be a .npy or .csv file; got {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"OUT {path!r} is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"the directory of OUT does not exist: {directory!r}")
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise PermissionError(f"cannot write OUT {path!r}: permission denied")


def write_jacobian(path: str, J: np.ndarray, input_names: Optional[Sequence[str]] = None) -> None:
    """``.npy`` keeps the shape; ``.csv`` has a header row of column names
    ``dy<j>/d<input k>`` and one row per sample, ``J[i, j, k]`` in column ``j * d_in + k``."""
    if path.endswith(".npy"):
        np.save(path, J)
    elif path.endswith(".csv"):
        d_out, d_in = J.shape[-2:]
        names = input_names if input_names is not None else [f"x{k}" for k in range(d_in)]
        header = io.StringIO()
        csv.writer(header, lineterminator="").writerow([f"dy{j}/d{name}" for j in range(d_out) for name in names])
        rows = J.reshape(1, -1) if J.ndim == 2 else J.reshape(len(J), -1)
        np.savetxt(path, rows, delimiter=",", header=header.getvalue(), comments="", fmt="%.17g")
    else:
        raise ValueError(f"OUT must be a .npy or .csv file; got {path!r}")


# --- memory ---------------------------------------------------------------------------


def _size(nbytes: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def _physical_memory() -> Optional[int]:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # not available on this system
        return None


def _check_memory(nbytes: int, what: str) -> None:
    """Refuse, before allocating, an array larger than this machine's memory."""
    memory = _physical_memory()
    if memory is not None and nbytes > memory:
        raise ValueError(
            f"{what} would take {_size(nbytes)}, more than this machine's {_size(memory)} of memory; "
            "split the inputs into smaller files"
        )


def _allocate(shape: tuple[int, ...], dtype: Any, what: str) -> np.ndarray:
    nbytes = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    _check_memory(nbytes, what)
    try:
        return np.empty(shape, dtype)
    except MemoryError:
        raise MemoryError(f"{what} would take {_size(nbytes)}, more than can be allocated") from None


# --- progress -------------------------------------------------------------------------


class Progress:
    """Progress of a batch on stderr, shown once the batch will clearly take more than a second.

    On a terminal: a bar (``tqdm`` when it is installed, else a plain one redrawn
    with ``\\r``).  Otherwise (a log file, a pipe): at most ten plain lines.
    """

    def __init__(self, total: int, seconds_per_sample: float, enabled: bool = True) -> None:
        self.total = total
        self.start = time.perf_counter()
        self.shown = enabled and seconds_per_sample * total > 1.0
        self.terminal = self.shown and _isatty(sys.stderr)
        self.bar: Any = None
        self.next_line = 0.1
        if self.terminal:
            try:  # optional, never required; imported only when a bar is drawn
                tqdm = importlib.import_module("tqdm").tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, unit="sample", file=sys.stderr, leave=True)

    def update(self, done: int) -> None:
        if not self.shown:
            return
        elapsed = time.perf_counter() - self.start
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        elif self.terminal:
            bar = "#" * (30 * done // self.total)
            print(f"\r[{bar:<30}] {done}/{self.total} samples, {elapsed:.1f} s", end="", file=sys.stderr, flush=True)
        elif done >= self.next_line * self.total or done == self.total:
            print(f"{PROG}: {done}/{self.total} samples ({100 * done // self.total}%), {elapsed:.1f} s", file=sys.stderr, flush=True)
            self.next_line = (10 * done // self.total + 1) / 10

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.terminal:
            print(file=sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# --- commands -------------------------------------------------------------------------


def jacobian(args: argparse.Namespace) -> int:
    """Per-sample Jacobians of a saved model at the inputs of a file."""
    check_output(args.output)
    net = read_model(args.model).network
    inputs = read_inputs(args.inputs, args.header)
    _refuse_index_column(inputs, net.d_in)
    x = as_input(inputs.x, net.d_in, "the model")  # whole-batch shape in errors
    _warn_non_finite_rows(inputs, x)
    batch = x.reshape(-1, x.shape[-1])
    J = _jacobian_in_chunks(net, batch, args.mode, args.chunk_size, not args.quiet)
    J = J.reshape(J.shape[1:]) if x.ndim == 1 else J
    write_jacobian(args.output, J, inputs.names)
    print(f"wrote J of shape {J.shape} to {args.output}")
    return 0


def _jacobian_in_chunks(
    net: Network, x: np.ndarray, mode: str, chunk_size: Optional[int], progress: bool
) -> np.ndarray:
    """``J`` of a batch, allocated once its size is known to fit, filled in chunks with progress."""
    n = len(x)
    probe = net.jacobian(x[:1], mode=mode)  # one sample: the shape and dtype of J, cheaply
    shape = (n,) + probe.shape[1:]
    J = _allocate(shape, probe.dtype, f"J of shape {shape} ({probe.dtype})")
    if n == 0:
        return J
    step = chunk_size or max(1, n // 100)  # about 100 updates; each call still chunks to the memory budget
    start = time.perf_counter()
    J[:step] = net.jacobian(x[:step], mode=mode, chunk_size=chunk_size)
    reporter = Progress(n, (time.perf_counter() - start) / min(step, n), progress)
    try:
        for begin in range(step, n, step):
            J[begin : begin + step] = net.jacobian(x[begin : begin + step], mode=mode, chunk_size=chunk_size)
            reporter.update(min(n, begin + step))
    finally:
        reporter.close()  # an error message starts on a line of its own
    return J


def check(args: argparse.Namespace) -> int:
    """Finite-difference checks of every layer and of the whole network."""
    model = read_model(args.model)
    net = model.network
    rng = np.random.default_rng(args.seed)
    if net.d_in is None:
        raise ValueError("the model has no input width (activations only): nothing to check")
    if args.inputs is not None:
        x, source = _check_points_from_file(args, net.d_in, rng)
    elif model.input_mean is not None and model.input_std is not None:
        x = model.input_mean + model.input_std * rng.standard_normal((args.points, net.d_in))
        source = f"{args.points} random inputs drawn from the input mean and standard deviation saved with the model"
    else:
        x = rng.standard_normal((args.points, net.d_in))
        source = (
            f"{args.points} random inputs from N(0, 1) (the model file has no input statistics; "
            "--inputs FILE checks at your data)"
        )
    print(f"checking {net} at {source} (seed {args.seed})")
    ok = True
    h: np.ndarray = x
    for index, layer in enumerate(net.layers):
        result = check_layer(layer, h, rng=rng)
        ok &= bool(result)
        print(f"  layer {index} {layer!r}: {'ok' if result else 'FAILED'}, max rel error {result.max_rel_error:.1e}")
        if not result:
            print("    " + str(result).replace("\n", "\n    "))
        h = layer.forward_with_cache(h)[0]  # a nested Network's forward returns y alone
    result = check_network(net, x)
    ok &= bool(result)
    print(f"  network: {'ok' if result else 'FAILED'}, max rel error {result.max_rel_error:.1e}")
    if not result:
        print("    " + str(result).replace("\n", "\n    "))
    print("passed" if ok else "FAILED")
    return 0 if ok else 1


def _check_points_from_file(args: argparse.Namespace, d_in: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Up to ``--points`` rows of the ``--inputs`` file (chosen at random), without NaN rows."""
    inputs = read_inputs(args.inputs, args.header)
    _refuse_index_column(inputs, d_in)
    x = np.atleast_2d(as_input(inputs.x, d_in, "the model")).astype(np.float64)
    finite = np.all(np.isfinite(x), axis=1)
    if not finite.all():
        _warn(f"{int((~finite).sum())} of {len(x)} rows of {args.inputs!r} contain NaN or infinity; they are not checked")
    rows = np.flatnonzero(finite)
    if len(rows) == 0:
        raise ValueError(f"{args.inputs!r} has no rows without NaN or infinity to check at")
    if len(rows) > args.points:
        rows = np.sort(rng.choice(rows, args.points, replace=False))
    return x[rows], f"{len(rows)} of the {len(x)} rows of {args.inputs!r}"


def info(args: argparse.Namespace) -> int:
    """Layers (nested ones indented), widths, parameter count and mode costs of a model."""
    net = read_model(args.model).network
    print(f"{args.model}: {len(net.layers)} layers, d_in = {net.d_in}, d_out = {net.d_out}")
    _print_layers(net.layers, net.d_in, "  ", [f"{index:>3}" for index in range(len(net.layers))])
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


def _print_layers(layers: Sequence[Any], width: Optional[int], indent: str, labels: Sequence[str]) -> Optional[int]:
    """One line per layer, ``label  repr  width_in -> width_out  (parameters)``; the
    layers inside a ``Network``, ``Residual`` or ``Parallel`` below it, indented.
    Returns the output width of a chain of ``layers``."""
    for label, layer in zip(labels, layers):
        out = width if width is None else layer.footprint(width)[0]
        count = sum(p.size for p in layer.params)
        line = f"{indent}{label}  {type(layer).__name__ if _inner(layer) else repr(layer)}"
        print(f"{line:<41} {width} -> {out}" + (f"  ({count} parameters)" if count else ""))
        inner = _inner(layer)
        if inner is not None:
            names, children, chained = inner
            if chained:
                _print_layers(children, width, indent + "     ", names)
            else:
                for name, child in zip(names, children):
                    _print_layers([child], width, indent + "     ", [name])
        width = out
    return width


def _inner(layer: Any) -> Optional[tuple[list[str], Sequence[Any], bool]]:
    """The sub-layers of a composite layer: their labels, the layers, and whether they form a chain."""
    if isinstance(layer, Network):
        return [f"{index:>3}" for index in range(len(layer.layers))], layer.layers, True
    if isinstance(layer, Residual):
        return [f"block (scale {layer.scale:g})"], [layer.block], False
    if isinstance(layer, Parallel):
        return [f"branch {index}" for index in range(len(layer.branches))], layer.branches, False
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Input Jacobians of feed-forward neural networks, in pure NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = commands.add_parser("demo", help="differentiate a built-in example classifier")
    p.add_argument("--repeats", type=_positive_int, default=200, help="timing repeats (default 200)")
    p.set_defaults(run=demo)
    header_help = "the CSV file's first row holds column names (default: detected, a row that is not all numbers)"
    p = commands.add_parser("jacobian", help="per-sample Jacobians of a model at inputs from a file")
    p.add_argument("model", metavar="MODEL", help="model file: .npz (jacobian_np.save) or .onnx")
    p.add_argument("inputs", metavar="INPUTS", help="inputs: .npy (d_in,) or (n, d_in), or .csv, one sample per row")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="output: .npy (J as is) or .csv (a row per sample)")
    p.add_argument("--mode", choices=("auto", "forward", "reverse"), default="auto", help="default auto")
    p.add_argument("--chunk-size", type=_positive_int, default=None, help="samples per chunk (default: by memory)")
    p.add_argument("--header", action="store_true", default=None, help=header_help)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.set_defaults(run=jacobian)
    p = commands.add_parser("check", help="finite-difference checks of every layer and of the network")
    p.add_argument("model", metavar="MODEL", help="model file: .npz or .onnx")
    p.add_argument("--inputs", metavar="FILE", default=None, help="check at rows of this .npy or .csv file")
    p.add_argument("--points", type=_positive_int, default=5, help="inputs to check at (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--header", action="store_true", default=None, help=header_help)
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


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # each distinct warning once, printed below as one line
        try:
            status = int(args.run(args))
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except MemoryError as error:
            status = _error(f"out of memory: {error}" if str(error) else "out of memory")
        except RecursionError:
            status = _error("the input is nested too deeply to process")
        except (ValueError, TypeError, OSError, NotImplementedError, ImportError) as error:
            status = _error(str(error) or type(error).__name__)
        except Exception as error:  # noqa: BLE001 - never a traceback; say what it was
            status = _error(f"unexpected {type(error).__name__}: {error}")
    for warning in caught:
        _warn(f"{warning.category.__name__}: {warning.message}")
    return status


def _error(message: str) -> int:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
