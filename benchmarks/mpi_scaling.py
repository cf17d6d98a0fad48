"""Strong scaling from 1 to 2 MPI ranks: every JKO variant and the WGF at >= 10^5 unknowns.

The workloads (the problem of ``_workloads.py``), each timed on 1 and on 2 ranks (the script launches itself with
``mpiexec -n 1`` and ``mpiexec -n 2`` and collects the numbers):

* **JKO step**: KL to :math:`N(0, I)` on :math:`[-3, 3]^2` from a Gaussian bump
  (squares cut along one diagonal, P1 log-densities, N = 4 slices, :math:`\\eta =
  0.05`, MUMPS): one cold step (kernels, symbolic factorisation), then the time of
  the warm steps that follow.  Unknowns: :math:`2N` fields of the P1 space.
* **JKO step, LDLT**: the same step with ``quadrature="vertex"`` and the ``"ldlt"``
  solver (MUMPS's symmetric :math:`LDL^\\top` of the row-scaled Jacobian,
  :mod:`jkoflow.solvers.symmetric_solve`); likewise **JKO step, corrected, LDLT** and
  **geodesic, LDLT**.
* **JKO step, sweep**: the same step with density unknowns (interior point) and the
  iterative ``"sweep"`` preset (FGMRES + transport-sweep preconditioner: block ILU,
  AMG), whose parts are local or multigrid solves rather than one factorisation.
  Unknowns: :math:`3N` fields (densities, potentials, duals).
* **JKO step, corrected**: the log step with ``correction="implicit-bias"`` (the
  second-order scheme's step).
* **geodesic**: :class:`~jkoflow.solvers.W2Geodesic` (log unknowns, N = 4) from the
  bump to its translate by (1, 0.5) (cold), then to the translates by (1.1, 0.55),
  (1.2, 0.6) (timed, warm).  Unknowns: :math:`2N - 1` fields.
* **WGF**: the same energy by :class:`~jkoflow.solvers.WassersteinGradientFlow`
  (log form, Radau IIA with 3 stages, so 3 fields), one step to warm up, then the
  time of the following steps.

Reported per rank count: unknowns, Newton iterations, wall seconds per warm step
(``time.perf_counter()``, the maximum over ranks; what a user waits for), CPU seconds
per warm step summed over ranks (``time.process_time()``: the work), and the speedup
and parallel efficiency of 2 ranks over 1, measured in the same run.  The machine is
shared: each configuration is repeated and the minimum and median are reported.
``--cells`` times the chosen workloads on other meshes; the rows of every other
(workload, mesh) are kept.

Run: ``"$(make -s env-path)/bin/python" benchmarks/mpi_scaling.py`` (``--quick``: smaller
problems, fewer repeats; ``--workloads jko-sweep``: rerun some workloads and keep the
others' rows).  Results: ``benchmarks/results/mpi_scaling.md``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import table_rows_by_mesh, write_table  # noqa: E402

WORKLOADS = ("jko", "jko-ldlt", "jko-sweep", "jko-corrected", "jko-corrected-ldlt",
             "geodesic", "geodesic-ldlt", "wgf")
#: Cells per side of each workload (>= 1e5 unknowns), and of its --quick variant.
CELLS = {"jko": (116,), "jko-ldlt": (116,), "jko-sweep": (96,), "jko-corrected": (116,),
         "jko-corrected-ldlt": (116,), "geodesic": (124,), "geodesic-ldlt": (124,),
         "wgf": (200,)}
QUICK_CELLS = {"jko": (40,), "jko-ldlt": (40,), "jko-sweep": (32,), "jko-corrected": (40,),
               "jko-corrected-ldlt": (40,), "geodesic": (40,), "geodesic-ldlt": (40,),
               "wgf": (100,)}
STEPS = {"jko": 2, "jko-ldlt": 2, "jko-sweep": 1, "jko-corrected": 2,
         "jko-corrected-ldlt": 2, "geodesic": 2, "geodesic-ldlt": 2, "wgf": 5}
#: The symmetric solve: the vertex rule and MUMPS's LDL^T (jkoflow.solvers.symmetric_solve).
LDLT = {"quadrature": "vertex", "solver_parameters": "ldlt"}


def worker(kind: str, n: int, steps: int):
    """Run one workload on the current communicator; rank 0 prints a JSON line."""
    from firedrake import COMM_WORLD, Function
    from jkoflow.solvers import JKOStep, W2Geodesic, WassersteinGradientFlow
    from _workloads import bump, bump_case

    geom, V, energy, rho0 = bump_case(n)
    if kind in ("jko", "jko-ldlt", "jko-corrected", "jko-corrected-ldlt"):
        solver = JKOStep(energy, 0.05, 4,
                         correction="implicit-bias" if "corrected" in kind else None,
                         **(LDLT if kind.endswith("-ldlt") else {}))
        res = solver.solve(rho0)                  # cold: compile, first factorisation
        unknowns = solver.w.function_space().dim()

        def one_step():
            nonlocal res
            res = solver.solve(log_rho_k=res.log_rho)
            return res.snes_iterations
    elif kind == "jko-sweep":
        solver = JKOStep(energy, 0.05, 4, variable="density", solver_parameters="sweep")
        res = solver.solve(rho0)                  # cold: compile, preconditioner set-up
        unknowns = solver.w.function_space().dim()

        def one_step():
            nonlocal res
            res = solver.solve(res.rho)
            return res.snes_iterations
    elif kind in ("geodesic", "geodesic-ldlt"):
        def translate(t):
            return Function(V).interpolate(bump(geom, (t, 0.5 * t)))
        solver = W2Geodesic(geom, 4, **(LDLT if kind == "geodesic-ldlt" else {}))
        res = solver.solve(rho0, translate(1.0))  # first: compile, from the trivial guess
        unknowns = solver.w.function_space().dim()
        shifts = iter(1.0 + 0.1 * k for k in range(1, 100))

        def one_step():                           # the next translate, warm
            return solver.solve(rho0, translate(next(shifts))).snes_iterations
    else:
        solver = WassersteinGradientFlow(energy, rho0, 0.01)
        solver.step()
        unknowns = 3 * V.dim()

        def one_step():
            before = solver.solver_stats()[1]
            solver.step()
            return solver.solver_stats()[1] - before
    COMM_WORLD.barrier()
    wall, cpu, its = time.perf_counter(), time.process_time(), 0
    for _ in range(steps):
        its += one_step()
    wall = COMM_WORLD.allreduce(time.perf_counter() - wall, op=_max())
    cpu = COMM_WORLD.allreduce(time.process_time() - cpu)
    if COMM_WORLD.rank == 0:
        print("RESULT " + json.dumps({"unknowns": unknowns, "its": its / steps,
                                      "wall": wall / steps, "cpu": cpu / steps}), flush=True)


def _max():
    from mpi4py import MPI
    return MPI.MAX


def launch(ranks: int, kind: str, n: int, steps: int) -> dict:
    cmd = ["mpiexec", "-n", str(ranks), sys.executable, os.path.abspath(__file__),
           "--worker", kind, str(n), str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(quick: bool, repeats: int, workloads=WORKLOADS, cells=None):
    """Time the chosen workloads (on ``cells`` cells per side, else their defaults) and
    rewrite the table, keeping the rows of every other (workload, mesh)."""
    lines = ["# Strong scaling, 1 -> 2 MPI ranks", "",
             "2D KL to N(0, I), P1, squares cut along one diagonal; JKO: N = 4, eta = 0.05, "
             "log unknowns, MUMPS; -ldlt: the vertex rule and the 'ldlt' solver; JKO sweep: the same step with density unknowns and the "
             "'sweep' preset; JKO corrected: the log step with correction='implicit-bias'; "
             "geodesic: W2Geodesic (log, N = 4) from the bump to its translates by "
             "(1.1, 0.55), (1.2, 0.6) (warm); WGF: log form, Radau IIA (3 stages), "
             "dt = 0.01, MUMPS. "
             f"Per warm step; min / median over {repeats} repeats; wall = max over ranks, "
             "CPU = sum over ranks.", "",
             "| workload | cells per side | unknowns | ranks | Newton its | wall s (min / median)"
             " | CPU s (min / median) | speedup | efficiency |",
             "|---|---|---|---|---|---|---|---|---|"]
    kept = table_rows_by_mesh("mpi_scaling", WORKLOADS, quick)
    for kind in WORKLOADS:
        rows = dict(kept.get(kind, {}))
        for n in ((cells or (QUICK_CELLS if quick else CELLS)[kind])
                  if kind in workloads else ()):
            rows[n] = []
            walls = {}
            for ranks in (1, 2):
                runs = [launch(ranks, kind, n, STEPS[kind]) for _ in range(repeats)]
                w = [r["wall"] for r in runs]
                c = [r["cpu"] for r in runs]
                walls[ranks] = min(w)
                speed = walls[1] / walls[ranks]
                rows[n].append(f"| {kind} | {n} | {runs[0]['unknowns']} | {ranks} | "
                               f"{runs[0]['its']:.1f} | {min(w):.2f} / {np.median(w):.2f} | "
                               f"{min(c):.2f} / {np.median(c):.2f} | {speed:.2f} | "
                               f"{speed / ranks:.0%} |")
                print(rows[n][-1], flush=True)
        for n in sorted(rows):
            lines += rows[n]
    print("\n".join(lines))
    write_table("mpi_scaling", lines, quick)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--quick", action="store_true", help="smaller problems")
        parser.add_argument("--repeats", type=int, default=2, help="repeats per configuration")
        parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS),
                            choices=WORKLOADS, help="rerun these workloads only; the other "
                            "rows of the results table are kept")
        parser.add_argument("--cells", type=int, nargs="+", default=None,
                            help="cells per side for the chosen workloads (default: "
                            f"{CELLS}); rows of other meshes are kept")
        args, _ = parser.parse_known_args()
        main(args.quick, args.repeats, args.workloads, args.cells)
