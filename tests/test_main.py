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
