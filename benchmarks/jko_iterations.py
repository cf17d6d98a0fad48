r"""Newton iterations of the interior point (density unknowns) per JKO step or geodesic.

The iteration table of issue 12: for each exact-answer case of
``tests/test_jko_ipm.py``, three meshes and three step sizes, one solve from the
same data, reporting

* Newton iterations of the step (all barrier levels; with continuation, the
  successful solves only, and the path is flagged);
* the largest number of iterations spent on one barrier level
  (``result.barrier_levels``);
* CPU seconds of the solve (``time.process_time()``, maximum over ranks; the first
  solve of a case compiles its kernels unless they are in the disk cache).

Targets: at most 15 iterations per barrier level and 60 per step, and the largest
count over the step sizes growing by less than 1.5x from the coarsest to the finest
mesh.  The cases:

* Barenblatt, m = 2 and 3: one step from :math:`B(t_0)`, :math:`t_0 = 10^{-3}`, on the
  unit square, N = 2 (as ``benchmarks/barenblatt_jko.py``), step sizes
  :math:`\tau = 2.5, 5, 10 \times 10^{-4}`;
* potential energy, :math:`V = |x|^2/2` and :math:`x_1^4/4 + x_2^2/2`, one step from
  the Gaussian bump (std 0.15 at (0.3, -0.2)) on :math:`[-1, 1]^d`: 1D with N = 8,
  2D with N = 4 (the resolutions of the test), :math:`\eta = 0.05, 0.1, 0.2`;
* the :math:`W_2` geodesic between a compactly supported bump (radius 0.2 at
  (0.35, 0.4)) and its translate by :math:`s\,(0.3, 0.2)`, N = 6, for
  :math:`s = 0.5, 1, 1.5` in place of the step size.

All 2D meshes are squares cut along one diagonal: on the crossed triangulation the
P1 discrete divergence is a checkerboard (see
:mod:`jkoflow.solvers.benamou_brenier`).  Results go to
``benchmarks/results/jko_iterations.md`` (``jko_iterations_quick.md`` with
``--quick``: two coarse meshes, one step size per case).

Run: ``"$(make -s env-path)/bin/python" benchmarks/jko_iterations.py [--quick]``.
"""
import argparse
import os
import sys
import time

import ufl
from firedrake import COMM_WORLD, Function, FunctionSpace
from firedrake.petsc import PETSc
from mpi4py import MPI

from jkoflow.meshes import interval, rectangle, unit_square
from jkoflow.solvers import (JKOStep, W2Geodesic, barenblatt, porous_medium,
                             potential_energy)
from jkoflow.solvers.common import SolverDivergedError

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import write_table  # noqa: E402
DIAGONAL = "left"
MAX_PER_LEVEL, MAX_PER_STEP, MAX_GROWTH = 15, 60, 1.5


def barenblatt_case(m):
    """Return ``solve(n, tau)`` for one Barenblatt step (unit square, N = 2)."""
    C = 0.2 if m == 2 else 0.04
    cache = {}

    def solve(n, tau):
        if n not in cache:
            geom = unit_square(n, diagonal=DIAGONAL)
            V = FunctionSpace(geom.mesh, "CG", 1)
            rho0 = Function(V).interpolate(barenblatt(geom.x, 1e-3, C, m, (0.5, 0.5)))
            cache[n] = (JKOStep(porous_medium(geom, m), tau, 2), rho0)
        step, rho0 = cache[n]
        return step, step.solve(rho0, eta=tau)
    return solve


def potential_case(d, which):
    """Return ``solve(n, eta)`` for one potential-energy step (the test's data)."""
    cache = {}

    def solve(n, eta):
        if n not in cache:
            geom = (interval(n, -1.0, 1.0) if d == 1
                    else rectangle(n, n, -1.0, 1.0, -1.0, 1.0, diagonal=DIAGONAL))
            x = geom.x
            V = FunctionSpace(geom.mesh, "CG", 1)
            centre = (0.3, -0.2)
            rho0 = Function(V).interpolate(ufl.exp(-sum((x[i] - centre[i]) ** 2
                                                        for i in range(d)) / (2 * 0.15 ** 2)))
            if which == "quadratic":
                pot = sum(x[i] ** 2 for i in range(d)) / 2
            else:
                pot = x[0] ** 4 / 4 + (x[1] ** 2 / 2 if d == 2 else 0)
            cache[n] = (JKOStep(potential_energy(geom, pot), eta, 8 if d == 1 else 4), rho0)
        step, rho0 = cache[n]
        return step, step.solve(rho0, eta=eta)
    return solve


def geodesic_case():
    """Return ``solve(n, s)`` for the geodesic to the bump translated by s (0.3, 0.2)."""
    cache = {}

    def bump(x, centre):
        r2 = sum((x[i] - centre[i]) ** 2 for i in range(2)) / 0.2 ** 2
        return ufl.max_value(1 - r2, 0) ** 2

    def solve(n, s):
        if n not in cache:
            geom = unit_square(n, diagonal=DIAGONAL)
            cache[n] = (geom, W2Geodesic(geom, 6, variable="density"))
        geom, geo = cache[n]
        V = FunctionSpace(geom.mesh, "CG", 1)
        rho0 = Function(V).interpolate(bump(geom.x, (0.35, 0.4)))
        rho1 = Function(V).interpolate(bump(geom.x, (0.35 + 0.3 * s, 0.4 + 0.2 * s)))
        rho1.assign(rho1 * geom.mass(rho0) / geom.mass(rho1))   # nodal masses differ
        return geo, geo.solve(rho0, rho1)
    return solve


#: name, solver factory, meshes, quick meshes, step sizes (quick: the middle one).
CASES = [
    ("Barenblatt m=2, square, N=2", barenblatt_case(2.0), (12, 24, 48), (8, 16),
     (2.5e-4, 5e-4, 1e-3)),
    ("Barenblatt m=3, square, N=2", barenblatt_case(3.0), (12, 24, 48), (8, 16),
     (2.5e-4, 5e-4, 1e-3)),
    ("potential 1D, V = x^2/2, N=8", potential_case(1, "quadratic"), (100, 200, 400),
     (50, 100), (0.05, 0.1, 0.2)),
    ("potential 1D, V = x^4/4, N=8", potential_case(1, "quartic"), (100, 200, 400),
     (50, 100), (0.05, 0.1, 0.2)),
    ("potential 2D, V = (x1^2+x2^2)/2, N=4", potential_case(2, "quadratic"), (16, 32, 64),
     (8, 16), (0.05, 0.1, 0.2)),
    ("potential 2D, V = x1^4/4+x2^2/2, N=4", potential_case(2, "quartic"), (16, 32, 64),
     (8, 16), (0.05, 0.1, 0.2)),
    ("geodesic, translated bump, N=6 (s = shift scale)", geodesic_case(), (12, 24, 48),
     (8, 16), (0.5, 1.0, 1.5)),
]


def measure(solve, n, param):
    """One solve; returns (Newton its or None, max its per level, CPU s, note)."""
    t0 = time.process_time()
    try:
        solver, res = solve(n, param)
    except SolverDivergedError as err:
        cpu = COMM_WORLD.allreduce(time.process_time() - t0, MPI.MAX)
        return None, None, cpu, f"failed ({err.reason})"
    except ValueError as err:           # bad data: reported, not fatal to the table
        cpu = COMM_WORLD.allreduce(time.process_time() - t0, MPI.MAX)
        return None, None, cpu, f"error: {err}"
    cpu = COMM_WORLD.allreduce(time.process_time() - t0, MPI.MAX)
    per_level = max((its for _, its in res.barrier_levels), default=0)
    path = getattr(solver, "continuation_path", [])
    note = f"continuation {path}" if path else ""
    return res.snes_iterations, per_level, cpu, note


def main(quick: bool):
    lines = ["# Interior-point Newton iterations per solve", "",
             f"{COMM_WORLD.size} MPI rank(s); P1, density unknowns, direct solver (MUMPS "
             f"LU); 2D meshes: squares cut along one diagonal.  Targets: <= "
             f"{MAX_PER_LEVEL} iterations per barrier level, <= {MAX_PER_STEP} per "
             f"step, growth of the largest count (over the step sizes) < {MAX_GROWTH}x "
             "from the coarsest to the finest mesh.  CPU: seconds per solve, kernel "
             "compilation included in a case's first solve unless cached on disk.", "",
             "| case | cells per side | eta | Newton its | max its per level | CPU s | note |",
             "|---|---|---|---|---|---|---|"]
    summary = ["", "## Summary", "",
               "| case | max its, coarsest | max its, finest | growth | max per level | "
               "targets met |", "|---|---|---|---|---|---|"]
    for name, solve, meshes, quick_meshes, params in CASES:
        meshes = quick_meshes if quick else meshes
        params = params[1:2] if quick else params
        worst = {}
        level_max, ok = 0, True
        for n in meshes:
            for p in params:
                its, per_level, cpu, note = measure(solve, n, p)
                lines.append(f"| {name} | {n} | {p:g} | {its if its is not None else '-'} | "
                             f"{per_level if per_level is not None else '-'} | {cpu:.2f} | "
                             f"{note} |")
                PETSc.Sys.Print(lines[-1])
                if its is None:
                    ok = False
                    continue
                worst[n] = max(worst.get(n, 0), its)
                level_max = max(level_max, per_level)
                ok = ok and its <= MAX_PER_STEP and per_level <= MAX_PER_LEVEL
        lo, hi = worst.get(meshes[0]), worst.get(meshes[-1])
        growth = hi / lo if lo and hi else float("nan")
        ok = ok and growth < MAX_GROWTH
        summary.append(f"| {name} | {lo} | {hi} | {growth:.2f} | {level_max} | "
                       f"{'yes' if ok else 'no'} |")
    lines += summary
    PETSc.Sys.Print("\n".join(summary))
    if COMM_WORLD.rank == 0:
        write_table("jko_iterations", lines, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="two coarse meshes, one step size per case")
    args, _ = parser.parse_known_args()
    main(args.quick)
