r"""Steep tails: Newton iterations per JKO step with log-density and with density
unknowns, over three meshes and three step sizes (the iteration table of issue 12 for
its steep-tails cases).

The cases are those of ``tests/test_jko_tails.py``: KL with the double well
:math:`V = (x^2-1)^2/4` or the quartic :math:`V = x^4/4` on :math:`[-4, 5]`, from
:math:`\rho_0 = N(0.5, 0.25)`, P2, N = 8 slices, five steps.  Where :math:`\eta V''`
is large the tails of the exact iterates fall by tens of log units per step.

* ``log``: log-density unknowns (a :class:`~jkoflow.solvers.JKOStep`'s default for
  entropic energies; :class:`~jkoflow.solvers.JKOScheme` chooses them for data whose
  predicted log-density change per step, :math:`\Lambda`, is at most 100).  Newton moves a
  tail value by one or two log units per iteration, and continuation in
  :math:`\eta` takes over when the full steps diverge.
* ``density``: density unknowns, kept positive by the interior point.  Its barrier
  floors the tails near :math:`10^{-8}`, so the iteration counts do not depend on how
  deep the exact tails are.

Reported per run: the Newton iterations of each step (for log unknowns including a
failed first attempt before continuation), their maximum over the warm steps 2-5,
for density unknowns the largest count of one barrier level, the total CPU seconds
(``time.process_time()``, the first run of each mesh includes kernel compilation
unless cached), the :math:`L^1` distance between the two fifth iterates,
:math:`\Lambda` at :math:`\rho_0`, and the same five steps by the scheme's default
(no ``variable``: :func:`~jkoflow.solvers.representation.choose_variable` before
every step), with the unknowns each step used.

Run: ``"$(make -s env-path)/bin/python" benchmarks/steep_tails.py`` (``--quick``: the
middle mesh and step only).  Results: ``benchmarks/results/steep_tails.md``.
"""
import argparse
import os
import sys
import time

import ufl
from firedrake import COMM_WORLD, Function, FunctionSpace, assemble
from firedrake.petsc import PETSc

from jkoflow.meshes import interval
from jkoflow.solvers import (JKOScheme, SolverDivergedError, kl, predicted_log_change,
                             set_log_level)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import write_table  # noqa: E402

POTENTIALS = {"double well": lambda x: (x ** 2 - 1) ** 2 / 4, "quartic": lambda x: x ** 4 / 4}
STEPS = 5


def tail_data(geom, name: str):
    """The energy and the log-density of N(0.5, 0.25) (P2) of one steep-tails case."""
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 2)
    l0 = Function(V).interpolate(-(x - 0.5) ** 2 / (2 * 0.25)
                                 - 0.5 * ufl.ln(2 * ufl.pi * 0.25))
    return kl(geom, POTENTIALS[name](x)), l0


def tail_scheme(geom, name: str, eta: float, variable: str | None = "log",
                **kwargs) -> JKOScheme:
    """The JKO scheme of one steep-tails case on ``geom`` (P2, N = 8, from
    N(0.5, 0.25); ``variable=None``: the scheme's own choice); ``kwargs`` go to
    :class:`~jkoflow.solvers.JKOScheme`."""
    energy, l0 = tail_data(geom, name)
    return JKOScheme(energy, None, eta, 8, log_rho0=l0, degree=2, variable=variable,
                     **kwargs)


def run(geom, name: str, eta: float, variable: str) -> dict:
    """Five JKO steps of one case; iteration counts, CPU time, the last iterate."""
    c0 = time.process_time()
    scheme = tail_scheme(geom, name, eta, variable,
                         options_prefix=f"tails_{variable or 'default'}_")
    try:
        scheme.run(STEPS)
        failed = None
    except SolverDivergedError as err:
        failed = str(err).splitlines()[0]
    cpu = time.process_time() - c0
    hist = scheme.history[1:]
    its = [h["snes_iterations"] for h in hist]
    unknowns = "".join(h["variable"][0].upper() for h in hist)
    per_level = max((n for h in hist for _, n in h.get("barrier_levels") or []), default=0)
    return {"its": its, "warm": max(its[1:], default=0), "per_level": per_level,
            "cpu": cpu, "rho": scheme.rho_expr, "failed": failed, "unknowns": unknowns}


def main(quick: bool):
    set_log_level("ERROR")          # continuation warnings are counted, not printed
    cells = (180,) if quick else (90, 180, 360)
    etas = (0.1,) if quick else (0.05, 0.1, 0.2)
    lines = ["# Steep tails: Newton iterations per JKO step, log against density unknowns",
             "", f"{COMM_WORLD.size} MPI rank(s); KL with the double well or the quartic "
             "potential on [-4, 5], rho_0 = N(0.5, 0.25), P2, N = 8, five steps, MUMPS.  "
             "Its per step: all Newton iterations of each step (log: failed first attempts "
             "before continuation included); warm max: over steps 2-5; per level: largest "
             "count of one barrier level (density); L1: distance between the two fifth "
             "iterates; CPU: total seconds of the five steps.  Unknowns: 2 N (log) or 3 N "
             "(density: potentials and duals) times the dofs per slice.  Lambda: predicted "
             "change of the log-density in the first step; default: JKOScheme without a "
             "variable, which chooses its unknowns before every step (density once Lambda "
             "> 100 at the current iterate), with the unknowns of each step (L log, D "
             "density).", "",
             "| potential | cells | eta | dofs per slice | its per step (log) | warm max (log) | "
             "CPU s (log) | its per step (density) | warm max (density) | per level | "
             "CPU s (density) | L1 | Lambda | its per step (default) | unknowns | "
             "warm max (default) | CPU s (default) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    variants = ("log", "density", None)
    summary = {}
    for name in POTENTIALS:
        for n in cells:
            geom = interval(n, -4.0, 5.0)
            for eta in etas:
                r = {v: run(geom, name, eta, v) for v in variants}
                l1 = (float(assemble(abs(r["log"]["rho"] - r["density"]["rho"])
                                     * ufl.dx(domain=geom.mesh, degree=8)))
                      if not (r["log"]["failed"] or r["density"]["failed"]) else float("nan"))
                cols = []
                for v in ("log", "density"):
                    its = ", ".join(map(str, r[v]["its"])) + (" (failed)" if r[v]["failed"]
                                                              else "")
                    cols += [its, str(r[v]["warm"])]
                    if v == "density":
                        cols.append(str(r[v]["per_level"]))
                    cols.append(f"{r[v]['cpu']:.1f}")
                energy, l0 = tail_data(geom, name)
                change = predicted_log_change(energy, l0, eta)
                d = r[None]
                default = [", ".join(map(str, d["its"])) + (" (failed)" if d["failed"] else ""),
                           d["unknowns"], str(d["warm"]), f"{d['cpu']:.1f}"]
                lines.append(f"| {name} | {n} | {eta} | {2 * n + 1} | " + " | ".join(cols)
                             + f" | {l1:.1e} | {change:.0f} | " + " | ".join(default) + " |")
                PETSc.Sys.Print(lines[-1])
                for v in variants:
                    s = summary.setdefault((name, v or "default"), {})
                    s.setdefault(n, []).append((r[v]["warm"], bool(r[v]["failed"])))
    lines += ["", "## Summary (largest warm-step count over the step sizes; failed runs "
              "counted up to their failure)", "",
              "| potential | unknowns (variable) | " + " | ".join(f"{n} cells" for n in cells)
              + " | growth, coarsest to finest | failed runs |",
              "|---|---|" + "---|" * (len(cells) + 2)]
    for (name, v), per_mesh in summary.items():
        worst = [max(w for w, _ in per_mesh[n]) for n in cells]
        failures = sum(f for n in cells for _, f in per_mesh[n])
        growth = worst[-1] / worst[0] if worst[0] else float("nan")
        lines.append(f"| {name} | {v} | " + " | ".join(map(str, worst))
                     + f" | {growth:.2f} | {failures} of {len(cells) * len(etas)} |")
    if COMM_WORLD.rank == 0:
        path = write_table("steep_tails", lines, quick)
        print("\n".join(lines[-len(summary) - 4:]))
        print(f"written to {path}.md")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one mesh, one step size")
    main(parser.parse_args().quick)
