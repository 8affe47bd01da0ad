"""What the package promises about itself: its warnings policy, typing marker, metadata."""

import configparser
import re
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import jacobian_np as jn

ROOT = Path(__file__).resolve().parent.parent


def run_as(module_name, source, **names):
    """Run ``source`` with globals of a module called ``module_name``: warnings are attributed to it."""
    exec(compile(source, f"<{module_name}>", "exec"), {"__name__": module_name, **names})


def test_warnings_from_this_package_are_errors():
    with pytest.raises(RuntimeWarning, match="overflow"):
        run_as("jacobian_np.activations", "np.exp(np.float64(1000.0))", np=np)
    with pytest.raises(jn.ZeroCurvatureWarning):  # its own category, wherever it is attributed
        run_as("user_code", "import warnings, jacobian_np\nwarnings.warn(jacobian_np.ZeroCurvatureWarning('zero'))")


def test_third_party_deprecations_stay_warnings():
    """An old or new dependency deprecating something inside itself must not fail the suite."""
    with warnings.catch_warnings(record=True) as caught:  # keeps the configured filters
        run_as("somelib.internals", "import warnings\nwarnings.warn('old API', DeprecationWarning)")
    assert [w.category for w in caught] == [DeprecationWarning]


def test_the_package_is_marked_as_typed():
    assert resources.files("jacobian_np").joinpath("py.typed").is_file()
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "py.typed" in config["options.package_data"]["jacobian_np"]
    assert "Typing :: Typed" in config["metadata"]["classifiers"]


def test_extras_are_lower_bounds():
    """An extra must not force an installed PyTorch (or anything) up or down."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    for extra, requirements in config["options.extras_require"].items():
        pinned = [r for r in requirements.split() if "==" in r]
        assert not pinned, f"[{extra}] pins {pinned}"


def test_citation_and_changelog_match_the_version():
    citation = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(rf'^version: "{re.escape(jn.__version__)}"$', citation, flags=re.MULTILINE)
    assert re.search(r"^cff-version: 1\.2\.0$", citation, flags=re.MULTILINE)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{jn.__version__}]" in changelog and "## [Unreleased]" in changelog
