"""to_c, to_onnx, to_torch: every exported model agrees with Network.forward_backward.

Each registered layer (tests/cases.py) is exported inside ``Affine -> layer ->
Affine``, and a few deeper networks besides.  C sources are compiled once per
module with ``cc -std=c99 -Wall -Wextra -Werror`` into one shared library and
called through ctypes (skipped without a compiler); ONNX models run in ONNX
Runtime, PyTorch modules in PyTorch (each skipped when not installed).  The
comparison is relative to the largest entry, per output: at most 1e-12 in float64.
"""

import ctypes
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import jacobian_np as jn
from cases import CASE_IDS, LAYER_CASES
from jacobian_np import Affine, Elementwise, Layer, Network, Tanh, to_c, to_onnx, to_torch

RTOL = 1e-12


def case_network(case, rng):
    """``Affine(3 -> w) -> layer -> Affine(w' -> 2)`` with the widths the case's layer takes."""
    layer = case.make(rng)
    w_in = case.sample(rng, (1,)).shape[-1]
    w_out = Network([layer]).forward(case.sample(rng, (1,))).shape[-1]
    return Network([
        Affine(rng.normal(size=(3, w_in)), rng.normal(size=w_in)),
        layer,
        Affine(rng.normal(size=(w_out, 2)), rng.normal(size=2)),
    ])


def deep_network(rng):
    """Every activation in one chain, widths 3 -> 5 -> ... -> 2, biases on."""
    activations = [jn.ReLU(), jn.Sigmoid(), jn.Tanh(), jn.Identity(), jn.Softplus(), jn.LeakyReLU(0.2),
                   jn.ELU(0.7), jn.GELU(), jn.SiLU(), jn.Sin(), jn.Softmax(), jn.LogSoftmax()]
    layers, width = [], 3
    for activation in activations:
        layers += [Affine(rng.normal(size=(width, 5)) / np.sqrt(width), rng.normal(size=5)), activation]
        width = 5
    return Network(layers + [Affine(rng.normal(size=(5, 2)))])


def networks(rng):
    nets = {case.name: case_network(case, rng) for case in LAYER_CASES}
    nets["deep"] = deep_network(rng)
    nets["affine-alone"] = Network([Affine(rng.normal(size=(3, 4)))])
    nets["activation-first"] = Network([jn.Tanh(), Affine(rng.normal(size=(3, 2))), jn.Softmax()])
    nets["identity-only-after-affine"] = Network([Affine(rng.normal(size=(3, 3))), jn.Identity()])
    return nets


NAMES = CASE_IDS + ["deep", "affine-alone", "activation-first", "identity-only-after-affine"]


def inputs(rng):
    """Points of moderate size, and points far out in the activations' tails."""
    X = rng.normal(size=(7, 3))
    return np.concatenate([X, 30 * X[:3], [[1e4, -1e4, 0.5]]])


def assert_agrees(y, J, net, X, rtol=RTOL):
    """``|error| <= rtol * scale`` per sample, the scale being the largest entry of y (or J).

    Where a softmax saturates, J is tiny and both sides are rounding noise of the
    size of the terms that cancel; so the scale is at least the largest entry over
    the moderate points (the first 7).
    """
    y_ref, J_ref = net.forward_backward(X)
    assert y.shape == y_ref.shape and J.shape == J_ref.shape
    floor_y, floor_J = np.abs(y_ref[:7]).max(initial=1e-300), np.abs(J_ref[:7]).max(initial=1e-300)
    scale_y = np.maximum(np.abs(y_ref).max(axis=-1, keepdims=True, initial=0), floor_y)
    scale_J = np.maximum(np.abs(J_ref).max(axis=(-2, -1), keepdims=True, initial=0), floor_J)
    assert np.all(np.abs(y - y_ref) <= rtol * scale_y), np.max(np.abs(y - y_ref) / scale_y)
    assert np.all(np.abs(J - J_ref) <= rtol * scale_J), np.max(np.abs(J - J_ref) / scale_J)


ACTIVATIONS = [jn.ReLU(), jn.Sigmoid(), jn.Tanh(), jn.Identity(), jn.Softplus(), jn.LeakyReLU(0.2), jn.ELU(0.7),
               jn.GELU(), jn.SiLU(), jn.Sin()]
#: Tails where naive formulas lose relative accuracy or overflow, and ordinary points.
TAIL_POINTS = np.array([-1e4, -700.0, -40.0, -20.0, -5.0, -0.3, 1e-8, 0.7, 5.0, 20.0, 40.0, 700.0, 1e4])


def activation_network(activation):
    """``x -> f(x)`` on 13 inputs: an exact identity Affine fixes the width, so J = diag(f'(x))."""
    return Network([Affine(np.eye(TAIL_POINTS.size)), activation])


def assert_tails_accurate(y, J, activation):
    """Entry by entry: the activation and its derivative, relative, in the tails too."""
    net = activation_network(activation)
    y_ref, J_ref = net.forward_backward(TAIL_POINTS[None])
    if isinstance(activation, jn.Sin):  # sin(1e4) and sin(700): libm and NumPy round differently
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(J, J_ref, rtol=1e-12, atol=1e-15)
        return
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=0)
    np.testing.assert_allclose(J, J_ref, rtol=1e-13, atol=0)


# --- C ------------------------------------------------------------------------------------

CC = shutil.which("cc")
C_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def compile_library(sources, directory):
    """One shared library from the sources; skips the test when there is no compiler."""
    if CC is None:
        pytest.skip("no C compiler (cc) on PATH")
    library = os.path.join(directory, "libnets.so")
    done = subprocess.run(
        [CC, *C_FLAGS, "-O2", "-shared", "-fPIC", "-o", library, *sources, "-lm"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return ctypes.CDLL(library)


def c_forward_jacobian(library, name, X, d_out):
    function = getattr(library, f"{name}_forward_jacobian")
    double_p = ctypes.POINTER(ctypes.c_double)
    function.argtypes = [ctypes.c_long, double_p, double_p, double_p]
    function.restype = ctypes.c_int
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.full((len(X), d_out), np.nan)
    J = np.full((len(X), d_out, X.shape[1]), np.nan)
    status = function(len(X), X.ctypes.data_as(double_p), y.ctypes.data_as(double_p), J.ctypes.data_as(double_p))
    return status, y, J


@pytest.fixture(scope="module")
def c_library(tmp_path_factory):
    """Every network of ``networks`` as C, ``net_0`` ... in one library: one compiler run."""
    directory = str(tmp_path_factory.mktemp("c"))
    nets = networks(np.random.default_rng(0))
    nets.update({f"tail-{type(a).__name__}": activation_network(a) for a in ACTIVATIONS})
    sources = [to_c(net, directory, name=f"net_{i}")[1] for i, net in enumerate(nets.values())]
    names = {key: f"net_{i}" for i, key in enumerate(nets)}
    return compile_library(sources, directory), nets, names


@pytest.mark.parametrize("key", NAMES)
def test_c_agrees_with_forward_backward(c_library, key, rng):
    library, nets, names = c_library
    net = nets[key]
    X = inputs(rng)
    status, y, J = c_forward_jacobian(library, names[key], X, net.d_out)
    assert status == 0
    assert_agrees(y, J, net, X)


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: type(a).__name__)
def test_c_activations_keep_relative_accuracy_in_the_tails(c_library, activation):
    library, nets, names = c_library
    status, y, J = c_forward_jacobian(library, names[f"tail-{type(activation).__name__}"], TAIL_POINTS[None],
                                      TAIL_POINTS.size)
    assert status == 0
    assert_tails_accurate(y, J, activation)


def test_c_header_declares_the_function_and_widths(tmp_path, rng):
    net = deep_network(rng)
    header, source = to_c(net, tmp_path, name="model_7")
    assert (header, source) == (str(tmp_path / "model_7.h"), str(tmp_path / "model_7.c"))
    text = Path(header).read_text()
    assert "#define MODEL_7_D_IN 3\n" in text and "#define MODEL_7_D_OUT 2\n" in text
    # a chain of width 5 from 3 inputs: two slots of 5 values and 5 x 3 tangents, and a scratch vector of 5
    assert f"#define MODEL_7_STACK_BYTES {8 * (2 * 5 * (1 + 3) + 5)}\n" in text
    assert "int model_7_forward_jacobian(long n, const double *x, double *y, double *J);" in text
    code = Path(source).read_text()
    assert "malloc" not in code and "#include <stdlib.h>" not in code
    assert set(line for line in code.splitlines() if line.startswith("#include")) == {
        '#include "model_7.h"', "#include <float.h>", "#include <math.h>", "#include <stddef.h>"
    }


def test_c_weights_are_exact_and_float32_weights_convert_exactly(tmp_path, rng):
    W = rng.normal(size=(3, 2)).astype(np.float32)
    net = Network([Affine(W, np.float32([0.1, -0.2])), Tanh()])
    library = compile_library([to_c(net, tmp_path, name="f32")[1]], str(tmp_path))
    X = rng.normal(size=(4, 3))
    status, y, J = c_forward_jacobian(library, "f32", X, 2)
    net64 = Network([Affine(W.astype(np.float64), np.float32([0.1, -0.2]).astype(np.float64)), Tanh()])
    assert status == 0
    assert_agrees(y, J, net64, X)


def test_c_empty_batch_and_bad_arguments(c_library):
    library, nets, names = c_library
    net, name = nets["deep"], names["deep"]
    status, y, J = c_forward_jacobian(library, name, np.zeros((0, 3)), net.d_out)
    assert status == 0 and y.shape == (0, 2) and J.shape == (0, 2, 3)
    function = getattr(library, f"{name}_forward_jacobian")
    assert function(-1, None, None, None) == -1
    assert function(2, None, None, None) == -1


def test_c_program_and_docs_example_compile(tmp_path, rng):
    """The worked example of docs/exporting.md: a C program calls the exported network."""
    if CC is None:
        pytest.skip("no C compiler (cc) on PATH")
    docs = (Path(__file__).resolve().parent.parent / "docs" / "exporting.md").read_text(encoding="utf-8")
    blocks = [block.split("\n", 1)[1] for block in docs.split("```")[1::2] if block.startswith("c\n")]
    assert blocks, "docs/exporting.md has no ```c block"
    program = tmp_path / "main.c"
    program.write_text(blocks[0])
    W1, b1, W2 = rng.normal(size=(2, 16)), rng.normal(size=16), rng.normal(size=(16, 1))
    net = Network([Affine(W1, b1), Tanh(), Affine(W2)])
    _, source = to_c(net, tmp_path, name="surrogate")
    executable = tmp_path / "main"
    done = subprocess.run(
        [CC, *C_FLAGS, "-o", str(executable), str(program), source, "-lm"], capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    run = subprocess.run([str(executable)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    numbers = [float(token) for token in run.stdout.replace("=", " ").split() if _is_number(token)]
    x = np.array([0.5, -1.0])
    y, J = net.forward_backward(x)
    np.testing.assert_allclose(numbers[-3:], [y[0], J[0, 0], J[0, 1]], rtol=1e-9)


def _is_number(token):
    try:
        float(token)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "name, message",
    [("3net", "must be a C identifier"), ("my-net", "must be a C identifier"), ("", "must be a C identifier"),
     ("double", "not a C keyword"), ("net\n", "must be a C identifier")],
)
def test_c_name_must_be_an_identifier(tmp_path, rng, name, message):
    with pytest.raises(ValueError, match=message):
        to_c(deep_network(rng), tmp_path, name=name)


def test_c_bad_directory_and_name_type(tmp_path, rng):
    net = deep_network(rng)
    with pytest.raises(FileNotFoundError, match="to_c: no such directory"):
        to_c(net, tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        to_c(net, tmp_path / "file")
    with pytest.raises(TypeError, match="name must be a string; got int"):
        to_c(net, tmp_path, name=3)
    with pytest.raises(TypeError, match="directory must be a str or path-like; got int"):
        to_c(net, 3)


# --- refusals (every exporter) -----------------------------------------------------------


class Cube(Elementwise):
    def f(self, x):
        return x**3

    def fprime(self, x, y):
        return 3 * x**2


class ScaledTanh(Tanh):
    def f(self, x):
        return 2 * np.tanh(x)


def exporters(tmp_path):
    return {
        "to_c": lambda net: to_c(net, tmp_path),
        "to_onnx": lambda net: to_onnx(net, tmp_path / "m.onnx"),
        "to_torch": to_torch,
    }


@pytest.mark.parametrize("exporter", ["to_c", "to_onnx", "to_torch"])
def test_user_defined_layers_are_refused_by_name(tmp_path, rng, exporter):
    if exporter == "to_onnx":
        pytest.importorskip("onnx")
    if exporter == "to_torch":
        pytest.importorskip("torch")
    export = exporters(tmp_path)[exporter]
    W = rng.normal(size=(3, 4))
    with pytest.raises(TypeError, match=rf"{exporter}: layer 1 \(Cube\) is a user-defined layer"):
        export(Network([Affine(W), Cube()]))
    with pytest.raises(TypeError, match=r"layer 1 \(ScaledTanh\) is a subclass of Tanh, which may change"):
        export(Network([Affine(W), ScaledTanh()]))
    nested = Network([Affine(W), jn.Residual(Network([Affine(np.eye(4)), Cube()]), scale=0.5)])
    with pytest.raises(TypeError, match=r"layer 1 > block > layer 1 \(Cube\) is a user-defined layer"):
        export(nested)
    branches = Network([Affine(W), jn.Parallel([Affine(np.eye(4)), Network([ScaledTanh()])])])
    with pytest.raises(TypeError, match=r"layer 1 > branch 1 > layer 0 \(ScaledTanh\) is a subclass of Tanh"):
        export(branches)
    with pytest.raises(TypeError, match=rf"{exporter} expects a jacobian_np Network \(or Layer\); got list"):
        export([Affine(W)])
    with pytest.raises(ValueError, match="no fixed input width"):
        export(Network([Tanh()]))


def test_every_builtin_layer_has_a_rule_in_every_exporter():
    """A layer added to __all__ without exporter rules fails here (and its case fails above)."""
    from jacobian_np._export_c import CWriter
    from jacobian_np._export_onnx import OnnxWriter
    from jacobian_np._export_walk import handler_name

    writers = [CWriter, OnnxWriter]
    try:
        from jacobian_np._export_torch import TorchWriter
    except ImportError:
        pass
    else:
        writers.append(TorchWriter)
    layers = [getattr(jn, name) for name in jn.__all__]
    layers = [cls for cls in layers if isinstance(cls, type) and issubclass(cls, Layer)]
    for cls in set(layers + [Network]) - {Layer, Elementwise}:
        name = handler_name(cls)
        assert name is not None, cls
        for writer in writers:
            assert callable(getattr(writer, name, None)), (writer.__name__, name)


# --- ONNX ---------------------------------------------------------------------------------


@pytest.fixture
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def run_onnx(ort, path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["y", "J"], {"x": X})


@pytest.mark.parametrize("key", NAMES)
def test_onnx_agrees_with_forward_backward(ort, key, tmp_path, rng):
    net = networks(np.random.default_rng(0))[key]
    path = to_onnx(net, tmp_path / "net.onnx")
    X = inputs(rng)
    y, J = run_onnx(ort, path, X)
    assert y.dtype == np.float64 and J.dtype == np.float64
    assert_agrees(y, J, net, X)


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: type(a).__name__)
def test_onnx_activations_keep_relative_accuracy_in_the_tails(ort, activation, tmp_path):
    path = to_onnx(activation_network(activation), tmp_path / "net.onnx")
    y, J = run_onnx(ort, path, TAIL_POINTS[None])
    assert_tails_accurate(y, J, activation)


def test_onnx_model_interface(ort, tmp_path, rng):
    import onnx

    net = deep_network(rng)
    path = to_onnx(net, tmp_path / "net.onnx")
    assert path == str(tmp_path / "net.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    shape = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [(v.name, shape(v)) for v in model.graph.input] == [("x", ["n", 3])]
    assert [(v.name, shape(v)) for v in model.graph.output] == [("y", ["n", 2]), ("J", ["n", 2, 3])]
    assert {node.domain for node in model.graph.node} == {""}
    assert not {"Erf", "Softplus", "Elu", "Sigmoid"} & {node.op_type for node in model.graph.node}
    for n in (0, 1):
        y, J = run_onnx(ort, path, rng.normal(size=(n, 3)))
        assert y.shape == (n, 2) and J.shape == (n, 2, 3)


@pytest.mark.parametrize("key", NAMES)
def test_onnx_laplacian_output_agrees_with_network_laplacian(ort, key, tmp_path, rng):
    net = networks(np.random.default_rng(0))[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jn.ZeroCurvatureWarning)
        path = to_onnx(net, tmp_path / "net.onnx", laplacian=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [v.name for v in session.get_outputs()] == ["y", "J", "L"]
    X = 2 * rng.normal(size=(7, 3))
    y, J, L = session.run(None, {"x": X})
    assert_agrees(y, J, net, X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jn.ZeroCurvatureWarning)  # Affine alone: L = 0, and it says so
        expected = net.laplacian(X)
    scale = np.abs(expected).max(axis=-1, keepdims=True) + np.abs(expected).max() * 1e-3
    assert np.all(np.abs(L - expected) <= RTOL * scale), np.max(np.abs(L - expected) / scale)
    (L0,) = session.run(["L"], {"x": np.zeros((0, 3))})
    assert L0.shape == (0, net.d_out)


def test_onnx_laplacian_of_a_piecewise_linear_network_warns(ort, tmp_path, rng):
    net = Network([Affine(rng.normal(size=(3, 4))), jn.ReLU(), Affine(rng.normal(size=(4, 2)))])
    with pytest.warns(jn.ZeroCurvatureWarning, match="to_onnx: every layer of Network is piecewise linear"):
        to_onnx(net, tmp_path / "m.onnx", laplacian=True)


def test_onnx_laplacian_must_be_a_bool(ort, tmp_path, rng):
    with pytest.raises(TypeError, match="laplacian must be True or False; got str"):
        to_onnx(deep_network(rng), tmp_path / "m.onnx", laplacian="yes")


def test_onnx_float32_network_gives_a_float32_model(ort, tmp_path, rng):
    net64 = deep_network(rng)
    net = Network([
        Affine(layer.W.astype(np.float32), None if layer.b is None else layer.b.astype(np.float32))
        if isinstance(layer, Affine) else layer
        for layer in net64.layers
    ])
    X = rng.normal(size=(5, 3)).astype(np.float32)
    y, J = run_onnx(ort, to_onnx(net, tmp_path / "net.onnx"), X)
    assert y.dtype == np.float32 and J.dtype == np.float32
    y_ref, J_ref = net64.forward_backward(X.astype(np.float64))
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5 * np.abs(y_ref).max())
    np.testing.assert_allclose(J, J_ref, rtol=1e-4, atol=1e-5 * np.abs(J_ref).max())


def test_onnx_bad_path(ort, tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="the directory of .* does not exist"):
        to_onnx(deep_network(rng), tmp_path / "missing" / "m.onnx")
    with pytest.raises(TypeError, match="path must be a str or path-like; got int"):
        to_onnx(deep_network(rng), 3)


# --- PyTorch ------------------------------------------------------------------------------


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("key", NAMES)
def test_torch_module_agrees_with_forward_backward(torch, key, rng):
    net = networks(np.random.default_rng(0))[key]
    module = to_torch(net)
    assert not module.training
    X = inputs(rng)
    Xt = torch.from_numpy(X)
    y = module(Xt).detach().numpy()
    J = torch.func.vmap(torch.func.jacrev(lambda x: module(x[None])[0]))(Xt).detach().numpy()
    assert_agrees(y, J, net, X)


def test_torch_weights_are_copied_and_transposed(torch, rng):
    net = Network([Affine(rng.normal(size=(3, 4)), rng.normal(size=4)), Tanh(), Affine(rng.normal(size=(4, 2)))])
    module = to_torch(net)
    assert repr(module) == (
        "Sequential(\n  (0): Linear(in_features=3, out_features=4, bias=True)\n  (1): Tanh()\n"
        "  (2): Linear(in_features=4, out_features=2, bias=False)\n)"
    )
    np.testing.assert_array_equal(module[0].weight.detach().numpy(), net.layers[0].W.T)
    assert module[0].weight.dtype == torch.float64
    with torch.no_grad():
        module[0].weight.zero_()
    assert np.any(net.layers[0].W != 0)
    net32 = Network([Affine(rng.normal(size=(3, 4)).astype(np.float32))])
    assert to_torch(net32)[0].weight.dtype == torch.float32


@pytest.mark.parametrize("key", NAMES)
def test_torch_round_trip_through_from_torch(torch, key, rng):
    net = networks(np.random.default_rng(0))[key]
    back = jn.from_torch(to_torch(net))
    X = inputs(rng)
    assert_agrees(*back.forward_backward(X), net, X)
