"""Sphinx configuration of the jacobian_np documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``.ci/run``
does).  The pages are Markdown (MyST); the ``pycon`` examples in them and in every
docstring run as doctests in the test suite (``tests/test_docs.py``), and the
gallery scripts run at build time (sphinx-gallery) and as tests
(``tests/test_gallery.py``).
"""

import hashlib
import os
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.abspath(".."))

import jacobian_np  # noqa: E402

project = "jacobian_np"
author = "the jacobian_np developers"
copyright = "2026, the jacobian_np developers"
release = version = jacobian_np.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "gallery"]  # gallery/ is the source sphinx-gallery renders into auto_gallery/

# Markdown: anchors for the headings, so links like modes.md#benchmark resolve
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# API reference: api.md lists every public name in autosummary tables, and
# autosummary writes one page per function and class into generated/ (not kept in
# git) from the templates in _templates/autosummary/
templates_path = ["_templates"]
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # the numpydoc sections say it
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_gallery",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "pydata_sphinx_theme"
html_title = f"jacobian_np {version}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path: list = []

def _summary_keeping_inline_literals(extract):
    """Sphinx 9's autosummary cuts a summary at the first ``. `` even inside an
    inline literal (it checks the whole stanza, not the cut, for broken markup),
    as in ``y = layers[-1](... layers[0](x))``: fall back to the first stanza."""

    def extract_summary(doc, settings):
        summary = extract(doc, settings)
        if summary.count("``") % 2:
            stanza = []
            for line in doc:
                if stanza and not line.strip():
                    break
                if line.strip():
                    stanza.append(line.strip())
            summary = " ".join(stanza)
        return summary

    return extract_summary


import sphinx.ext.autosummary  # noqa: E402

sphinx.ext.autosummary.extract_summary = _summary_keeping_inline_literals(sphinx.ext.autosummary.extract_summary)

# Links to NumPy, SciPy and PyTorch (intersphinx).  CI builds without network
# access, so each project lists two inventories: the online one first, then a
# small local one written below from the objects these pages name.  Sphinx uses
# the first that loads and, when another one works, reports the failed one at
# INFO level only: an offline build still links those objects and passes with
# warnings as errors; an online build links everything.
_INVENTORIES = {
    "numpy": (
        "NumPy",
        "https://numpy.org/doc/stable/",
        [
            ("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html#$"),
            ("numpy.dtype", "py:class", "reference/generated/numpy.dtype.html#$"),
            ("numpy.random.Generator", "py:class", "reference/random/generator.html#$"),
            ("numpy.random.default_rng", "py:function", "reference/random/generator.html#$"),
            ("numpy.linalg.det", "py:function", "reference/generated/numpy.linalg.det.html#$"),
            ("numpy.linalg.slogdet", "py:function", "reference/generated/numpy.linalg.slogdet.html#$"),
            ("numpy.linalg.svd", "py:function", "reference/generated/numpy.linalg.svd.html#$"),
            ("numpy.linalg.inv", "py:function", "reference/generated/numpy.linalg.inv.html#$"),
            ("numpy.allclose", "py:function", "reference/generated/numpy.allclose.html#$"),
            ("numpy.load", "py:function", "reference/generated/numpy.load.html#$"),
            ("numpy.savez", "py:function", "reference/generated/numpy.savez.html#$"),
        ],
    ),
    "scipy": (
        "SciPy",
        "https://docs.scipy.org/doc/scipy/",
        [
            ("scipy.optimize.least_squares", "py:function", "reference/generated/scipy.optimize.least_squares.html#$"),
            ("scipy.optimize.minimize", "py:function", "reference/generated/scipy.optimize.minimize.html#$"),
            ("scipy.differentiate.jacobian", "py:function", "reference/generated/scipy.differentiate.jacobian.html#$"),
            ("scipy.special.expit", "py:data", "reference/generated/scipy.special.expit.html#$"),
        ],
    ),
    "torch": (
        "PyTorch",
        "https://docs.pytorch.org/docs/stable/",
        [
            ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html#$"),
            ("torch.nn.Linear", "py:class", "generated/torch.nn.Linear.html#$"),
            ("torch.nn.Sequential", "py:class", "generated/torch.nn.Sequential.html#$"),
            ("torch.nn.LayerNorm", "py:class", "generated/torch.nn.LayerNorm.html#$"),
            ("torch.func.jacrev", "py:function", "generated/torch.func.jacrev.html#$"),
            ("torch.func.jacfwd", "py:function", "generated/torch.func.jacfwd.html#$"),
            ("torch.func.hessian", "py:function", "generated/torch.func.hessian.html#$"),
            ("torch.func.vmap", "py:function", "generated/torch.func.vmap.html#$"),
            ("torch.autograd.functional.jacobian", "py:function", "generated/torch.autograd.functional.jacobian.html#$"),
        ],
    ),
}


def _local_inventory(project: str, entries: list) -> str:
    """Write a Sphinx inventory (format 2) of ``entries`` to the temporary directory."""
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in entries)
    header = f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
    data = (header + "# The remainder of this file is compressed using zlib.\n").encode() + zlib.compress(body.encode())
    path = os.path.join(tempfile.gettempdir(), f"jacobian_np-{project}-{hashlib.sha256(data).hexdigest()[:16]}.inv")
    if not os.path.exists(path):
        partial = f"{path}.{os.getpid()}"
        with open(partial, "wb") as file:
            file.write(data)
        os.replace(partial, path)
    return path


intersphinx_mapping = {
    key: (url, (None, _local_inventory(project, entries))) for key, (project, url, entries) in _INVENTORIES.items()
}
intersphinx_timeout = 5  # seconds per inventory, when the network drops connections silently
