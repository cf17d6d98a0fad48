"""The documentation builds without a single warning (``sphinx-build -W``).

This is the ``make docs`` build, into a temporary directory: the mathematics pages,
the demo pages generated from ``demos/*.py`` and the API pages generated from the
docstrings of ``jkoflow.meshes`` and ``jkoflow.solvers`` (which imports them, and so
Firedrake).  A broken cross-reference, a malformed docstring, a demo comment that is
not valid reStructuredText or a public name that cannot be documented fails it.
"""
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"$ {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    html = tmp_path / "html"
    for page in ("index", "maths/jko", "maths/implicit_bias", "maths/reference_solutions",
                 "api/generated/jkoflow.solvers", "api/generated/jkoflow.meshes"):
        assert (html / f"{page}.html").exists(), page
    # every demo has its page, and its code is on it
    demos = sorted(p.stem for p in (DOCS.parent / "demos").glob("[!_]*.py"))
    for name in demos:
        page = (html / "demos" / "generated" / f"{name}.html").read_text()
        assert "_plotting" in page and "The script" in page, name
    # the API pages document the classes users import
    api = (html / "api" / "generated" / "jkoflow.solvers.html").read_text()
    for name in ("JKOScheme", "WassersteinGradientFlow", "JKOFlow", "kl"):
        assert f'id="jkoflow.solvers.{name}"' in api, name
