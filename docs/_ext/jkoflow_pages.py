"""Sphinx extension: demo pages from the literate demo scripts, API pages from the package.

Both kinds of page are generated when the build starts (``builder-inited``), so a
new demo or a new public name needs no edit under ``docs/``.

Demo pages (``docs/demos/generated/<name>.rst``), in the manner of Firedrake's
demos: the module docstring of ``demos/<name>.py`` (reStructuredText, with the page
title) comes first, then the gallery figure, then the script itself, where every
paragraph of comments that starts in column 0 becomes text and everything between
them becomes a code block.  Comments inside code (indented, or at the end of a
line) stay in the code.  The whole script is offered for download.

API pages (``docs/api/generated/<package>.rst``): every public name of
``jkoflow.meshes`` and ``jkoflow.solvers`` (its ``__all__``, or else the names
without a leading underscore that are not modules), grouped by the module that
defines it, under that module's docstring, documented by autodoc (numpydoc
docstrings via napoleon).  The names are documented where users import them
(``jkoflow.solvers.JKOScheme``), so the demos' cross-references resolve.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMOS = ROOT / "demos"
PACKAGES = ("jkoflow.meshes", "jkoflow.solvers")


# --- demos ------------------------------------------------------------------
def _escape(text: str) -> str:
    """Plain comment text as reStructuredText: ``|``, ``*`` and a trailing ``_``
    would start markup (substitutions, emphasis, references)."""
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
    return re.sub(r"(\w)_(?=\W|$)", r"\1\\_", text)


def _blocks(source: str):
    """Split a script (after its docstring) into ("text", lines) and ("code", lines)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    start = 0
    if (tree.body and isinstance(tree.body[0], ast.Expr)
            and isinstance(getattr(tree.body[0], "value", None), ast.Constant)
            and isinstance(tree.body[0].value.value, str)):
        start = tree.body[0].end_lineno
    blocks: list[tuple[str, list[str]]] = []
    prev_blank = True
    for line in lines[start:]:
        is_comment = line.startswith("#") and not line.startswith("#!")
        if is_comment and (prev_blank or (blocks and blocks[-1][0] == "text")):
            text = line[1:]
            text = text[1:] if text.startswith(" ") else text
            if not blocks or blocks[-1][0] != "text":
                blocks.append(("text", []))
            blocks[-1][1].append(text)
        else:
            if not blocks or blocks[-1][0] != "code":
                blocks.append(("code", []))
            blocks[-1][1].append(line)
        prev_blank = not line.strip()
    return blocks


def demo_page(path: Path) -> str:
    source = path.read_text()
    doc = ast.get_docstring(ast.parse(source), clean=True) or path.stem
    out = [f".. _demo-{path.stem}:", "", doc.rstrip(), ""]
    figure = DEMOS / "gallery" / f"{path.stem}.png"
    if figure.exists():
        out += [f".. figure:: /../demos/gallery/{path.stem}.png", "   :width: 100%", "",
                f"   The figure of ``demos/{path.stem}.py --cheap``.", ""]
    out += ["The script", "-" * 10, "",
            f"The complete script: :download:`{path.name} </../demos/{path.name}>`.", ""]
    for kind, lines in _blocks(source):
        while lines and not lines[0].strip():
            lines.pop(0)
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            continue
        if kind == "text":
            out += [_escape(line) for line in lines] + [""]
        else:
            out += [".. code-block:: python", ""] + [("   " + line).rstrip() for line in lines]
            out.append("")
    return "\n".join(out) + "\n"


def write_demo_pages(srcdir: Path) -> list[str]:
    target = srcdir / "demos" / "generated"
    target.mkdir(parents=True, exist_ok=True)
    names = []
    for path in sorted(DEMOS.glob("*.py")):
        if path.name.startswith("_"):
            continue
        _write(target / f"{path.stem}.rst", demo_page(path))
        names.append(path.stem)
    for stale in target.glob("*.rst"):
        if stale.stem not in names:
            stale.unlink()
    return names


# --- API --------------------------------------------------------------------
def public_names(package):
    names = getattr(package, "__all__", None)
    if names is None:
        names = [n for n in vars(package) if not n.startswith("_")
                 and not inspect.ismodule(getattr(package, n))]
    return [n for n in names if not inspect.ismodule(getattr(package, n))]


def api_page(package_name: str) -> str:
    package = importlib.import_module(package_name)
    by_module: dict[str, list[str]] = {}
    for name in public_names(package):
        obj = getattr(package, name)
        module = getattr(obj, "__module__", None) if (inspect.isclass(obj) or callable(obj)) \
            else None
        if not (module or "").startswith(package_name + "."):
            module = package_name
        by_module.setdefault(module, []).append(name)
    title = f"``{package_name}``"
    out = [title, "=" * len(title), "", f".. automodule:: {package_name}", ""]
    for module in sorted(by_module, key=lambda m: (m != package_name, m)):
        if module != package_name:
            heading = f"``{module.rsplit('.', 1)[1]}``"
            out += [heading, "-" * len(heading), "", f".. automodule:: {module}", ""]
        for name in sorted(by_module[module], key=str.lower):
            obj = getattr(package, name)
            if inspect.isclass(obj):
                if issubclass(obj, BaseException):
                    directive, options = "autoexception", []
                else:
                    directive, options = "autoclass", ["   :members:", "   :show-inheritance:"]
            elif callable(obj):
                directive, options = "autofunction", []
            else:
                # a constant: autodata would show its type's docstring (e.g. dict's)
                out += [f".. py:data:: {package_name}.{name}",
                        f"   :type: {type(obj).__name__}", "",
                        f"   A constant of :mod:`{module}`.", ""]
                continue
            out += [f".. {directive}:: {package_name}.{name}", *options, ""]
    return "\n".join(out) + "\n"


def write_api_pages(srcdir: Path, mock_imports=()):
    from sphinx.ext.autodoc.mock import mock
    target = srcdir / "api" / "generated"
    target.mkdir(parents=True, exist_ok=True)
    with mock(list(mock_imports)):  # honours autodoc_mock_imports, like autodoc
        for package_name in PACKAGES:
            _write(target / f"{package_name}.rst", api_page(package_name))


def _write(path: Path, text: str):
    """Write only when changed, so that Sphinx rebuilds only what changed."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(app):
    srcdir = Path(app.srcdir)
    write_demo_pages(srcdir)
    write_api_pages(srcdir, app.config.autodoc_mock_imports)


def setup(app):
    app.connect("builder-inited", generate)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
