"""The command line: python -m jacobian_np and the jacobian-np console script."""

import shutil
import subprocess
import sys

import pytest

from jacobian_np.__main__ import main


def test_demo_prints_the_promised_report(capsys):
    assert main(["demo", "--repeats", "5"]) == 0
    out = capsys.readouterr().out
    assert "500 -> 100 (ReLU) -> 10 (softmax)" in out
    assert "class probabilities:" in out
    assert "shape (10, 500)" in out
    assert "the five inputs with the largest influence" in out
    assert "check_network against central differences (float64): passed" in out
    assert "forward_backward" in out and "ratio" in out
    probabilities = [float(item.split(": ")[1]) for item in out.splitlines()[3].split("  ") if item]
    assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 0.01


def test_python_dash_m_runs_the_demo():
    done = subprocess.run(
        [sys.executable, "-m", "jacobian_np", "demo", "--repeats", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "passed" in done.stdout and not done.stderr


@pytest.mark.skipif(shutil.which("jacobian-np") is None, reason="package not installed")
def test_console_script_runs_the_demo():
    done = subprocess.run(
        ["jacobian-np", "demo", "--repeats", "3"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "shape (10, 500)" in done.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["demo", "--repeats", "0"], "expected a positive integer; got '0'"),
    ],
)
def test_usage_errors_exit_2_with_one_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("jacobian-np ")


# --- jacobian, check, info ----------------------------------------------------------

import numpy as np  # noqa: E402

import jacobian_np as jn  # noqa: E402
from jacobian_np import __main__ as cli  # noqa: E402


@pytest.fixture
def model(tmp_path, rng):
    net = jn.Network(
        [jn.Affine(rng.normal(size=(3, 8)), rng.normal(size=8)), jn.Tanh(), jn.Affine(rng.normal(size=(8, 2)))]
    )
    path = tmp_path / "model.npz"
    jn.save(net, path)
    return net, str(path)


def test_jacobian_command_writes_npy(model, tmp_path, rng, capsys):
    net, path = model
    X = rng.normal(size=(6, 3))
    np.save(tmp_path / "x.npy", X)
    out = str(tmp_path / "J.npy")
    assert main(["jacobian", path, str(tmp_path / "x.npy"), "-o", out, "--mode", "forward", "--chunk-size", "4"]) == 0
    np.testing.assert_allclose(np.load(out), net.jacobian(X), rtol=1e-13)
    assert "wrote J of shape (6, 2, 3)" in capsys.readouterr().out


def test_jacobian_command_one_point_and_csv(model, tmp_path, rng):
    net, path = model
    x = rng.normal(size=3)
    np.save(tmp_path / "x.npy", x)
    assert main(["jacobian", path, str(tmp_path / "x.npy"), "-o", str(tmp_path / "J.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "J.npy"), net.jacobian(x), rtol=1e-13)
    X = rng.normal(size=(4, 3))
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    assert main(["jacobian", path, str(tmp_path / "x.csv"), "-o", str(tmp_path / "J.csv")]) == 0
    rows = np.loadtxt(tmp_path / "J.csv", delimiter=",")
    assert rows.shape == (4, 6)  # one row per sample, J[i, j, k] in column j * d_in + k
    np.testing.assert_allclose(rows.reshape(4, 2, 3), net.jacobian(X), rtol=1e-13)


def test_progress_bar_when_the_batch_is_slow(model, tmp_path, rng, capsys, monkeypatch):
    net, path = model
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 3)))
    clock = iter(range(10**6))
    monkeypatch.setattr(cli.time, "perf_counter", lambda: float(next(clock)))  # each call: a second later
    assert main(["jacobian", path, str(tmp_path / "x.npy"), "-o", str(tmp_path / "J.npy")]) == 0
    err = capsys.readouterr().err
    assert "300/300 samples" in err and "[" in err


def test_no_progress_bar_when_fast(model, tmp_path, rng, capsys):
    net, path = model
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 3)))
    assert main(["jacobian", path, str(tmp_path / "x.npy"), "-o", str(tmp_path / "J.npy")]) == 0
    assert capsys.readouterr().err == ""


def test_info_command(model, capsys):
    _, path = model
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "3 layers, d_in = 3, d_out = 2" in out
    assert "Affine(d_in=3, d_out=8)" in out and "(32 parameters)" in out
    assert "parameters: 48 (float64)" in out and "mode='auto' uses reverse" in out


def test_check_command_passes_and_fails(model, capsys, monkeypatch):
    _, path = model
    assert main(["check", path, "--points", "3"]) == 0
    out = capsys.readouterr().out
    assert "layer 1 Tanh(): ok" in out and "network: ok" in out and out.rstrip().endswith("passed")
    original = jn.Tanh.fprime
    monkeypatch.setattr(jn.Tanh, "fprime", lambda self, x, y: 1.01 * original(self, x, y))
    assert main(["check", path]) == 1
    out = capsys.readouterr().out
    assert "layer 1 Tanh(): FAILED" in out and out.rstrip().endswith("FAILED")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "absent.npz"], "no such model file: 'absent.npz'"),
        (["info", "model.h5"], "MODEL must be a .npz file (jacobian_np.save) or an .onnx file; got 'model.h5'"),
        (["jacobian", "{model}", "x.txt", "-o", "J.npy"], "INPUTS must be a .npy or .csv file; got 'x.txt'"),
        (["jacobian", "{model}", "{wide}", "-o", "J.npy"], "expects x with last axis 3; got shape (2, 5)"),
        (["jacobian", "{model}", "{inputs}", "-o", "J.txt"], "OUT must be a .npy or .csv file; got 'J.txt'"),
        (["info", "{garbage}"], "not a jacobian_np model file (.npz): it is not a zip archive"),
    ],
)
def test_errors_are_one_line_and_exit_1(argv, message, model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "wide.npy", np.ones((2, 5)))
    np.save(tmp_path / "inputs.npy", np.ones((2, 3)))
    (tmp_path / "garbage.npz").write_bytes(b"garbage")
    names = {"model": model[1], "wide": "wide.npy", "inputs": "inputs.npy", "garbage": "garbage.npz"}
    assert main([a.format(**names) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jacobian-np: error: ") and message in err


def test_missing_output_is_a_usage_error(model, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["jacobian", model[1], "x.npy"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: -o/--output" in capsys.readouterr().err


def test_commands_read_onnx_models(tmp_path, rng, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    W1, b1, W2 = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 2))
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W1", "b1"], ["h"]),
            helper.make_node("Tanh", ["h"], ["a"]),
            helper.make_node("MatMul", ["a", "W2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", 2])],
        [numpy_helper.from_array(a, name) for a, name in ((W1, "W1"), (b1, "b1"), (W2, "W2"))],
    )
    path = str(tmp_path / "model.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["info", path]) == 0
    assert "3 layers, d_in = 3, d_out = 2" in capsys.readouterr().out
    X = rng.normal(size=(5, 3))
    np.save(tmp_path / "x.npy", X)
    assert main(["jacobian", path, str(tmp_path / "x.npy"), "-o", str(tmp_path / "J.npy")]) == 0
    reference = jn.Network([jn.Affine(W1, b1), jn.Tanh(), jn.Affine(W2)])
    np.testing.assert_allclose(np.load(tmp_path / "J.npy"), reference.jacobian(X), rtol=1e-13)
