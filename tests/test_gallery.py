"""The example gallery: every docs/gallery/plot_*.py runs cleanly and draws a figure.

Scripts are found by glob, so a new one is tested automatically. Each runs with
``runpy.run_path`` in a temporary working directory, with matplotlib's Agg backend
and ``plt.show`` replaced by a no-op; warnings are errors (setup.cfg), so a script
may only raise warnings it catches itself. Everything skips without matplotlib;
a script that imports scikit-learn skips without it.
"""

import ast
import runpy
from pathlib import Path

import pytest

GALLERY = Path(__file__).resolve().parent.parent / "docs" / "gallery"
SCRIPTS = sorted(GALLERY.glob("plot_*.py"))


def imported_modules(tree):
    """Top-level package names imported anywhere in a module's syntax tree."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def assert_rst_title(text, what):
    lines = text.strip("\n").splitlines()
    assert len(lines) >= 2, f"{what} must start with a title underlined with '='"
    title, underline = lines[0], lines[1]
    assert title.strip() and title == title.strip(), f"{what}: bad title line {title!r}"
    assert set(underline) == {"="} and len(underline) >= len(title), (
        f"{what}: the title {title!r} must be underlined with at least {len(title)} '='; got {underline!r}"
    )


def test_gallery_exists():
    assert SCRIPTS, f"no plot_*.py in {GALLERY}"
    assert_rst_title((GALLERY / "README.rst").read_text(encoding="utf-8"), "README.rst")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_script_starts_with_a_docstring_title(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstring = ast.get_docstring(tree, clean=False)
    assert docstring is not None, f"{path.name} must start with a module docstring"
    assert tree.body[0].lineno == 1, f"{path.name}: the docstring must be the first line"
    assert_rst_title(docstring, path.name)
    explanation = docstring.strip("\n").splitlines()[2:]
    assert any(line.strip() for line in explanation), f"{path.name}: the title needs an explanation"
    assert "\n# %%" in path.read_text(encoding="utf-8"), f"{path.name} has no '# %%' cells"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_script_runs_and_draws(path, tmp_path, monkeypatch, capsys):
    matplotlib = pytest.importorskip("matplotlib")
    if "sklearn" in imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
        pytest.importorskip("sklearn")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)
    monkeypatch.chdir(tmp_path)
    plt.close("all")
    try:
        runpy.run_path(str(path), run_name="__main__")
        figures = plt.get_fignums()
    finally:
        plt.close("all")
    assert figures, f"{path.name} made no figure"
    assert capsys.readouterr().out.strip(), f"{path.name} printed nothing"
