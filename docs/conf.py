"""Sphinx configuration of the jacobian_np documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``.ci/run``
does).  The pages are Markdown (MyST); the ``pycon`` examples in them and in every
docstring run as doctests in the test suite (``tests/test_docs.py``), and the
gallery scripts run at build time (sphinx-gallery) and as tests
(``tests/test_gallery.py``).
"""

import os
import sys

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
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "gallery"]  # gallery/ is the source sphinx-gallery renders into auto_gallery/

# Markdown: anchors for the headings, so links like modes.md#benchmark resolve
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# API reference
autosummary_generate = False
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
