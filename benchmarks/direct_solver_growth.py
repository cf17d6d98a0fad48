r"""How the direct (MUMPS) KKT solve of a JKO step grows with the mesh: the data for
the scaling estimate of ``docs/performance.rst``.

The workload is that of ``benchmarks/mpi_scaling.py``: KL to :math:`N(0, I)` on
:math:`[-3, 3]^2` from a Gaussian bump, squares cut along one diagonal, P1 log-density
unknowns, N = 4 slices, :math:`\eta = 0.05`.  For each mesh one step is solved
(compiling the kernels), then the same step again from the same start, timed.  MUMPS
reports, for the last factorisation of the Jacobian,

* ``RINFOG(3)``: floating-point operations of the elimination;
* ``INFOG(29)``: entries in the factors (effective);
* ``INFOG(19)``: total memory of the factorisation (MB, all ranks).

and the run gives the unknowns, Newton iterations and CPU seconds per Newton
iteration (``time.process_time()``, summed over ranks).  Fitted exponents
:math:`p` (quantity :math:`\propto n^p` in the unknowns :math:`n`) between consecutive
meshes show the regime: nested dissection in 2D predicts :math:`p = 1.5` for the
operations and :math:`p \approx 1` (times :math:`\log n`) for the factors.

Run: ``"$(make -s env-path)/bin/python" benchmarks/direct_solver_growth.py``
(``--quick``: two small meshes).  Results: ``benchmarks/results/direct_solver_growth.md``.
"""
import argparse
import os
import sys
import time

import numpy as np
from firedrake import COMM_WORLD
from firedrake.petsc import PETSc
from mpi4py import MPI

from jkoflow.solvers import JKOStep

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import write_table  # noqa: E402
from _workloads import bump_case  # noqa: E402


def measure(n: int) -> dict:
    _, _, energy, rho0 = bump_case(n)
    step = JKOStep(energy, 0.05, 4, options_prefix=f"growth{n}_")
    step.solve(rho0)                                   # compile, first factorisation
    c0 = time.process_time()
    res = step.solve(rho0, warm_start=False)
    cpu = COMM_WORLD.allreduce(time.process_time() - c0, op=MPI.SUM)
    factor = step.solver.snes.getKSP().getPC().getFactorMatrix()
    return {"cells": n, "unknowns": step.W.dim(), "its": res.snes_iterations,
            "cpu_per_it": cpu / res.snes_iterations,
            "flops": factor.getMumpsRinfog(3), "entries": factor.getMumpsInfog(29),
            "memory_mb": factor.getMumpsInfog(19)}


def exponent(a: dict, b: dict, key: str) -> float:
    return float(np.log(b[key] / a[key]) / np.log(b["unknowns"] / a["unknowns"]))


def main(quick: bool):
    sizes = (24, 48) if quick else (24, 48, 96, 144)
    rows = []
    lines = ["# Growth of the direct KKT solve (MUMPS) of a log-density JKO step", "",
             f"{COMM_WORLD.size} MPI rank(s); 2D KL, P1 log-densities, N = 4 slices, "
             "eta = 0.05, squares cut along one diagonal; one cold step, then the same step "
             "timed.  MUMPS statistics of the last factorisation; p = fitted exponent "
             "against the unknowns from the previous row.", "",
             "| cells per side | unknowns | Newton its | CPU s per Newton it | p | "
             "factorisation flops | p | factor entries | p | MUMPS memory (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        r = measure(n)
        prev = rows[-1] if rows else None
        p = {k: (f"{exponent(prev, r, k):.2f}" if prev else "")
             for k in ("cpu_per_it", "flops", "entries")}
        rows.append(r)
        lines.append(f"| {n} | {r['unknowns']} | {r['its']} | {r['cpu_per_it']:.3f} | "
                     f"{p['cpu_per_it']} | {r['flops']:.2e} | {p['flops']} | "
                     f"{r['entries']:.2e} | {p['entries']} | {r['memory_mb']} |")
        PETSc.Sys.Print(lines[-1])
    if COMM_WORLD.rank == 0:
        write_table("direct_solver_growth", lines, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small meshes")
    main(parser.parse_args().quick)
