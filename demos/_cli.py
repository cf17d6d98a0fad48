"""The demos' command line (not a demo itself): argparse options, PETSc options passed on.

A demo defines its options on :func:`parser` and reads them with :func:`parse`.
Everything argparse does not know must look like a PETSc option, ``-prefix_name``
optionally followed by one value (``-jko_snes_monitor``, ``-wgf_ksp_type gmres``):
PETSc reads those from ``sys.argv`` itself.  Anything else -- a misspelt demo option
such as ``--refinment 5`` or ``-cheap``, a stray word -- is an error that names the
offending argument and the closest demo option, instead of being silently ignored.
"""
from __future__ import annotations

import argparse
import atexit
import difflib
import gc
import re

__all__ = ["parser", "parse", "petsc_options"]

#: ``-prefix_name``: a letter, then word characters with at least one underscore.
_PETSC_OPTION = re.compile(r"^-[A-Za-z]\w*_\w+$")
#: PETSc options without an underscore that are still worth passing on.
_PETSC_PLAIN = {"-help", "-info", "-version"}
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser for a demo whose module docstring is ``doc``.

    Its description is the docstring's first line, defaults are shown by ``--help``,
    and only the long form ``--help`` is defined, so that PETSc's own ``-help`` (and
    any ``-h...`` option) reaches PETSc instead of argparse.
    """
    p = argparse.ArgumentParser(description=doc.strip().split("\n")[0].replace("--", "\u2013"),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                add_help=False, allow_abbrev=False)
    p.add_argument("--help", action="help", help="show this help message and exit")
    return p


def petsc_options(extra: list[str]) -> tuple[list[str], list[str]]:
    """Split argparse's leftover arguments into PETSc options (each with its value,
    if any) and the rest (the errors)."""
    petsc, bad = [], []
    i = 0
    while i < len(extra):
        tok = extra[i]
        if _PETSC_OPTION.match(tok) or tok in _PETSC_PLAIN:
            petsc.append(tok)
            # one value may follow: a word or a number, not another option
            if i + 1 < len(extra) and (not extra[i + 1].startswith("-")
                                       or _NUMBER.match(extra[i + 1])):
                petsc.append(extra[i + 1])
                i += 1
        else:
            bad.append(tok)
        i += 1
    return petsc, bad


def parse(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the demo options, let PETSc options through, reject everything else.

    Raises ``SystemExit`` (via ``p.error``) with a message naming the first unknown
    argument and, if there is one, the closest demo option.
    """
    args, extra = p.parse_known_args(argv)
    _, bad = petsc_options(extra)
    if bad:
        known = sorted(s for a in p._actions for s in a.option_strings if s.startswith("--"))
        tok = bad[0]
        name = "--" + tok.lstrip("-").split("=")[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        what = "unknown option" if tok.startswith("-") else "unexpected argument"
        p.error(f"{what} {tok!r}{hint}. Demo options: {', '.join(known)}; PETSc options "
                f"have the form -prefix_name [value], e.g. -jko_snes_monitor")
    _hold_world_communicator()
    atexit.register(gc.collect)
    return args


#: A PETSc object on COMM_WORLD kept alive until PETSc finalises (see below).
_HOLD: list = []


def _hold_world_communicator():
    """Keep one PETSc object on ``COMM_WORLD`` alive on every rank until exit.

    PETSc attaches an inner communicator to ``COMM_WORLD`` while objects live on it and
    frees it with the last one.  At exit petsc4py cleans up garbage on ``COMM_WORLD``
    collectively; if the inner communicator was freed on one rank but not on another
    (rank 0 keeps plotting objects the others do not have), that rank duplicates a new
    one (``MPI_Comm_dup``, collective) while the others reduce: a 2-rank run of a demo
    that builds many solvers (``implicit_bias``) hung there after its last output.
    Holding an object on every rank keeps the inner communicator on every rank, and
    ``gc.collect()`` at exit makes the discarded solvers garbage on all ranks alike.
    """
    if not _HOLD:
        from firedrake.petsc import PETSc
        _HOLD.append(PETSc.Vec().createMPI((1, None), comm=PETSc.COMM_WORLD))
