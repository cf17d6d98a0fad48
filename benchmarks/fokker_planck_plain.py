"""Accuracy per CPU second of *plain* JKO on linear Fokker--Planck, and where the time goes.

The problem and the error are those of ``fokker_planck_cost.py`` (unit square,
:math:`V = -x`, exact solution, :math:`t_0 = 0.05 \\to T = 0.25`, log-density
unknowns, MUMPS, one core).  Plain JKO is first order, so its L1 error at :math:`T` is
about :math:`0.39\\,\\eta/(T - t_0)` once the mesh resolves the solution: reaching
:math:`5\\cdot10^{-3}` takes about 80 steps and :math:`2.5\\cdot10^{-3}` about 160,
whatever the element.  What decides the cost is therefore the price of one step,
which this benchmark measures over P1 and P2, N = 1, 2, 4 slices on the coarser
mesh of each element and N = 1 on a finer one:

* the table of L1 error and CPU seconds (``time.process_time()``, min and median of
  the repeats after a compiling run) with Newton iterations;
* the targets: L1 <= 5e-3 in <= 3 CPU s and L1 <= 2.5e-3 in <= 20 CPU s (cheapest
  run meeting each error);
* the split of one such run's time by PETSc's event log: residual assembly
  (``SNESFunctionEval``), Jacobian assembly (``SNESJacobianEval``), factorisation
  (``PCSetUp``), triangular solves (``PCApply``) and everything else (the Newton loop's
  and the scheme's Python: state copies, diagnostics, logging).  The event times are
  wall-clock seconds of the same process, so the split is reported as fractions.

Run: ``"$(make -s env-path)/bin/python" benchmarks/fokker_planck_plain.py``
(``--quick`` for a smaller sweep).  Serial.
"""
import argparse
import os
import sys
import time

import numpy as np
from firedrake import COMM_WORLD
from firedrake.petsc import PETSc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fokker_planck_cost import run  # noqa: E402  (the shared problem definition)
from _results import write_table  # noqa: E402


TARGETS = ((5e-3, 3.0), (2.5e-3, 20.0))
EVENTS = ("SNESFunctionEval", "SNESJacobianEval", "PCSetUp", "PCApply")


def timed(n, steps, N, degree, repeats):
    """(L1 error, min CPU s, median CPU s, Newton its) of ``repeats`` runs after a
    compiling one."""
    results = [run(n, steps, None, N=N, degree=degree) for _ in range(repeats + 1)]
    cpus = [r[1] for r in results[1:]]
    return results[-1][0], min(cpus), float(np.median(cpus)), results[-1][2]


def breakdown(n, steps, N, degree):
    """Fractions of one (warm) run's wall time spent in the PETSc events and outside."""
    PETSc.Log.begin()
    events = {name: PETSc.Log.Event(name) for name in EVENTS}
    before = {name: e.getPerfInfo()["time"] for name, e in events.items()}
    wall = time.perf_counter()
    run(n, steps, None, N=N, degree=degree)
    wall = time.perf_counter() - wall
    split = {name: (e.getPerfInfo()["time"] - before[name]) / wall
             for name, e in events.items()}
    split["other (Python, bookkeeping)"] = 1 - sum(split.values())
    return wall, split


def main(quick: bool, repeats: int):
    # (degree, cells per side, N): every N on the coarser mesh of each element, N = 1
    # (the cheapest) on the finer one
    configs = [(1, 16, 1), (1, 16, 4), (2, 4, 1), (2, 4, 4)] if quick else \
        [(1, 16, 1), (1, 16, 2), (1, 16, 4), (1, 32, 1),
         (2, 4, 1), (2, 4, 2), (2, 4, 4), (2, 8, 1)]
    step_counts = (64, 128) if quick else (32, 64, 128, 256)
    rows = []
    for degree, n, N in configs:
        for steps in step_counts:
            rows.append((degree, n, N, steps, *timed(n, steps, N, degree, repeats)))
            PETSc.Sys.Print("| P%d | %d | %d | %d | %.3e | %.2f | %.2f | %d |" % rows[-1])
    lines = ["# Plain JKO on linear Fokker-Planck: L1 error against CPU time", "",
             "Unit square, V = -x, exact solution, t0 = 0.05 -> T = 0.25, log-density "
             "unknowns, MUMPS, one core. CPU seconds of building and running a scheme on a "
             f"shared mesh (time.process_time), min and median of {repeats} repeats after "
             "a compiling run.", "",
             "| element | cells per side | N | steps | L1 error at T | CPU s (min) | "
             "CPU s (median) | Newton its |", "|---|---|---|---|---|---|---|---|"]
    lines += ["| P%d | %d | %d | %d | %.3e | %.2f | %.2f | %d |" % r for r in rows]
    lines += ["", "## Targets (issue 15)", ""]
    best_runs = []
    for err, cpu in TARGETS:
        hits = [r for r in rows if r[4] <= err]
        if not hits:
            lines.append(f"- L1 <= {err:g} in <= {cpu:g} CPU s: no run reached the error.")
            continue
        best = min(hits, key=lambda r: r[5])
        best_runs.append(best)
        lines.append(f"- L1 <= {err:g} in <= {cpu:g} CPU s: "
                     f"{'met' if best[5] <= cpu else 'NOT met'} by P{best[0]}, {best[1]}x"
                     f"{best[1]} cells, N = {best[2]}, {best[3]} steps: L1 = {best[4]:.2e} in "
                     f"{best[5]:.2f} CPU s (median {best[6]:.2f}), {best[7]} Newton its.")
    lines += ["", "## Where the time goes", "",
              "Fractions of the wall time of one warm run (PETSc event log), for the "
              "cheapest runs above (the most accurate run if none met a target) and the "
              "first of them with N = 4:", "",
              "| run | wall s | " + " | ".join(EVENTS) + " | other |",
              "|---|---|" + "---|" * (len(EVENTS) + 1)]
    if not best_runs:
        best_runs = [min(rows, key=lambda r: r[4])]
    for degree, n, N, steps, *_ in best_runs + [(b[0], b[1], 4, b[3]) for b in best_runs[:1]]:
        wall, split = breakdown(n, steps, N, degree)
        lines.append(f"| P{degree}, {n}x{n}, N = {N}, {steps} steps | {wall:.2f} | "
                     + " | ".join(f"{split[e]:.0%}" for e in EVENTS)
                     + f" | {split['other (Python, bookkeeping)']:.0%} |")
    PETSc.Sys.Print("\n".join(lines))
    if COMM_WORLD.rank == 0:
        write_table("fokker_planck_plain", lines, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sweep")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per run")
    args, _ = parser.parse_known_args()
    main(args.quick, args.repeats)
