"""Where the benchmarks write their tables: ``benchmarks/results/<stem>.md``."""
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write_table(stem: str, lines: list, quick: bool = False) -> str:
    """Write ``lines`` to ``results/<stem>.md`` (``<stem>_quick.md`` for a quick sweep);
    returns the path without the extension (for a figure next to it).  Call on one
    rank only."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, stem + ("_quick" if quick else ""))
    with open(path + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path
