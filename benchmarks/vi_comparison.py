r"""Interior point against PETSc's variational-inequality Newton (``vinewtonrsls``).

Why the JKO step with density unknowns uses a primal-dual interior point rather
than one of PETSc's VI solvers, measured on the problem they would both exist for: one JKO
step of the porous medium (:math:`J = \int\rho^m/(m-1)`) from the compactly supported
Barenblatt profile :math:`B(t_0)`, whose exact answer is :math:`B(s_1)` (the optimal map
is a dilation; :func:`~jkoflow.solvers.barenblatt_jko_time`).

Both solve the same discrete Benamou--Brenier saddle problem: the Lagrangian
:attr:`BenamouBrenier.lagrangian <jkoflow.solvers.benamou_brenier.BenamouBrenier>` of
a :class:`~jkoflow.solvers.JKOStep` with ``variable="density"``, P1, N = 2 slices,
MUMPS.

* **Interior point** (jkoflow's): :meth:`JKOStep.solve`.
* **VI**: the residual :math:`(\partial L/\partial\rho_i, \partial L/\partial\phi_i)` with
  the bounds :math:`\rho_i \ge 0` (the complementarity
  :math:`\partial L/\partial\rho_i \ge 0 \perp \rho_i \ge 0`), solved by the
  reduced-space active-set method ``vinewtonrsls`` from the data
  (:math:`\rho_i = \rho_0`, :math:`\phi_i = 0`), with the ``basic`` (full step) and
  ``bt`` line searches.  Where :math:`\rho` vanishes on both ends of a slice, the
  continuity rows of the potentials are empty (:math:`\rho_{i-1/2} = 0`) and the
  Jacobian is singular; a term :math:`\varepsilon\int\nabla\phi_i\cdot\nabla\psi` with
  :math:`\varepsilon` = ``--reg`` (default :math:`10^{-7}`, 1e-5 of the transport term's
  scale) makes it invertible and keeps the mass (it vanishes for :math:`\psi = 1`).

Reported per mesh: Newton iterations, the final residual norm and convergence reason,
the :math:`L^1` error against :math:`B(s_1)`, the minimum density, the mass defect and
CPU seconds (``time.process_time()``, second solve, kernels compiled).

Run: ``"$(make -s env-path)/bin/python" benchmarks/vi_comparison.py`` (``--quick``: two
coarse meshes).  Results: ``benchmarks/results/vi_comparison.md``.
"""
import argparse
import os
import sys
import time

import ufl
from firedrake import (COMM_WORLD, Constant, Function, FunctionSpace,
                       NonlinearVariationalProblem, NonlinearVariationalSolver, TestFunctions,
                       derivative, split)
from firedrake.petsc import PETSc

from jkoflow.meshes import unit_square
from jkoflow.solvers import JKOStep, barenblatt, barenblatt_jko_time, porous_medium
from jkoflow.solvers.common import global_min

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import write_table  # noqa: E402

T0, TAU, N = 1e-3, 2.5e-4, 2
CONSTANTS = {2.0: 0.2, 3.0: 0.04}
CENTRE = (0.5, 0.5)


def vi_solver(step: JKOStep, reg: float, linesearch: str, max_it: int):
    """``vinewtonrsls`` on the residual of ``step``'s Lagrangian (no duals) and its bounds."""
    w, W = step.w, step.W
    parts, tests = split(w), TestFunctions(W)
    F = derivative(step.lagrangian, w)
    # The interior point's dual fields are not used: pin them to zero.
    for z, q in zip(parts[step.dual_fields], tests[step.dual_fields]):
        F += z * q * step.dx
    for p, q in zip(parts[step.phi_fields], tests[step.phi_fields]):
        F += Constant(reg) * ufl.inner(ufl.grad(p), ufl.grad(q)) * step.dx
    params = {"snes_type": "vinewtonrsls", "snes_max_it": max_it, "snes_rtol": 1e-10,
              "snes_atol": 1e-12, "snes_linesearch_type": linesearch,
              "ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps",
              "mat_mumps_icntl_24": 1}
    solver = NonlinearVariationalSolver(NonlinearVariationalProblem(F, w),
                                        solver_parameters=params,
                                        options_prefix=f"vi_{linesearch}")
    lower, upper = Function(W), Function(W)
    for i, (lo, hi) in enumerate(zip(lower.subfunctions, upper.subfunctions)):
        lo.assign(0.0 if i < step.n_rho else PETSc.NINFINITY)
        hi.assign(PETSc.INFINITY)
    return solver, (lower, upper)


def compare(n: int, m: float, reg: float, max_it: int) -> list:
    geom = unit_square(n, diagonal="left")
    V = FunctionSpace(geom.mesh, "CG", 1)
    C = CONSTANTS[m]
    rho0 = Function(V).interpolate(barenblatt(geom.x, T0, C, m, CENTRE))
    energy = porous_medium(geom, m)
    exact = barenblatt(geom.x, barenblatt_jko_time(T0, TAU, m, 2), C, m, CENTRE)
    mass0 = geom.integrate(rho0)
    rows = []

    ipm = JKOStep(energy, TAU, N, variable="density", options_prefix=f"ipm{n}_")
    ipm.solve(rho0)                                     # compile
    c0 = time.process_time()
    res = ipm.solve(rho0)
    cpu = time.process_time() - c0
    rows.append(("interior point", res.snes_iterations, "converged", "",
                 geom.integrate(abs(res.rho - exact), degree=6),
                 global_min(res.rho), abs(res.mass - mass0) / mass0, cpu))

    for linesearch in ("basic", "bt"):
        step = JKOStep(energy, TAU, N, variable="density", options_prefix=f"vij{n}_")
        solver, bounds = vi_solver(step, reg, linesearch, max_it)
        step.set_start(rho0)
        for attempt in range(2):                        # the first one compiles
            us, phis = step.unknown_slices()
            for u in us:
                u.assign(step.start)
            for p in phis:
                p.assign(0.0)
            c0 = time.process_time()
            try:
                solver.solve(bounds=bounds)
            except Exception:                          # noqa: BLE001 (PETSc's ConvergenceError)
                pass
            cpu = time.process_time() - c0
        snes = solver.snes
        rho_end = step.unknown_slices()[0][-1]
        reason = PETSc.SNES.ConvergedReason()
        names = {getattr(reason, k): k for k in dir(reason) if not k.startswith("_")}
        rows.append((f"vinewtonrsls, {linesearch}", snes.getIterationNumber(),
                     names.get(snes.getConvergedReason(), str(snes.getConvergedReason())),
                     f"{snes.getFunctionNorm():.1e}",
                     geom.integrate(abs(rho_end - exact), degree=6),
                     global_min(rho_end),
                     abs(geom.integrate(rho_end) - mass0) / mass0, cpu))
    return rows


def main(quick: bool, reg: float, max_it: int):
    meshes = (12, 24) if quick else (12, 24, 48)
    lines = ["# Interior point against vinewtonrsls: one porous-medium JKO step", "",
             f"{COMM_WORLD.size} MPI rank(s); unit square cut along one diagonal, P1, "
             f"N = {N} slices, MUMPS; one JKO step of tau = {TAU:g} from the compactly "
             f"supported Barenblatt profile B(t0), t0 = {T0:g}; L1 error against the exact "
             f"step B(s_1).  VI: potentials regularised by {reg:g} * grad phi . grad psi "
             f"(see the script), at most {max_it} iterations.  CPU seconds of the second "
             "solve (`time.process_time()`).", "",
             "| m | cells | solver | Newton its | outcome | final residual | L1 error | "
             "min rho | relative mass defect | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in (2.0, 3.0):
        for n in meshes:
            for name, its, outcome, fnorm, err, lo, drift, cpu in compare(n, m, reg, max_it):
                line = (f"| {m:g} | {2 * n * n} | {name} | {its} | {outcome} | {fnorm} | "
                        f"{err:.2e} | {lo:.1e} | {drift:.0e} | {cpu:.2f} |")
                PETSc.Sys.Print(line)
                lines.append(line)
    if COMM_WORLD.rank == 0:
        write_table("vi_comparison", lines, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two coarse meshes")
    parser.add_argument("--reg", type=float, default=1e-7,
                        help="regularisation of the VI's potentials (default 1e-7)")
    parser.add_argument("--max-it", type=int, default=200)
    args = parser.parse_args()
    main(args.quick, args.reg, args.max_it)
