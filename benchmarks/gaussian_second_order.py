"""Second order on 1D Gaussians: corrected JKO against Richardson-extrapolated plain JKO.

Problem: KL to :math:`N(0, 1)` (:math:`V = x^2/2`, the Ornstein--Uhlenbeck flow) from
:math:`N(2, 1/4)` to :math:`T = 1` on :math:`[-5, 6]` (60 cells, P2 log-densities, which
hold Gaussians exactly), the case of ``tests/test_second_order.py``.  At every
:math:`\\eta = T/n`:

* the corrected JKO (``correction="implicit-bias"``, N = 8 slices);
* Richardson extrapolation of plain JKO (N = 4 slices),
  :math:`\\rho_R = 2\\rho_{\\eta/2} - \\rho_\\eta`, from the runs with :math:`n` and
  :math:`2n` steps; its CPU time is the sum of both.

Reported: the :math:`L^1` error at :math:`T` to the exact Gaussian, the errors of the
mean and of the standard deviation, the CPU seconds (``time.process_time()``, one core,
after a compiling run), the minimum nodal density (P2 interpolant) and, for Richardson,
the minimum of :math:`\\rho_R/\\rho_{\\eta/2} = 2 - \\rho_\\eta/\\rho_{\\eta/2}`, which
is negative exactly where the extrapolation loses positivity.  Results go to
``benchmarks/results/gaussian_second_order.md``.

Run: ``"$(make -s env-path)/bin/python" benchmarks/gaussian_second_order.py``
(``--quick``: one step size).  Serial.
"""
import argparse
import os
import sys
import time

import numpy as np
import ufl
from firedrake import COMM_WORLD, Function, FunctionSpace, assemble
from firedrake.petsc import PETSc

from jkoflow.meshes import interval
from jkoflow.solvers import JKOScheme, kl
from jkoflow.solvers.common import global_min

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_table  # noqa: E402

M0, S0, T = 2.0, 0.25, 1.0          # initial mean and variance, final time
GEOM = None


def geometry():
    """The shared mesh (Richardson combines runs on the same mesh)."""
    global GEOM
    if GEOM is None:
        GEOM = interval(60, -5.0, 6.0)
    return GEOM


def exact(x, t):
    """The Ornstein--Uhlenbeck density at ``t`` from N(M0, S0) (UFL)."""
    m, v = M0 * np.exp(-t), 1 + (S0 - 1) * np.exp(-2 * t)
    return ufl.exp(-(x - m) ** 2 / (2 * v)) / np.sqrt(2 * np.pi * v)


def run(n, correction, N):
    """n steps of size T/n; returns (scheme, CPU seconds)."""
    geom = geometry()
    x = geom.x[0]
    t0 = time.process_time()
    l0 = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate(
        -(x - M0) ** 2 / (2 * S0) - 0.5 * ufl.ln(2 * ufl.pi * S0))
    scheme = JKOScheme(kl(geom, x ** 2 / 2), None, T / n, N, log_rho0=l0, degree=2,
                       correction=correction)
    scheme.run(n)
    return scheme, time.process_time() - t0


def measure(rho, space):
    """L1 error, mean error, standard-deviation error, minimum nodal value."""
    geom = geometry()
    x = geom.x[0]
    dx = geom.dx(degree=6)
    err = float(assemble(abs(rho - exact(x, T)) * dx))
    m = float(assemble(x * rho * dx))
    s = float(assemble((x - m) ** 2 * rho * dx)) ** 0.5
    me, se = M0 * np.exp(-T), np.sqrt(1 + (S0 - 1) * np.exp(-2 * T))
    return err, m - me, s - se, global_min(Function(space).interpolate(rho))


def main(quick: bool):
    counts = (8,) if quick else (8, 16)
    run(4, None, 4)                      # compile the plain and corrected kernels
    run(4, "implicit-bias", 4)
    plain = {n: run(n, None, 4) for n in sorted({*counts, *(2 * c for c in counts)})}
    rows = []
    for n in counts:
        scheme, cpu = run(n, "implicit-bias", 8)
        space = scheme.state.function_space()
        rows.append((f"T/{n}", "corrected JKO", *measure(scheme.rho_expr, space), cpu, "-"))
        (coarse, c1), (fine, c2) = plain[n], plain[2 * n]
        rho = 2 * fine.rho_expr - coarse.rho_expr
        ratio = global_min(Function(space).interpolate(
            2 - ufl.exp(coarse.state - fine.state)))
        rows.append((f"T/{n}", "Richardson", *measure(rho, space), c1 + c2,
                     f"{ratio:.3f}"))
        rows.append((f"T/{n}", "plain JKO", *measure(coarse.rho_expr, space), c1, "-"))
        for r in rows[-3:]:
            PETSc.Sys.Print("| %s | %s | %.3e | %+.2e | %+.2e | %.2e | %.2f | %s |" % r)
    lines = ["# 1D Gaussians: corrected JKO against Richardson extrapolation", "",
             "KL to N(0, 1) from N(2, 1/4) to T = 1 on [-5, 6], 60 cells, P2 "
             "log-densities; corrected JKO with N = 8 slices, plain JKO (and Richardson "
             "2 rho_{eta/2} - rho_eta from it) with N = 4. CPU seconds "
             "(time.process_time, one core) after compiling runs; Richardson's is the "
             "sum of its two plain runs. Min density: nodal, at T. Min ratio: "
             "min of 2 - rho_eta/rho_{eta/2} over the nodes (< 0 where Richardson "
             "loses positivity).", "",
             "| eta | scheme | L1 error | mean error | std error | min density | CPU s | "
             "min ratio |", "|---|---|---|---|---|---|---|---|"]
    lines += ["| %s | %s | %.3e | %+.2e | %+.2e | %.2e | %.2f | %s |" % r for r in rows]
    if COMM_WORLD.rank == 0:
        write_table("gaussian_second_order", lines, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one step size")
    args, _ = parser.parse_known_args()
    main(args.quick)
