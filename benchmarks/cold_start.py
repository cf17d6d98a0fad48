r"""Cold JKO steps with log-density unknowns: Newton's start from the linearised
prediction against flat slices.

A JKO step that does not continue a previous one (the first step of a run, a step from
new data) starts Newton from guessed slices :math:`l_1, \dots, l_N`.  Two guesses
(:class:`~jkoflow.solvers.JKOStep`, ``predictor=``):

* ``linearised`` (the default): the straight line
  :math:`l_i = l_k + \tfrac{i}{N}\delta` to the end predicted by one linearly implicit
  Euler step of the gradient flow (:mod:`jkoflow.solvers.predictor`);
* ``flat``: every slice at :math:`l_k` (the guess before 2026-12-07).

Both start from the potential :math:`-\eta\,\delta J/\delta\rho(\rho_k)`.  The workload
is the 2D bump of ``_workloads.py`` (KL to :math:`N(0, I)` on :math:`[-3, 3]^2` from a
Gaussian bump of variance 0.25 centred at (0.5, 0), P1): its tails rise by tens of log
units in one step.  Two step sizes: :math:`N = 4`, :math:`\eta = 0.05` (the workload of
``variant_growth.py``) and :math:`N = 8`, :math:`\eta = 0.2`.

For each mesh, case and guess, a first solve compiles the kernels; the second, with
``warm_start=False`` (the cold path), is timed.  Reported: unknowns, Newton iterations
(failed attempts and continuation solves included), the continuation path's length,
CPU seconds (``time.process_time()``, summed over ranks), the ratio of the flat to the
linearised CPU time (same run), and the :math:`L^1` distance between the two answers.

Run: ``"$(make -s env-path)/bin/python" benchmarks/cold_start.py`` (``--quick``: one
small mesh).  Results: ``benchmarks/results/cold_start.md``.
"""
import argparse
import os
import sys
import time

from firedrake import COMM_WORLD
from firedrake.petsc import PETSc
from mpi4py import MPI

from jkoflow.solvers import JKOStep, set_log_level

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import write_table  # noqa: E402
from _workloads import bump_case  # noqa: E402

#: (N, eta, meshes): the flat guess at N = 8 on 128^2 cells would take 20 minutes.
CASES = ((4, 0.05, (32, 64, 128)), (8, 0.2, (32, 64)))


def cpu() -> float:
    """CPU seconds of this process, summed over the ranks."""
    return COMM_WORLD.allreduce(time.process_time(), op=MPI.SUM)


def cold_step(case, n: int, N: int, eta: float, predictor: bool) -> dict:
    """A timed cold step of the workload ``case`` (:func:`bump_case` of ``n``)."""
    _, _, energy, rho0 = case
    step = JKOStep(energy, eta, N, predictor=predictor,
                   options_prefix=f"cold_{n}_{N}_{int(predictor)}_")
    step.solve(rho0)                                   # compiles the kernels
    c0 = cpu()
    res = step.solve(rho0, warm_start=False)
    return {"cpu": cpu() - c0, "its": res.snes_iterations,
            "path": len(step.continuation_path), "rho": res.rho,
            "unknowns": step.W.dim()}


def main(quick: bool):
    set_log_level("ERROR")          # continuation warnings are counted, not printed
    cases = ((4, 0.05, (16,)),) if quick else CASES
    lines = ["# Cold log-density JKO steps: linearised against flat starting slices", "",
             f"{COMM_WORLD.size} MPI rank(s); the 2D bump workload (KL, P1), the second "
             "cold solve of each step (the first compiles).  Newton: all iterations, "
             "failed attempts and continuation solves included; continuation: number "
             "of solves on the continuation path (0: Newton converged directly); CPU: "
             "seconds of the step, summed over ranks; ratio: flat CPU over linearised "
             "CPU; L1: distance between the two answers.", "",
             "| cells | N | eta | unknowns | Newton (linearised) | continuation | CPU s "
             "(linearised) | Newton (flat) | continuation | CPU s (flat) | ratio | L1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for N, eta, meshes in cases:
        for n in meshes:
            case = bump_case(n)
            lin, flat = (cold_step(case, n, N, eta, p) for p in (True, False))
            l1 = case[0].integrate(abs(lin["rho"] - flat["rho"]))
            row = (f"| {n}^2 | {N} | {eta} | {lin['unknowns']} | {lin['its']} | "
                   f"{lin['path']} | {lin['cpu']:.2f} | {flat['its']} | {flat['path']} | "
                   f"{flat['cpu']:.2f} | {flat['cpu'] / lin['cpu']:.1f} | {l1:.1e} |")
            lines.append(row)
            PETSc.Sys.Print(row)
    if COMM_WORLD.rank == 0:
        write_table("cold_start", lines, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small mesh")
    main(parser.parse_args().quick)
