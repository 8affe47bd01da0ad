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


#: where the public methods of Network are defined (network.py and its pass
#: modules); the layer-protocol methods it inherits (backward, pull, ...) are
#: documented on Layer
NETWORK_MODULES = {
    "jacobian_np.network", "jacobian_np._first_order", "jacobian_np._second_order", "jacobian_np._training",
    "jacobian_np._taylor_methods", "jacobian_np._taylor_training",
}

#: numpydoc order: See Also after these sections and before the next ones
BEFORE_SEE_ALSO = ("Parameters", "Returns", "Yields", "Raises", "Warns")
AFTER_SEE_ALSO = ("Notes", "References", "Examples")


def _network_methods():
    """The public methods and properties of Network defined in NETWORK_MODULES."""
    methods = {}
    for name in dir(jacobian_np.Network):
        owner = next(cls for cls in jacobian_np.Network.__mro__ if name in vars(cls))
        if not name.startswith("_") and owner.__module__ in NETWORK_MODULES:
            methods[f"Network.{name}"] = getattr(jacobian_np.Network, name)
    return methods


def _documented_api():
    """Every public name: ``__all__``, the public modules' own functions and classes, Network's methods."""
    api = {name: getattr(jacobian_np, name) for name in jacobian_np.__all__}
    for name in MODULES:
        if name != "jacobian_np" and not name.split(".")[-1].startswith("_"):
            for qualified, obj in _public_callables(importlib.import_module(name)):
                if obj is not getattr(jacobian_np, qualified.rsplit(".", 1)[-1], None):  # listed once
                    api[qualified] = obj
    api.update(_network_methods())
    return api


def test_network_methods_are_all_covered():
    expected = {
        "forward", "forward_backward", "jacobian", "mode_costs", "jvp", "vjp", "divergence", "hessian",
        "laplacian", "hessian_diagonal", "params", "get_flat_params", "set_flat_params", "param_grad",
        "jacobian_param_grad", "jacobian_and_pullback", "taylor", "biharmonic", "taylor_param_grad",
        "taylor_and_pullback", "laplacian_param_grad", "laplacian_and_pullback",
    }
    assert expected <= {name.removeprefix("Network.") for name in _network_methods()}


@pytest.mark.parametrize("obj", [pytest.param(obj, id=name) for name, obj in sorted(_documented_api().items())])
def test_public_api_has_see_also(obj):
    """Every public name points to its neighbours, in numpydoc's section order."""
    doc = inspect.getdoc(obj) or ""
    sections = re.findall(r"^(\w[\w ]*)\n-+$", doc, flags=re.MULTILINE)
    assert "See Also" in sections, "no See Also section"
    entries = doc.split("See Also\n--------\n", 1)[1].split("\n\n", 1)[0]
    assert all(" : " in line for line in entries.splitlines() if not line.startswith(" ")), (
        f"every See Also entry says why the neighbour is relevant (name : reason):\n{entries}"
    )
    where = sections.index("See Also")
    assert not set(sections[where + 1 :]) & set(BEFORE_SEE_ALSO), f"See Also comes too early: {sections}"
    assert not set(sections[:where]) & set(AFTER_SEE_ALSO), f"See Also comes too late: {sections}"
