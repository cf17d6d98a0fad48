"""JKO step: Newton iterations and time per step versus mesh size and step size.

Tables printed as Markdown and written to ``benchmarks/results/jko_step.md``:

1. 1D, KL to N(0, 1) from N(2, 0.25) on [-5, 6] (P1, N = 4 slices): Newton iterations
   of the first (cold, with continuation when needed) and of the following
   (warm-started) steps, as h and eta vary.
2. 2D, KL to N(0, I) from a Gaussian bump on [-3, 3]^2 (P1, N = 4): unknowns, Newton
   and Krylov iterations and wall time per warm step with the direct (MUMPS) solver.
   (Density unknowns, direct against the iterative ``"sweep"`` preset, on meshes
   without the crossed triangulation: ``variant_growth.py``.)

4. Steep tails with log unknowns (issue 12): KL with a double well and a quartic
   potential on [-4, 5] from N(0.5, 0.25), P2, 180 cells, N = 8, eta = 0.1, five
   steps: Newton iterations and CPU seconds per step with the former default (``l2``
   line search, log updates clipped at 10, rtol 1e-10) and the current one (full
   steps, clipped at 2, rtol 1e-12).  ``--sections 4`` runs only this table.

Run: ``"$(make -s env-path)/bin/python" benchmarks/jko_step.py`` (add ``--quick`` for a
smaller sweep).  CPU seconds (``time.process_time()``) per warm step, assembly
included; kernels are compiled before timing (the cold step).
"""
import argparse
import time

import ufl
from firedrake import COMM_WORLD, Function, FunctionSpace
from firedrake.petsc import PETSc

from jkoflow.meshes import interval
from jkoflow.solvers import JKOScheme, JKOStep, SolverDivergedError, kl

from _results import write_table  # benchmarks/
from _workloads import bump_case  # benchmarks/
from steep_tails import POTENTIALS as TAIL_POTENTIALS, tail_scheme  # benchmarks/


def iterations_1d(n, eta, steps=4, N=4):
    geom = interval(n, -5.0, 6.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 1)
    l0 = Function(V).interpolate(-(x - 2) ** 2 / 0.5 - 0.5 * ufl.ln(2 * ufl.pi * 0.25))
    scheme = JKOScheme(kl(geom, x ** 2 / 2), None, eta, N, log_rho0=l0)
    scheme.run(steps)
    its = [h["snes_iterations"] for h in scheme.history[1:]]
    return its[0], max(its[1:]), sum(its[1:]) / len(its[1:])


def timing_2d(n, N=4):
    """Unknowns, Newton and Krylov iterations and CPU seconds of a warm 2D log step."""
    _, _, energy, rho0 = bump_case(n, diagonal="crossed")
    step = JKOStep(energy, 0.05, N)
    res = step.solve(rho0)                      # cold step (compiles the kernels)
    t0 = time.process_time()
    res2 = step.solve(res.rho)                  # warm step: timed (CPU seconds)
    dt = time.process_time() - t0
    return step.W.dim(), res2.snes_iterations, res2.linear_iterations, dt


def steep_tails(name, linesearch, max_log_step, rtol, steps=5):
    """Newton iterations and CPU seconds per step of the issue-12 steep-tail case
    (``"failed"`` ends the list if a step raised)."""
    scheme = tail_scheme(interval(180, -4.0, 5.0), name, 0.1,
                         solver_parameters_extra={"snes_linesearch_type": linesearch,
                                                  "snes_rtol": rtol})
    scheme.jko.max_log_step = max_log_step
    its, secs = [], []
    for _ in range(steps):
        t0 = time.process_time()
        try:
            scheme.step()
        except SolverDivergedError:
            its.append("failed")
            secs.append(time.process_time() - t0)
            break
        secs.append(time.process_time() - t0)
        its.append(scheme.history[-1]["snes_iterations"])
    return its, secs


def main(quick: bool, sections=(1, 2)):
    lines = ["# JKO step benchmark", "",
             f"{COMM_WORLD.size} MPI rank(s); direct solver (MUMPS LU) unless stated.", "",
             "## Newton iterations per step, 1D Gaussian (P1, N = 4)", "",
             "| cells | eta | first step | max warm step | mean warm step |",
             "|---|---|---|---|---|"]
    ns = () if 1 not in sections else (55, 110) if quick else (55, 110, 220, 440)
    etas = (0.1, 0.05) if quick else (0.2, 0.1, 0.05)
    for n in ns:
        for eta in etas:
            first, worst, mean = iterations_1d(n, eta)
            lines.append(f"| {n} | {eta} | {first} | {worst} | {mean:.1f} |")
            PETSc.Sys.Print(lines[-1])
    lines += ["", "## Time per warm step, 2D Gaussian (P1, N = 4, eta = 0.05)", "",
              "| cells per side | unknowns | Newton its | Krylov its | CPU s per step |",
              "|---|---|---|---|---|"]
    for n in (() if 2 not in sections else (16, 32) if quick else (16, 32, 64)):
        dofs, its, kits, dt = timing_2d(n)
        lines.append(f"| {n} | {dofs} | {its} | {kits} | {dt:.2f} |")
        PETSc.Sys.Print(lines[-1])
    if 4 in sections:
        lines += ["", "## Steep tails (log unknowns)", "",
                  "KL, V = (x^2-1)^2/4 (double well) or x^4/4 (quartic) on [-4, 5], rho_0 = "
                  "N(0.5, 0.25), P2, 180 cells, N = 8, eta = 0.1, five steps.  Newton "
                  "iterations per step (continuation in eta included) and CPU seconds "
                  "(`time.process_time()`; step 1 includes kernel compilation when the "
                  "cache is cold).", "",
                  "| potential | Newton globalisation | Newton its per step | CPU s per step "
                  "| total CPU s |", "|---|---|---|---|---|"]
        for name in TAIL_POTENTIALS:
            for ls, clip, rtol, label in (
                    ("l2", 10.0, 1e-10, "before: l2 line search, clip 10, rtol 1e-10"),
                    ("basic", 2.0, 1e-12, "now: full steps, clip 2, rtol 1e-12")):
                its, secs = steep_tails(name, ls, clip, rtol)
                lines.append(f"| {name} | {label} | {', '.join(map(str, its))} | "
                             f"{', '.join(f'{t:.1f}' for t in secs)} | {sum(secs):.1f} |")
                PETSc.Sys.Print(lines[-1])
    if COMM_WORLD.rank == 0:
        full = sections == (1, 2)
        stem = "jko_step" if full else f"jko_step_sections_{'_'.join(map(str, sections))}"
        write_table(stem, lines, quick and full)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sweep")
    parser.add_argument("--sections", type=int, nargs="+", default=[1, 2],
                        help="tables to run (1: 1D iterations, 2: 2D log, 4: steep tails)")
    args, _ = parser.parse_known_args()
    main(args.quick, tuple(args.sections))
