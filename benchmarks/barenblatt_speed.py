r"""Accuracy per CPU second of the porous-medium JKO scheme: the 10-step Barenblatt test.

The test of issue 12: :math:`m = 2` on the unit square, Barenblatt profile centred at
:math:`(1/2, 1/2)` with mass 1, :math:`t_0 = 10^{-4}`, ten JKO steps of
:math:`\tau = 10^{-4}`, error in :math:`L^1` against the exact iterate :math:`B(s_{10})`
(a JKO step maps :math:`B(s_k)` onto :math:`B(s_{k+1})`,
:func:`~jkoflow.solvers.barenblatt_jko_time`).  Target: :math:`L^1 \le 10^{-2}` in at
most 20 CPU seconds on one core.

The mass fixes the constant: for :math:`m = d = 2`,
:math:`B(t, x) = t^{-1/2}(C - |x|^2/(16\sqrt t))_+` has support radius
:math:`R^2 = 16C\sqrt t` and mass :math:`t^{-1/2}\int_0^R (C - r^2/(16\sqrt t))\,2\pi r\,dr
= 8\pi C^2`, so :math:`C = (8\pi)^{-1/2}`.  The support radius grows from 0.18 to 0.33,
inside the square.

Swept: squares cut along one diagonal, :math:`n^2` squares, P1 density unknowns
(interior point, MUMPS), N = 1 and 2 transport-time slices.  CPU seconds
(``time.process_time()``) of the ten steps after a warm-up step that compiles the
kernels, minimum and median over ``--repeats`` runs.  The table also gives the error
per CPU second ranking: for each error level, the cheapest configuration that reaches
it.

Run: ``"$(make -s env-path)/bin/python" benchmarks/barenblatt_speed.py`` (``--quick``:
two meshes).  Results: ``benchmarks/results/barenblatt_speed.md``.
"""
import argparse
import math
import os
import statistics
import sys
import time

from firedrake import COMM_WORLD, Function, FunctionSpace
from firedrake.petsc import PETSc
from mpi4py import MPI

from jkoflow.meshes import unit_square
from jkoflow.solvers import JKOScheme, barenblatt, barenblatt_jko_time, porous_medium

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import write_table  # noqa: E402

M, T0, TAU, STEPS = 2.0, 1e-4, 1e-4, 10
C = 1.0 / math.sqrt(8 * math.pi)          # unit mass (see the module docstring)
CENTRE = (0.5, 0.5)


def run(n: int, N: int, repeats: int) -> dict:
    geom = unit_square(n, diagonal="left")
    V = FunctionSpace(geom.mesh, "CG", 1)
    rho0 = Function(V).interpolate(barenblatt(geom.x, T0, C, M, CENTRE))
    energy = porous_medium(geom, M)
    JKOScheme(energy, rho0, TAU, N, t0=T0, options_prefix=f"warm{n}_{N}_").step()
    s = T0
    for _ in range(STEPS):
        s = barenblatt_jko_time(s, TAU, M, 2)
    exact = barenblatt(geom.x, s, C, M, CENTRE)
    cpu, its, err = [], None, None
    for _ in range(repeats):
        scheme = JKOScheme(energy, rho0, TAU, N, t0=T0, options_prefix=f"b{n}_{N}_")
        c0 = time.process_time()
        scheme.run(STEPS)
        cpu.append(COMM_WORLD.allreduce(time.process_time() - c0, op=MPI.MAX))
        its = sum(h["snes_iterations"] for h in scheme.history[1:])
        err = geom.integrate(abs(scheme.rho_expr - exact), degree=6)
    return {"n": n, "N": N, "err": err, "its": its, "cpu_min": min(cpu),
            "cpu_median": statistics.median(cpu)}


def main(quick: bool, repeats: int):
    meshes = (16, 32) if quick else (16, 24, 32, 48, 64)
    rows = []
    for n in meshes:
        for N in (1, 2):
            r = run(n, N, repeats)
            rows.append(r)
            PETSc.Sys.Print(f"n = {n}, N = {N}: L1 {r['err']:.3e}, {r['its']} Newton its, "
                            f"CPU {r['cpu_min']:.2f} s (median {r['cpu_median']:.2f})")
    lines = ["# The 10-step Barenblatt test: accuracy per CPU second", "",
             f"{COMM_WORLD.size} MPI rank(s); m = 2, unit square (one diagonal), centre "
             f"(1/2, 1/2), mass 1 (C = (8 pi)^-1/2), t0 = {T0:g}, {STEPS} JKO steps of tau = "
             f"{TAU:g}; P1 density unknowns, interior point, MUMPS; L1 error against the exact "
             f"iterate B(s_10).  CPU seconds of the ten steps (`time.process_time()`, "
             f"kernels compiled beforehand), min / median of {repeats} runs.", "",
             "| squares per side | N | L1 error | Newton its (10 steps) | CPU s min | median |"
             " L1 error x CPU s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['N']} | {r['err']:.2e} | {r['its']} | "
                     f"{r['cpu_min']:.2f} | {r['cpu_median']:.2f} | "
                     f"{r['err'] * r['cpu_min']:.2e} |")
    ok = [r for r in rows if r["err"] <= 1e-2]
    lines.append("")
    if ok:
        best = min(ok, key=lambda r: r["cpu_min"])
        lines.append(f"Target L1 <= 1e-2 in <= 20 CPU s: {'met' if best['cpu_min'] <= 20 else 'NOT met'}"
                     f" by {best['n']}^2 squares, N = {best['N']}: L1 = {best['err']:.2e} in "
                     f"{best['cpu_min']:.2f} CPU s.")
    else:
        lines.append("Target L1 <= 1e-2: not reached on these meshes.")
    # The accuracy-per-cost frontier: configurations not beaten in both error and time.
    frontier = [r for r in rows
                if not any(o["err"] < r["err"] and o["cpu_min"] < r["cpu_min"] for o in rows)]
    lines.append("Cheapest configuration per accuracy (no other run is both more accurate "
                 "and cheaper): " + "; ".join(
                     f"{r['err']:.1e} in {r['cpu_min']:.2f} s ({r['n']}^2, N = {r['N']})"
                     for r in sorted(frontier, key=lambda r: r["cpu_min"])) + ".")
    if COMM_WORLD.rank == 0:
        write_table("barenblatt_speed", lines, quick)
        print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two meshes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    main(args.quick, args.repeats)
