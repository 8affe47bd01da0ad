"""Docstring examples and the Markdown docs run as doctests; every public name has Examples."""

import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import jacobian_np

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
MODULES = sorted(
    {"jacobian_np"} | {f"jacobian_np.{m.name}" for m in pkgutil.iter_modules(jacobian_np.__path__)}
)
DOCS = sorted((Path(__file__).resolve().parent.parent / "docs").glob("*.md"))

#: modules and pages whose examples need an optional package; they skip without it
NEEDS = {"jacobian_np.dask": "dask.array", "scale.md": "dask.array"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert result.failed == 0


@pytest.mark.parametrize("name", jacobian_np.__all__)
def test_every_public_name_has_a_runnable_example(name):
    obj = getattr(jacobian_np, name)
    doc = inspect.getdoc(obj) or ""
    assert "Examples\n--------" in doc, f"{name} has no Examples section"
    assert ">>> " in doc


def test_docs_exist():
    names = {path.name for path in DOCS}
    assert {"conventions.md", "layers.md", "quickstart.md", "adding_a_layer.md"} <= names


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_markdown_examples(path):
    if path.name in NEEDS:
        pytest.importorskip(NEEDS[path.name])
    result = doctest.testfile(str(path), module_relative=False, optionflags=FLAGS, verbose=False)
    assert result.failed == 0


def test_readme_example_runs_and_checks_out(capsys):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [block.split("\n", 1)[1] for block in readme.split("```")[1::2] if block.startswith("python\n")]
    assert len(blocks) == 1
    exec(compile(blocks[0], "README.md", "exec"), {})
    shape, *_, verdict = capsys.readouterr().out.split()
    assert (shape, verdict) == ("(1000,", "True")


def _public_callables(module):
    return [
        (f"{module.__name__}.{name}", obj)
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    ]


def test_api_reference_lists_every_public_name():
    """docs/api.md's autosummary tables give each public name its own page."""
    api = (DOCS[0].parent / "api.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^ {3}([A-Za-z_][\w.]*)$", api, flags=re.MULTILINE))
    public = set(jacobian_np.__all__)
    for module in (jacobian_np.losses, jacobian_np.optimize):
        public |= {name.removeprefix("jacobian_np.") for name, _ in _public_callables(module)}
    assert not sorted(public - listed), "add these to an autosummary table in docs/api.md"


@pytest.mark.parametrize("module", ["checks", "losses", "optimize"])
def test_public_functions_have_see_also(module):
    module = importlib.import_module(f"jacobian_np.{module}")
    missing = [name for name, obj in _public_callables(module) if "See Also\n--------" not in (inspect.getdoc(obj) or "")]
    assert not missing
