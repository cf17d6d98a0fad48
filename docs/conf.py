"""Sphinx configuration for the jkoflow documentation (``make docs``)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

# Importing Firedrake (for the API pages) must not start threads or write PETSc
# option warnings into the build log.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("FIREDRAKE_DISABLE_OPTIONS_LEFT", "1")

project = "jkoflow"
author = "the jkoflow developers"
copyright = "2026, the jkoflow developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "jkoflow_pages",
]
exclude_patterns = ["_build"]
templates_path = []

# numpydoc-style docstrings
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# dataclass fields listed under "Attributes" are documented once, by autodoc
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"undoc-members": False}

html_theme = "alabaster"
html_static_path = []
html_theme_options = {
    "description": "Wasserstein gradient flows, JKO steps and the JKO-Flow with Firedrake",
    "page_width": "1100px",
    "sidebar_width": "230px",
}
math_number_all = False
