r"""Cost of one warm dynamic-transport solve against the number of unknowns, for every
variant: log-density JKO step (Gauss quadrature and MUMPS's LU; the vertex rule with
LU and with the symmetric ``"ldlt"`` solve), density JKO step (direct and the
iterative ``sweep`` preset), the corrected (second-order) JKO step, and a :math:`W_2`
geodesic (the last two: Gauss, LU; vertex rule, ``"ldlt"``).

The workload is that of ``benchmarks/direct_solver_growth.py``: KL to
:math:`N(0, I)` on :math:`[-3, 3]^2` from a Gaussian bump, squares cut along one
diagonal, P1, N = 4 slices, :math:`\eta = 0.05`.  The geodesic joins that bump to its
translate by (1, 0.5) (log unknowns, N = 4).  For each mesh and variant one solve
compiles the kernels; the next is timed:

* a JKO step: the step from the first step's result, warm-started from its potential
  and the slices predicted by its increment (both kinds of unknowns);
* the geodesic: to the bump translated by (1.1, 0.55) instead, from the first
  geodesic's state.

Reported: unknowns (the mixed state's dimension; density unknowns carry potentials
and duals as well), Newton and outer Krylov iterations, CPU seconds
(``time.process_time()``, summed over ranks), CPU seconds per Newton iteration, and
the fitted exponent :math:`p` of the time per step against the unknowns between
consecutive meshes (:math:`p = 1`: linear cost; issue 15 asks for at most 1.3x per
doubling, :math:`p \le 0.38`, from :math:`10^5` unknowns on).  The largest mesh is
limited by the machine (2 cores, 23 GB): :math:`10^6` unknowns with MUMPS would need
about 20 GB of factors alone (``direct_solver_growth.md``).

Run: ``"$(make -s env-path)/bin/python" benchmarks/variant_growth.py`` (``--quick``: two
small meshes).  Results: ``benchmarks/results/variant_growth.md``.
"""
import argparse
import os
import sys
import time

import numpy as np
from firedrake import COMM_WORLD, Function
from firedrake.petsc import PETSc
from mpi4py import MPI

from jkoflow.solvers import JKOStep, SolverDivergedError, W2Geodesic, set_log_level

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import table_rows_by_mesh, write_table  # noqa: E402
from _workloads import bump, bump_case  # noqa: E402

VARIANTS = ("log", "log, vertex rule", "log, vertex rule, ldlt", "density", "density, sweep",
            "corrected (log)", "corrected (log), vertex rule, ldlt", "geodesic (log)",
            "geodesic (log), vertex rule, ldlt")
#: Solver options of the variants (beyond the JKO step's or geodesic's defaults).
OPTIONS = {"log, vertex rule": {"quadrature": "vertex"},
           "log, vertex rule, ldlt": {"quadrature": "vertex", "solver_parameters": "ldlt"},
           "density": {"variable": "density"},
           "density, sweep": {"variable": "density", "solver_parameters": "sweep"},
           "corrected (log)": {"correction": "implicit-bias"},
           "corrected (log), vertex rule, ldlt": {"correction": "implicit-bias",
                                                  "quadrature": "vertex",
                                                  "solver_parameters": "ldlt"},
           "geodesic (log), vertex rule, ldlt": {"quadrature": "vertex",
                                                 "solver_parameters": "ldlt"}}


def timed(fn):
    c0 = time.process_time()
    out = fn()
    return out, COMM_WORLD.allreduce(time.process_time() - c0, op=MPI.SUM)


def measure(n: int, variant: str) -> dict:
    """One cold solve, then one timed warm solve of ``variant`` on an n x n mesh."""
    geom, V, energy, rho0 = bump_case(n)
    prefix = f"growth_{n}_{VARIANTS.index(variant)}_"
    kwargs = OPTIONS.get(variant, {})
    if variant.startswith("geodesic"):
        rho1 = Function(V).interpolate(bump(geom, (1.0, 0.5)))
        rho2 = Function(V).interpolate(bump(geom, (1.1, 0.55)))
        solver = W2Geodesic(geom, 4, options_prefix=prefix, **kwargs)
        solver.solve(rho0, rho1)

        def again():
            return solver.solve(rho0, rho2)
    else:
        solver = JKOStep(energy, 0.05, 4, options_prefix=prefix, **kwargs)
        first = solver.solve(rho0)
        if solver.variable == "log":
            def again():
                return solver.solve(log_rho_k=first.log_rho)
        else:
            def again():
                return solver.solve(first.rho)
    res, cpu = timed(again)
    return {"unknowns": solver.W.dim(), "its": res.snes_iterations,
            "krylov": res.linear_iterations, "cpu": cpu, "cpu_per_it": cpu / res.snes_iterations}


def kept_rows(quick: bool) -> dict:
    """The rows of the existing results table by variant and mesh: ``--variants`` and
    ``--sizes`` rerun some of them and keep the others."""
    return {variant: {n: rows[0] for n, rows in meshes.items()} for variant, meshes
            in table_rows_by_mesh("variant_growth", VARIANTS, quick).items()}


def _previous(rows: dict, n: int) -> dict | None:
    """Unknowns and CPU seconds of the kept row of the largest mesh below ``n`` (for
    the exponent of a rerun mesh), or ``None``."""
    below = [m for m in rows if m < n]
    if not below:
        return None
    cells = rows[max(below)].split("|")
    try:
        return {"unknowns": float(cells[3]), "cpu": float(cells[6])}
    except ValueError:          # a failed row
        return None


def main(quick: bool, variants, sizes=None):
    set_log_level("WARNING")
    sizes = sorted(sizes or ((24, 48) if quick else (24, 48, 96, 144)))
    lines = ["# Warm solve cost against unknowns, every variant", "",
             f"{COMM_WORLD.size} MPI rank(s); 2D KL to N(0, I) on [-3, 3]^2, P1, N = 4, "
             "eta = 0.05 (geodesic: the bump to its translate by (1, 0.5)); squares cut "
             "along one diagonal; MUMPS (LU; LDL^T for 'ldlt') unless 'sweep'.  CPU seconds of one warm solve "
             "(summed over ranks); p: exponent of the time against the unknowns from the "
             "previous row of the same variant.", "",
             "| variant | cells per side | unknowns | Newton its | outer Krylov its | "
             "CPU s | CPU s per Newton it | p |", "|---|---|---|---|---|---|---|---|"]
    kept = kept_rows(quick)
    for variant in VARIANTS:
        rows = dict(kept.get(variant, {}))
        if variant in variants:
            for n in sizes:
                rows.pop(n, None)
            prev = _previous(rows, min(sizes))
            for n in sizes:
                try:
                    r = measure(n, variant)
                except SolverDivergedError as err:
                    rows[n] = (f"| {variant} | {n} | | failed: "
                               f"{str(err).splitlines()[0][:80]} | | | | |")
                    PETSc.Sys.Print(rows[n])
                    break
                p = (f"{np.log(r['cpu'] / prev['cpu']) / np.log(r['unknowns'] / prev['unknowns']):.2f}"
                     if prev else "")
                rows[n] = (f"| {variant} | {n} | {r['unknowns']} | {r['its']} | {r['krylov']} | "
                           f"{r['cpu']:.2f} | {r['cpu_per_it']:.3f} | {p} |")
                PETSc.Sys.Print(rows[n])
                prev = r
        lines += [rows[n] for n in sorted(rows)]
    if COMM_WORLD.rank == 0:
        write_table("variant_growth", lines, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small meshes")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="rerun these variants only; the other rows of the results "
                             "table are kept")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="cells per side to (re)run; the other meshes' rows are kept")
    args = parser.parse_args()
    main(args.quick, args.variants, tuple(args.sizes) if args.sizes else None)
