"""Sphinx configuration for the trajflow documentation (scverse style: MyST, myst-nb, autosummary).

Build with ``make docs`` from the repository root, which runs
``sphinx-build -W --keep-going -b html docs docs/_build/html``.

The build needs no network: notebooks are rendered from their committed outputs
(``nb_execution_mode = "off"``) and intersphinx is off unless ``TRAJFLOW_DOCS_INTERSPHINX=1`` is
set (its inventories are downloaded from the projects' sites).
"""

from __future__ import annotations

import inspect
import os
import re
import warnings
from datetime import datetime
from importlib.metadata import metadata
from pathlib import Path

import trajflow

# sphinx-autodoc-typehints calls an API that Sphinx 9 deprecates: a Python warning, not a
# documentation problem, so keep it out of the build log.
warnings.filterwarnings("ignore", message=r".*set_application.* is deprecated")

# -- Project information -----------------------------------------------------

info = metadata("trajflow")
project = info["Name"]
author = "trajflow developers"
copyright = f"{datetime.now():%Y}, {author}"
version = info["Version"]
release = version

repository_url = "https://github.com/trajflow/trajflow"

# -- General configuration ---------------------------------------------------

needs_sphinx = "7.0"
extensions = [
    "myst_nb",  # also registers myst_parser for .md pages
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
    "sphinxarg.ext",
]

templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "**.ipynb_checkpoints",
    "tutorials/README.md",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
# Single backticks in numpydoc docstrings (`x`) are code, as in scanpy.
default_role = "literal"
# Quotes and ellipses only: ``--option`` in prose (and in the CLI's help) must stay two hyphens.
smartquotes_action = "qe"

# -- autodoc / autosummary / napoleon (numpydoc-style docstrings) ------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "groupwise"
autodoc_default_options = {"members": False}
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
typehints_defaults = "braces"
always_document_param_types = False
typehints_document_rtype = True


def _section_names(doc: str, section: str) -> list[str]:
    """Entries of a numpydoc section (``Attributes``) of a docstring."""
    match = re.search(rf"^{section}\n-+\n(.*?)(?:^\S[^\n]*\n-+\n|\Z)", doc, re.M | re.S)
    if match is None:
        return []
    names = []
    for line in match.group(1).splitlines():
        if line and not line[0].isspace():
            names.extend(n.strip() for n in line.split(":")[0].split(","))
    return names


def _napoleon_attributes() -> dict[str, list[str]]:
    """Attributes that a class documents in its ``Attributes`` section, by full class name.

    napoleon turns those into attribute entries of the class; the class template
    (``_templates/autosummary/class.rst``) skips them so nothing is documented twice.
    """
    out = {}
    modules = [trajflow, trajflow.tl, trajflow.pl, trajflow.datasets, trajflow.benchmark]
    for module in modules:
        for name in dir(module):
            obj = getattr(module, name)
            if inspect.isclass(obj) and (doc := inspect.getdoc(obj)):
                out[f"{module.__name__}.{name}"] = _section_names(doc, "Attributes")
    return out


def _long_values() -> list[str]:
    """Module-level data whose value is too long (or holds memory addresses) to print."""
    out = []
    for module in [trajflow, trajflow.datasets, trajflow.benchmark, trajflow.metrics]:
        for name, obj in vars(module).items():
            text = repr(obj)
            if name.isupper() and (len(text) > 100 or " at 0x" in text):
                out.append(f"{module.__name__}.{name}")
    return out


autosummary_context = {
    "napoleon_attributes": _napoleon_attributes(),
    "long_values": _long_values(),
}


def _check_api_page(app) -> None:
    """Warn (an error under ``-W``) for a name in a public ``__all__`` missing from ``api.md``."""
    from sphinx.util import logging

    text = (Path(app.srcdir) / "api.md").read_text()
    # autosummary entries (indented names) and hand-written ``.. data::`` entries
    listed = set(re.findall(r"^\s+([\w.]+)\s*$", text, re.M))
    listed |= set(re.findall(r"^\.\. data:: (\w+)", text, re.M))
    modules = [trajflow, trajflow.tl, trajflow.pl, trajflow.datasets, trajflow.benchmark]
    modules.append(trajflow.metrics)
    skip = {"__version__", "tl", "pl", "datasets", "benchmark", "metrics"}
    for module in modules:
        prefix = module.__name__.removeprefix("trajflow").lstrip(".")
        names = getattr(module, "__all__", None)
        if names is None:  # no __all__: the functions and classes the module defines
            names = [
                n
                for n, obj in vars(module).items()
                if not n.startswith("_")
                and (inspect.isfunction(obj) or inspect.isclass(obj))
                and obj.__module__ == module.__name__
            ]
        for name in names:
            entry = f"{prefix}.{name}" if prefix else name
            if name not in skip and entry not in listed:
                logging.getLogger(__name__).warning(
                    "%s.%s is public (in __all__) but not listed in docs/api.md",
                    module.__name__,
                    name,
                    location="api",
                )


# -- MyST / myst-nb ----------------------------------------------------------

myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3
# The notebooks are rendered from their committed outputs; the build never runs them.
nb_execution_mode = "off"
nb_merge_streams = True
nb_output_stderr = "show"

# -- intersphinx: optional, it needs the network -----------------------------

if os.environ.get("TRAJFLOW_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "pandas": ("https://pandas.pydata.org/pandas-docs/stable/", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
    }

# -- HTML output -------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = "trajflow"
html_theme_options = {
    "repository_url": repository_url,
    "repository_branch": "main",
    "path_to_docs": "docs/",
    "use_repository_button": True,
    "navigation_with_keys": False,
}
html_show_sourcelink = False


def setup(app):
    app.connect("builder-inited", _check_api_page)
