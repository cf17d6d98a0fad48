"""Where the benchmarks write their tables: ``benchmarks/results/<stem>.md``.

A results file may end in hand-written notes (how the run was made, how to read it),
below the line :data:`NOTES`.  Rerunning the benchmark rewrites the tables above that
line and keeps the notes, under a warning that they were written about an earlier run.
"""
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

#: The line above a results file's hand-written notes.
NOTES = "<!-- notes: written by hand about a run; kept when the benchmark is rerun -->"
#: The warning put over kept notes once the tables above them were rewritten.
STALE = ("*The tables above were regenerated after these notes were written: check the "
         "figures quoted below against them.*")


def kept_notes(path: str) -> list:
    """The notes of an existing results file (from :data:`NOTES` on), or ``[]``."""
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        lines = fh.read().splitlines()
    if NOTES not in lines:
        return []
    notes = lines[lines.index(NOTES):]
    if STALE not in notes:
        notes.insert(1, STALE)
    return notes


def results_path(stem: str, quick: bool = False) -> str:
    """``results/<stem>`` (``<stem>_quick`` for a quick sweep), without the extension."""
    return os.path.join(RESULTS, stem + ("_quick" if quick else ""))


def table_rows(stem: str, names, quick: bool = False) -> dict:
    """The table rows of an existing results file whose first cell is one of
    ``names``, by that name, in file order (``{}`` if there is no file): the rows a
    partial rerun keeps."""
    path = results_path(stem, quick) + ".md"
    rows: dict = {}
    if os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                cells = line.split("|")
                if len(cells) > 2 and cells[1].strip() in names:
                    rows.setdefault(cells[1].strip(), []).append(line.rstrip("\n"))
    return rows


def table_rows_by_mesh(stem: str, names, quick: bool = False) -> dict:
    """:func:`table_rows` grouped by the table's second cell, the mesh (cells per
    side): ``{name: {cells: [rows]}}``, the rows a rerun of some meshes keeps."""
    out: dict = {}
    for name, rows in table_rows(stem, names, quick).items():
        for row in rows:
            out.setdefault(name, {}).setdefault(int(row.split("|")[2]), []).append(row)
    return out


def write_table(stem: str, lines: list, quick: bool = False) -> str:
    """Write ``lines`` to :func:`results_path` ``.md``, keeping the file's hand-written
    notes (see the module notes); returns the path without the extension (for a
    figure next to it).  Call on one rank only."""
    os.makedirs(RESULTS, exist_ok=True)
    path = results_path(stem, quick)
    notes = kept_notes(path + ".md")
    with open(path + ".md", "w") as fh:
        fh.write("\n".join(list(lines) + ([""] + notes if notes else [])) + "\n")
    return path
