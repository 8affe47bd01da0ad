"""Benchmark: the exported value and Jacobian in C and in ONNX Runtime, against Network.forward_backward.

A plain script, not collected by pytest::

    python bench/bench_export.py [--repeats 50]

Workloads (float64):

- P: 2 -> 32 -> 32 -> 1 tanh (a physics-informed network), batch 1,000
- M: 6 -> 64 -> 64 -> 6 SiLU (a material law, strain to stress), batch 1,000
- M1: the same network, one point per call (a material routine at one integration point)

"numpy" is ``Network.forward_backward``; "c" calls the function ``to_c`` writes,
compiled with ``cc -O2``, through ctypes (whose per-call overhead, a few
microseconds, is part of M1's time); "ort" runs the model ``to_onnx`` writes in
ONNX Runtime on one thread.  Results are checked equal (1e-12 relative) before
timing; a peer that is not installed (no ``cc``, no ``onnxruntime``) is skipped.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile

import numpy as np
from _timing import argument_parser, interleaved_medians, start

import jacobian_np as jn


def workloads(rng):
    def mlp(widths, activation):
        layers = []
        for d_in, d_out in zip(widths[:-1], widths[1:]):
            layers += [jn.Affine(rng.normal(size=(d_in, d_out)) / np.sqrt(d_in), rng.normal(size=d_out) * 0.1),
                       activation()]
        return jn.Network(layers[:-1])

    pinn = mlp([2, 32, 32, 1], jn.Tanh)
    material = mlp([6, 64, 64, 6], jn.SiLU)
    return {
        "P": (pinn, rng.normal(size=(1000, 2))),
        "M": (material, rng.normal(size=(1000, 6))),
        "M1": (material, rng.normal(size=(1, 6))),
    }


def c_function(net, name, folder):
    _, source = jn.to_c(net, folder, name=name)
    library = os.path.join(folder, f"lib{name}.so")
    subprocess.run(["cc", "-std=c99", "-O2", "-shared", "-fPIC", "-o", library, source, "-lm"], check=True)
    function = getattr(ctypes.CDLL(library), f"{name}_forward_jacobian")
    pointer = ctypes.POINTER(ctypes.c_double)
    function.argtypes = [ctypes.c_long, pointer, pointer, pointer]
    function.restype = ctypes.c_int

    def run(X):
        y = np.empty((len(X), net.d_out))
        J = np.empty((len(X), net.d_out, net.d_in))
        function(len(X), X.ctypes.data_as(pointer), y.ctypes.data_as(pointer), J.ctypes.data_as(pointer))
        return y, J

    return run


def ort_function(net, path, ort):
    jn.to_onnx(net, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda X: tuple(session.run(["y", "J"], {"x": X}))


def main():
    args = argument_parser(__doc__, 50).parse_args()
    start(args.repeats)
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
        print("onnxruntime is not installed: its column is skipped")
    has_cc = shutil.which("cc") is not None
    if not has_cc:
        print("no C compiler (cc): the c column is skipped")
    rng = np.random.default_rng(0)
    header = f"{'workload':<9}{'numpy':>12}{'c':>12}{'ort':>12}{'c/numpy':>10}{'ort/numpy':>11}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        for index, (name, (net, X)) in enumerate(workloads(rng).items()):
            functions = {"numpy": net.forward_backward}
            if has_cc:
                functions["c"] = c_function(net, f"bench_{index}", folder)
            if ort is not None:
                functions["ort"] = ort_function(net, os.path.join(folder, f"{name}.onnx"), ort)
            y_ref, J_ref = net.forward_backward(X)
            for peer, f in functions.items():
                y, J = f(X)
                assert np.abs(J - J_ref).max() <= 1e-12 * np.abs(J_ref).max(), (name, peer)
                assert np.abs(y - y_ref).max() <= 1e-12 * np.abs(y_ref).max(), (name, peer)
            times = interleaved_medians(functions, X, args.repeats)
            cells = [f"{times[p] * 1e6:10.1f}us" if p in times else f"{'-':>12}" for p in ("numpy", "c", "ort")]
            ratios = [f"{times[p] / times['numpy']:{w}.2f}" if p in times else f"{'-':>{w}}"
                      for p, w in (("c", 10), ("ort", 11))]
            print(f"{name:<9}{''.join(cells)}{''.join(ratios)}")


if __name__ == "__main__":
    main()
