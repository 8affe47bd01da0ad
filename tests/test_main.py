"""The command line: python -m jacobian_np and the jacobian-np console script."""

import io
import shutil
import warnings
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
    header, *lines = (tmp_path / "J.csv").read_text().splitlines()
    assert header == "dy0/dx0,dy0/dx1,dy0/dx2,dy1/dx0,dy1/dx1,dy1/dx2"  # J[i, j, k] in column j * d_in + k
    rows = np.loadtxt(lines, delimiter=",")
    assert rows.shape == (4, 6)  # one row per sample
    np.testing.assert_allclose(rows.reshape(4, 2, 3), net.jacobian(X), rtol=1e-13)


def slow_jacobian(model, tmp_path, rng, monkeypatch, *options):
    """Run the jacobian command on 300 samples with a clock that says each step took a second; return J."""
    net, path = model
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 3)))
    clock = iter(range(10**6))
    monkeypatch.setattr(cli.time, "perf_counter", lambda: float(next(clock)))  # each call: a second later
    assert main(["jacobian", path, str(tmp_path / "x.npy"), "-o", str(tmp_path / "J.npy"), *options]) == 0
    return np.load(tmp_path / "J.npy")


def test_progress_in_a_log_is_a_few_plain_lines(model, tmp_path, rng, capsys, monkeypatch):
    J = slow_jacobian(model, tmp_path, rng, monkeypatch)
    err = capsys.readouterr().err
    assert "\r" not in err  # stderr is not a terminal here: no redrawn bar in logs
    lines = err.splitlines()
    assert 5 <= len(lines) <= 11, lines
    assert lines[-1].startswith("jacobian-np: 300/300 samples (100%)")
    np.testing.assert_allclose(J, model[0].jacobian(np.load(tmp_path / "x.npy")), rtol=1e-13)


def test_progress_on_a_terminal_is_a_bar(model, tmp_path, rng, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_isatty", lambda stream: True)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    slow_jacobian(model, tmp_path, rng, monkeypatch)
    err = capsys.readouterr().err
    assert "\r[" in err and "300/300 samples" in err and err.endswith("\n")


def test_progress_on_a_terminal_uses_tqdm_when_installed(model, tmp_path, rng, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(cli, "_isatty", lambda stream: True)
    slow_jacobian(model, tmp_path, rng, monkeypatch)
    err = capsys.readouterr().err
    assert "300/300" in err and "sample" in err and "|" in err  # tqdm's bar


def test_quiet_shows_no_progress(model, tmp_path, rng, capsys, monkeypatch):
    slow_jacobian(model, tmp_path, rng, monkeypatch, "--quiet")
    assert capsys.readouterr().err == ""


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


# --- never a traceback (issue 15) --------------------------------------------------------------


def npy_with_header(path, header_text, data=b""):
    text = header_text.encode("latin1")
    text += b" " * (63 - len(text)) + b"\n"
    path.write_bytes(np.lib.format.magic(1, 0) + len(text).to_bytes(2, "little") + text + data)
    return str(path)


def one_error_line(capsys):
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("jacobian-np: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return captured.err


def test_an_npy_input_with_an_unterminated_header(model, tmp_path, capsys):
    inputs = npy_with_header(tmp_path / "x.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), '''", bytes(24))
    assert main(["jacobian", model[1], inputs, "-o", str(tmp_path / "J.npy")]) == 1
    assert ".npy header is not a Python literal" in one_error_line(capsys)


def test_an_npy_input_declaring_more_than_it_holds(model, tmp_path, capsys):
    inputs = npy_with_header(tmp_path / "x.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }", bytes(28))
    assert (tmp_path / "x.npy").stat().st_size < 200
    assert main(["jacobian", model[1], inputs, "-o", str(tmp_path / "J.npy")]) == 1
    assert "declares shape (1000000000000,) (8.0 TB) but holds 28 bytes" in one_error_line(capsys)


def test_a_model_with_deeply_nested_json(tmp_path, capsys):
    buffer = io.BytesIO()
    np.savez(buffer, format=np.array("jacobian_np"), version=np.array(2), model=np.array("[" * 100_000 + "]" * 100_000))
    (tmp_path / "deep.npz").write_bytes(buffer.getvalue())
    assert main(["info", str(tmp_path / "deep.npz")]) == 1
    assert "layer description is nested too deeply" in one_error_line(capsys)


def test_a_jacobian_too_large_for_memory_is_refused_before_computing(tmp_path, capsys, monkeypatch):
    wide = jn.Network([jn.Affine(np.ones((3, 100_000)))])
    jn.save(wide, tmp_path / "wide.npz")
    np.save(tmp_path / "x.npy", np.ones((1_000_000, 3)))  # J: 1e6 x 1e5 x 3 float64 = 2.4 TB
    calls = []
    original = jn.Network.jacobian
    monkeypatch.setattr(jn.Network, "jacobian", lambda self, x, **kw: calls.append(len(x)) or original(self, x, **kw))
    assert main(["jacobian", str(tmp_path / "wide.npz"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "J.npy")]) == 1
    err = one_error_line(capsys)
    assert "J of shape (1000000, 100000, 3) (float64) would take 2.4 TB, more than this machine's" in err
    assert calls == [1]  # one sample, for the shape and dtype of J
    assert not (tmp_path / "J.npy").exists()


@pytest.mark.parametrize(
    "exception, message",
    [
        (MemoryError(), "jacobian-np: error: out of memory\n"),
        (MemoryError("Unable to allocate 7.28 TiB"), "jacobian-np: error: out of memory: Unable to allocate 7.28 TiB\n"),
        (RecursionError("maximum recursion depth exceeded"), "jacobian-np: error: the input is nested too deeply to process\n"),
        (KeyError("x"), "jacobian-np: error: unexpected KeyError: 'x'\n"),
        (ValueError("two\nlines"), "jacobian-np: error: two lines\n"),
    ],
)
def test_any_exception_is_one_line(exception, message, model, capsys, monkeypatch):
    def fail(path):
        raise exception

    monkeypatch.setattr(cli, "read_model", fail)
    assert main(["info", model[1]]) == 1
    captured = capsys.readouterr()
    assert captured.err == message


def test_warnings_are_one_line_each(model, capsys, monkeypatch):
    def warn(args):
        warnings.warn("something odd\nhappened", RuntimeWarning)
        return 0

    monkeypatch.setattr(cli, "info", warn)
    assert main(["info", model[1]]) == 0
    assert capsys.readouterr().err == "jacobian-np: warning: RuntimeWarning: something odd happened\n"


# --- inputs and outputs as a new user meets them -------------------------------------------------


def test_a_csv_header_row_is_detected_and_names_the_output_columns(model, tmp_path, rng, capsys):
    net, path = model
    X = rng.normal(size=(4, 3))
    lines = ["age,height,weight"] + [",".join(map(repr, row.tolist())) for row in X]
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    assert main(["jacobian", path, str(tmp_path / "x.csv"), "-o", str(tmp_path / "J.csv")]) == 0
    header, *rows = (tmp_path / "J.csv").read_text().splitlines()
    assert header.split(",") == [f"dy{j}/d{name}" for j in range(2) for name in ("age", "height", "weight")]
    np.testing.assert_allclose(np.loadtxt(rows, delimiter=",").reshape(4, 2, 3), net.jacobian(X), rtol=1e-13)


def test_a_numeric_header_row_needs_the_header_option(model, tmp_path, rng):
    net, path = model
    X = rng.normal(size=(3, 3))
    (tmp_path / "x.csv").write_text("1,2,3\n" + "\n".join(",".join(map(repr, row.tolist())) for row in X) + "\n")
    out = str(tmp_path / "J.npy")
    assert main(["jacobian", path, str(tmp_path / "x.csv"), "-o", out]) == 0
    assert np.load(out).shape == (4, 2, 3)  # without --header, "1,2,3" is a sample
    assert main(["jacobian", path, str(tmp_path / "x.csv"), "-o", out, "--header"]) == 0
    np.testing.assert_allclose(np.load(out), net.jacobian(X), rtol=1e-13)


def pandas_style_csv(path, X, index=True, header=True):
    """What DataFrame(X, columns=[a, b, c]).to_csv(path, index=..., header=...) writes."""
    lines = [(",a,b,c" if index else "a,b,c")] if header else []
    lines += [(f"{i}," if index else "") + ",".join(map(repr, row.tolist())) for i, row in enumerate(X)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("header", [True, False])
def test_an_index_column_is_refused_saying_so(header, model, tmp_path, rng, capsys):
    inputs = pandas_style_csv(tmp_path / "x.csv", rng.normal(size=(5, 3)), index=True, header=header)
    assert main(["jacobian", model[1], inputs, "-o", str(tmp_path / "J.npy")]) == 1
    err = one_error_line(capsys)
    assert "the first column of" in err and "looks like a row index" in err and "to_csv(path, index=False)" in err
    assert main(["check", model[1], "--inputs", inputs]) == 1
    assert "looks like a row index" in one_error_line(capsys)


def test_rows_with_nan_are_counted_in_a_warning(model, tmp_path, rng, capsys):
    net, path = model
    X = rng.normal(size=(6, 3))
    lines = ["a,b,c"] + [",".join(map(repr, row.tolist())) for row in X]
    lines[2] = lines[2].replace(repr(float(X[1, 1])), "")  # an empty cell: how pandas writes NaN
    lines[5] = lines[5].replace(repr(float(X[4, 0])), "nan")
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    assert main(["jacobian", path, str(tmp_path / "x.csv"), "-o", str(tmp_path / "J.npy")]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "jacobian-np: warning: 2 of 6 rows of " + repr(str(tmp_path / "x.csv")) + " contain NaN or infinity "
        "(sample 1, 4); their results are NaN or meaningless\n"
    )
    J = np.load(tmp_path / "J.npy")
    assert np.isnan(J[[1, 4]]).all() and np.isfinite(J[[0, 2, 3, 5]]).all()


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty: it holds no rows of numbers"),
        ("# only a comment\n\n", "is empty: it holds no rows of numbers"),
        ("a,b,c\n", "has a header row but no rows of numbers"),
        ("a,b,c\n1,2,3\n4,five,6\n", "line 3, column 2: 'five' is not a number"),
        ("1,2,3\n4,5\n", "line 2: 2 columns, but the rows before have 3"),
    ],
)
def test_csv_problems_are_named(text, message, model, tmp_path, capsys):
    (tmp_path / "x.csv").write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's "Empty input file" warning leaked before
        assert main(["jacobian", model[1], str(tmp_path / "x.csv"), "-o", str(tmp_path / "J.npy")]) == 1
    assert message in one_error_line(capsys)


def test_a_csv_that_is_not_text(model, tmp_path, capsys):
    (tmp_path / "x.csv").write_bytes(b"\xff\xfe\x00\x81" * 10)
    assert main(["jacobian", model[1], str(tmp_path / "x.csv"), "-o", str(tmp_path / "J.npy")]) == 1
    assert "is not UTF-8 text" in one_error_line(capsys)


@pytest.mark.parametrize(
    "output, message",
    [
        ("J.txt", "OUT must be a .npy or .csv file; got 'J.txt'"),
        ("missing/J.npy", "the directory of OUT does not exist"),
        (".", "is a directory"),
    ],
)
def test_the_output_is_checked_before_anything_else(output, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if output == ".":
        (tmp_path / "out.npy").mkdir()
        output = "out.npy"
    # the model and inputs do not even exist: OUT is refused first, before reading or computing
    assert main(["jacobian", "absent.npz", "absent.npy", "-o", output]) == 1
    assert message in one_error_line(capsys)


@pytest.mark.parametrize(
    "name, advice",
    [
        ("model.joblib", "jacobian_np.save(jacobian_np.from_sklearn(joblib.load('model.joblib')), ...)"),
        ("model.pkl", "jacobian_np.from_sklearn"),
        ("net.pt", "jacobian_np.save(jacobian_np.from_torch(module), ...) or export it with torch.onnx.export"),
        ("net.PTH", "from_torch"),
    ],
)
def test_pickled_models_get_conversion_advice(name, advice, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(b"\x80\x04\x95")
    assert main(["info", name]) == 1
    err = one_error_line(capsys)
    assert "does not load (unpickling can run any code)" in err and advice in err
    assert f"to write '{name.rsplit('.', 1)[0]}.npz'" in err


# --- check: at the user's inputs, or in the model's input units --------------------------------


@pytest.fixture
def spy_check_network(monkeypatch):
    """Record the inputs that the check command checks the network at."""
    seen = []
    original = cli.check_network

    def spy(net, x, **kwargs):
        seen.append(np.array(x))
        return original(net, x, **kwargs)

    monkeypatch.setattr(cli, "check_network", spy)
    return seen


def test_check_at_the_users_inputs(model, tmp_path, rng, capsys, spy_check_network):
    _, path = model
    X = rng.normal(size=(20, 3))
    X[3, 1] = np.nan
    np.save(tmp_path / "x.npy", X)
    assert main(["check", path, "--inputs", str(tmp_path / "x.npy"), "--points", "6"]) == 0
    captured = capsys.readouterr()
    assert f"at 6 of the 20 rows of {str(tmp_path / 'x.npy')!r} (seed 0)" in captured.out
    assert captured.err.startswith("jacobian-np: warning: 1 of 20 rows of") and "they are not checked" in captured.err
    (checked,) = spy_check_network
    assert checked.shape == (6, 3)
    assert all(any(np.array_equal(row, x) for x in X) for row in checked)  # rows of the file, none with NaN
    assert main(["check", path, "--inputs", str(tmp_path / "x.npy"), "--points", "100"]) == 0
    assert spy_check_network[1].shape == (19, 3)  # every finite row


def test_check_draws_inputs_from_the_saved_statistics(tmp_path, rng, capsys, spy_check_network):
    mean, std = np.array([1000.0, -5.0, 0.0]), np.array([10.0, 0.1, 1.0])
    net = jn.Network([jn.Affine(rng.normal(size=(3, 4)) / std[:, None], rng.normal(size=4)), jn.Tanh()])
    jn.save(net, tmp_path / "model.npz", input_mean=mean, input_std=std)
    assert main(["check", str(tmp_path / "model.npz"), "--points", "200"]) == 0
    assert "drawn from the input mean and standard deviation saved with the model" in capsys.readouterr().out
    (x,) = spy_check_network
    assert np.all(np.abs(x.mean(axis=0) - mean) < 4 * std / np.sqrt(200))
    np.testing.assert_allclose(x.std(axis=0), std, rtol=0.2)


def test_check_says_what_it_draws_without_statistics(model, capsys, spy_check_network):
    assert main(["check", model[1]]) == 0
    out = capsys.readouterr().out
    assert "5 random inputs from N(0, 1) (the model file has no input statistics; --inputs FILE checks at your data)" in out


def test_check_statistics_of_a_scikit_learn_pipeline(tmp_path, rng, capsys, spy_check_network):
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = rng.normal(loc=[50.0, 1000.0, -3e4], scale=[5.0, 100.0, 1e3], size=(200, 3))  # raw units
    y = np.tanh((X[:, 0] - 50) / 5) + (X[:, 1] - 1000) / 100
    pipeline = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(8,), activation="tanh", solver="lbfgs", max_iter=200, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs may stop before converging: irrelevant here
        pipeline.fit(X, y)
    scaler = pipeline[0]
    jn.save(jn.from_sklearn(pipeline), tmp_path / "model.npz", input_mean=scaler.mean_, input_std=scaler.scale_)
    assert main(["check", str(tmp_path / "model.npz")]) == 0
    (x,) = spy_check_network
    assert np.all(np.abs((x - scaler.mean_) / scaler.scale_) < 6)  # in the pipeline's raw units


# --- nested models ----------------------------------------------------------------------------


@pytest.fixture
def nested_model(tmp_path, rng):
    trunk = jn.Network([jn.Affine(rng.normal(size=(3, 4)), rng.normal(size=4)), jn.Tanh()])
    net = jn.Network(
        [
            trunk,
            jn.Residual(jn.Network([jn.Affine(rng.normal(size=(4, 4))), jn.SiLU()]), scale=0.5),
            jn.LayerNorm(4),
            jn.Parallel([jn.Affine(rng.normal(size=(4, 2))), jn.Network([jn.Affine(rng.normal(size=(4, 1))), jn.Sin()])]),
        ]
    )
    path = tmp_path / "nested.npz"
    jn.save(net, path)
    return net, str(path)


def test_commands_on_a_nested_model(nested_model, tmp_path, rng, capsys, monkeypatch):
    net, path = nested_model
    shapes = []
    original = cli.check_layer
    monkeypatch.setattr(cli, "check_layer", lambda layer, x, **kw: shapes.append(np.shape(x)) or original(layer, x, **kw))
    assert main(["check", path, "--points", "3"]) == 0
    assert shapes == [(3, 3), (3, 4), (3, 4), (3, 4)]  # every layer checked at the 3 points' values
    out = capsys.readouterr().out
    assert "layer 0 Network([Affine(d_in=3, d_out=4), Tanh()]): ok" in out and "layer 1 Residual(" in out
    assert out.rstrip().endswith("passed")
    X = rng.normal(size=(7, 3))
    np.save(tmp_path / "x.npy", X)
    assert main(["jacobian", path, str(tmp_path / "x.npy"), "-o", str(tmp_path / "J.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "J.npy"), net.jacobian(X), rtol=1e-13)
    capsys.readouterr()
    assert main(["info", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("4 layers, d_in = 3, d_out = 3")
    assert [line.split()[:2] for line in lines[1:12]] == [
        ["0", "Network"], ["0", "Affine(d_in=3,"], ["1", "Tanh()"],
        ["1", "Residual"], ["block", "(scale"], ["0", "Affine(d_in=4,"], ["1", "SiLU()"],
        ["2", "LayerNorm(4)"],
        ["3", "Parallel"], ["branch", "0"], ["branch", "1"],
    ]
    assert lines[9].endswith("4 -> 3  (12 parameters)") and lines[10].endswith("4 -> 2  (8 parameters)")
