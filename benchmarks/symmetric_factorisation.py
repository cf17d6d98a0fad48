r"""What a symmetric (LDL^T) factorisation would save on a log-density JKO step, and why
the step cannot use one as it stands.

The workload is that of ``benchmarks/mpi_scaling.py`` (KL to :math:`N(0, I)` on
:math:`[-3, 3]^2` from a Gaussian bump, P1 log-densities, N = 4 slices,
:math:`\eta = 0.05`).  A cold step is solved, then the warm step from its result; the
state at which the warm step's Newton iteration started is recorded (a SNES monitor).

The step's Newton system is the derivative of the stationarity *in the densities*,
:math:`\partial L/\partial\rho_i`, with respect to the log-densities (see
``solvers/benamou_brenier.py``): it is not symmetric.  The Hessian of the discrete
Lagrangian in the unknowns :math:`(l, \phi)` is.  For each mesh the script reports

* the relative asymmetry :math:`\|J - J^T\|/\|J\|` of the step's Jacobian and of that
  Hessian (at the solution);
* CPU seconds of MUMPS's numeric factorisation of the Hessian (``time.process_time()``,
  min and median of three, the symbolic analysis excluded) as LU and as LDL^T
  (``pc_type cholesky``: MUMPS's symmetric indefinite factorisation, 2x2 pivots), the
  entries of the factors (``INFOG(29)``) and the relative residual of one solve;
* Newton's method on the stationarity in :math:`(l, \phi)` (the derivative of
  ``JKOStep.lagrangian``, whose Jacobian is that Hessian; backtracking line search,
  LDL^T) from the
  warm step's starting state, against the step's own Newton count.

This measures the Gauss-quadrature step, whose Newton system is not symmetric.  The
symmetric system that the gain needs comes with the vertex rule
(``quadrature="vertex"``), whose log steps the ``"ldlt"`` solver takes
(:mod:`jkoflow.solvers.symmetric_solve`; timed in ``variant_growth.py``).

Run: ``"$(make -s env-path)/bin/python" benchmarks/symmetric_factorisation.py``
(``--quick``: one small mesh).  Serial.  Results:
``benchmarks/results/symmetric_factorisation.md``.
"""
import argparse
import os
import sys
import time

import numpy as np
from firedrake import (COMM_WORLD, NonlinearVariationalProblem, NonlinearVariationalSolver,
                       assemble, derivative)
from firedrake.exceptions import ConvergenceError
from firedrake.petsc import PETSc

from jkoflow.solvers import JKOStep, preset

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import write_table  # noqa: E402
from _workloads import bump_case  # noqa: E402

#: The MUMPS controls of the step's own direct solve (the "direct" preset).
MUMPS = {int(k.rsplit("_", 1)[1]): v for k, v in preset("direct").items()
         if k.startswith("mat_mumps_icntl_")}


def asymmetry(A: PETSc.Mat) -> float:
    D = A.copy()
    D.axpy(-1.0, A.transpose(), structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
    return D.norm() / A.norm()


def factorise(H: PETSc.Mat, pc_type: str, repeats: int = 3) -> dict:
    """Numeric factorisations of ``H`` by MUMPS (after one that includes the analysis)."""
    ksp = PETSc.KSP().create(comm=H.getComm())
    ksp.setOperators(H)
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType(pc_type)
    pc.setFactorSolverType("mumps")
    pc.setFactorSetUpSolverType()
    F = pc.getFactorMatrix()
    for k, v in MUMPS.items():
        F.setMumpsIcntl(k, v)
    ksp.setUp()
    cpu = []
    for _ in range(repeats):
        H.scale(2.0)            # a new matrix state: the next set-up refactorises
        H.scale(0.5)
        c0 = time.process_time()
        ksp.setUp()
        cpu.append(time.process_time() - c0)
    b, x = H.createVecs()
    b.setRandom()
    ksp.solve(b, x)
    r = b.duplicate()
    H.mult(x, r)
    r.axpy(-1.0, b)
    return {"min": min(cpu), "median": float(np.median(cpu)),
            "entries": F.getMumpsInfog(29), "residual": r.norm() / b.norm()}


def measure(n: int) -> dict:
    _, _, energy, rho0 = bump_case(n)
    step = JKOStep(energy, 0.05, 4, options_prefix=f"symm{n}_")
    starts = []

    def record_start(snes, it, fnorm):
        if it == 0:
            starts.append(snes.getSolution().copy())
    step.solver.snes.setMonitor(record_start)
    first = step.solve(rho0)
    warm = step.solve(log_rho_k=first.log_rho)
    out = {"cells": n, "unknowns": step.W.dim(), "its": warm.snes_iterations,
           "asym_J": asymmetry(step.solver.jacobian())}
    F = derivative(step.lagrangian, step.w)
    H = assemble(derivative(F, step.w), mat_type="aij").petscmat
    out["asym_H"] = asymmetry(H)
    H.setOption(PETSc.Mat.Option.SYMMETRIC, True)
    out["lu"], out["ldlt"] = factorise(H, "lu"), factorise(H, "cholesky")
    # Newton on the stationarity in (l, phi) from where the warm step started.
    with step.w.dat.vec_wo as w:
        starts[-1].copy(w)
    history = []
    solver = NonlinearVariationalSolver(
        NonlinearVariationalProblem(F, step.w), options_prefix=f"symm_newton{n}_",
        solver_parameters=preset("direct", pc_type="cholesky", snes_max_it=30,
                                 snes_rtol=1e-12, snes_atol=1e-13))
    solver.snes.setMonitor(lambda snes, it, fnorm: history.append(fnorm))
    try:
        solver.solve()
        out["newton_l"] = f"converged in {solver.snes.getIterationNumber()}"
    except ConvergenceError:
        reason = solver.snes.getConvergedReason()
        out["newton_l"] = (f"failed (reason {reason}) after "
                           f"{solver.snes.getIterationNumber()}; residuals "
                           + ", ".join(f"{h:.1e}" for h in history[:4]))
    return out


def main(quick: bool):
    if COMM_WORLD.size > 1:
        raise SystemExit("symmetric_factorisation.py is serial")
    lines = ["# A symmetric factorisation for log-density JKO steps", "",
             "2D KL to N(0, I), P1 log-densities, N = 4, eta = 0.05, squares cut along one "
             "diagonal; the warm step after a cold one.  Asymmetry ||J - J^T|| / ||J|| of the "
             "step's Jacobian and of the Hessian of the Lagrangian in (l, phi); MUMPS numeric "
             "factorisation of that Hessian (CPU s, min / median of 3, one core); Newton on "
             "the stationarity in (l, phi) with LDL^T from the warm step's starting state.", "",
             "| cells per side | unknowns | asymmetry (step's J) | asymmetry (Hessian) | "
             "LU: CPU s, factor entries | LDL^T: CPU s, factor entries | LU / LDL^T | "
             "solve residual (LU, LDL^T) | Newton, step (rho-stationarity, LU) | "
             "Newton, (l, phi)-stationarity (LDL^T) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in ((16,) if quick else (48, 116)):
        r = measure(n)
        lu, ld = r["lu"], r["ldlt"]
        lines.append(f"| {n} | {r['unknowns']} | {r['asym_J']:.2f} | {r['asym_H']:.0e} | "
                     f"{lu['min']:.2f} / {lu['median']:.2f}, {lu['entries']:.2e} | "
                     f"{ld['min']:.2f} / {ld['median']:.2f}, {ld['entries']:.2e} | "
                     f"{lu['min'] / ld['min']:.2f} | {lu['residual']:.0e}, "
                     f"{ld['residual']:.0e} | {r['its']} | {r['newton_l']} |")
        PETSc.Sys.Print(lines[-1])
    write_table("symmetric_factorisation", lines, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small mesh")
    main(parser.parse_known_args()[0].quick)
