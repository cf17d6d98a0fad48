r"""Porous medium by JKO: Barenblatt profiles, Newton iterations, errors and CPU time.

A JKO step of size :math:`\tau` for :math:`J = \int\rho^m/(m-1)` maps the Barenblatt
profile :math:`B(s_k)` exactly onto :math:`B(s_{k+1})`, where
:math:`(s_k/s_{k+1})^\beta = 1 - \beta\tau/s_{k+1}`, :math:`\beta = \alpha/d`,
:math:`\alpha = d/(d(m-1)+2)`.  From the compactly supported :math:`B(t_0)` (no floor)
we take K steps with density unknowns (the interior point, N = 2 slices, P1, direct
solver) on the unit square (m = 2, 3) and on a disk of radius 1/2 (m = 2, 3), three
meshes each, and report

* Newton iterations per step (first step, then min/mean/max over the others): mesh
  independence shows as rows that do not grow with the mesh;
* the :math:`L^1` error against :math:`B(s_K)`, absolute and relative to the mass,
  with the observed rate between consecutive meshes;
* CPU seconds per step (``time.process_time()``, maximum over ranks), the whole run
  repeated ``--repeats`` times after a warm-up step that compiles the kernels: the
  minimum and the median over the repeats of the mean time per step, and the ratio
  of the mean time of steps 2..K to the first step's (the first step starts from the
  linearised potential, the others are warm-started).

A case whose Newton iteration fails is reported as such (the step it failed at),
not dropped.  Results go to ``benchmarks/results/barenblatt_jko.md`` and ``.png``
(``barenblatt_jko_quick.*`` with ``--quick``).

Run: ``"$(make -s env-path)/bin/python" benchmarks/barenblatt_jko.py`` (add ``--quick``
for two coarse meshes, 4 steps).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
from firedrake import COMM_WORLD, Function, FunctionSpace
from firedrake.petsc import PETSc
from mpi4py import MPI

from jkoflow.meshes import disk, unit_square
from jkoflow.solvers import JKOScheme, barenblatt, barenblatt_jko_time, porous_medium
from jkoflow.solvers.common import SolverDivergedError

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import results_path, write_table  # noqa: E402


#: The cases: domain, m, Barenblatt constant C (support radius ~0.27 at t0 = 1e-3,
#: ~0.4 after the steps: inside both domains), meshes (square: cells per side; disk:
#: refinement, 8*4^r cells).
CASES = [("square", 2.0, 0.2), ("square", 3.0, 0.04), ("disk", 2.0, 0.2), ("disk", 3.0, 0.04)]
MESHES = {"square": (12, 24, 48), "disk": (3, 4, 5)}
QUICK_MESHES = {"square": (8, 16), "disk": (2, 3)}
T0, TAU, N = 1e-3, 2.5e-4, 2


def geometry(domain, n):
    if domain == "square":
        return unit_square(n), (0.5, 0.5)
    return disk(n, radius=0.5), (0.0, 0.0)


def run(domain, n, m, C, steps, repeats):
    """K steps from B(t0), repeated; returns a dict of the measurements."""
    geom, centre = geometry(domain, n)
    V = FunctionSpace(geom.mesh, "CG", 1)
    rho0 = Function(V).interpolate(barenblatt(geom.x, T0, C, m, centre))
    energy = porous_medium(geom, m)
    # warm-up: one step compiles every kernel of this mesh's forms
    JKOScheme(energy, rho0, TAU, N, t0=T0).step()
    out = {"cells": geom.mesh.num_cells() if COMM_WORLD.size == 1
           else COMM_WORLD.allreduce(geom.mesh.cell_set.size, MPI.SUM)}
    times = []
    for rep in range(repeats):
        scheme = JKOScheme(energy, rho0, TAU, N, t0=T0)
        cpu = []
        try:
            for _ in range(steps):
                c0 = time.process_time()
                scheme.step()
                cpu.append(COMM_WORLD.allreduce(time.process_time() - c0, MPI.MAX))
        except SolverDivergedError as err:
            out["failed"] = len(scheme.history)
            PETSc.Sys.Print(f"  {domain} m={m:g} n={n}: failed at step "
                            f"{len(scheme.history)}: {str(err).splitlines()[0]}")
            return out
        times.append(np.array(cpu))
        its = [h["snes_iterations"] for h in scheme.history[1:]]
        if rep == 0:
            s = T0
            for _ in range(steps):
                s = barenblatt_jko_time(s, TAU, m, 2)
            exact = barenblatt(geom.x, s, C, m, centre)
            mass0 = scheme.history[0]["mass"]
            out.update(its=its, sK=s, mass=mass0,
                       err=geom.integrate(abs(scheme.rho_expr - exact), degree=6),
                       drift=max(abs(h["mass"] - mass0) for h in scheme.history) / mass0,
                       min_rho=min(h["min_rho"] for h in scheme.history),
                       decay=bool(np.all(np.diff([h["energy"] for h in scheme.history]) < 0)))
        elif its != out["its"]:
            out["its_varied"] = True
    per_step = [t.mean() for t in times]
    out.update(cpu_min=min(per_step), cpu_median=statistics.median(per_step),
               ratio=statistics.median(t[1:].mean() / t[0] for t in times),
               cpu_steps=np.min(times, axis=0))
    return out


def table(results, steps, repeats):
    lines = ["# Porous medium by JKO: Barenblatt profiles", "",
             f"{COMM_WORLD.size} MPI rank(s); density unknowns (interior point), N = {N} "
             f"slices, P1, direct solver (MUMPS LU); K = {steps} steps of tau = {TAU:g} "
             f"from B(t0), t0 = {T0:g}, compact support, no floor.  Errors against the "
             "exact JKO iterate B(s_K).  CPU seconds per step: `time.process_time()`, "
             f"{repeats} repeats of the whole run after a warm-up step; min and median over "
             "the repeats of the mean per step; ratio = mean of steps 2..K over step 1.", "",
             "| domain | m | cells | Newton step 1 | Newton steps 2..K min/mean/max | "
             "L1 error | relative | rate | mass drift | min rho | J decreasing | "
             "CPU s/step min | median | ratio to step 1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (domain, m, _), rows in results.items():
        prev = None
        for n, r in rows:
            if "failed" in r:
                lines.append(f"| {domain} | {m:g} | {r['cells']} | failed at step "
                             f"{r['failed']} | | | | | | | | | | |")
                prev = None
                continue
            its = r["its"]
            rest = its[1:] or its
            rate = f"{np.log2(prev / r['err']):.2f}" if prev else ""
            prev = r["err"]
            lines.append(
                f"| {domain} | {m:g} | {r['cells']} | {its[0]} | {min(rest)}/"
                f"{np.mean(rest):.1f}/{max(rest)} | {r['err']:.2e} | "
                f"{r['err'] / r['mass']:.2e} | {rate} | {r['drift']:.0e} | "
                f"{r['min_rho']:.0e} | {'yes' if r['decay'] else 'NO'} | "
                f"{r['cpu_min']:.2f} | {r['cpu_median']:.2f} | {r['ratio']:.2f} |")
    lines += ["", "Newton iterations per step:", ""]
    for (domain, m, _), rows in results.items():
        for n, r in rows:
            if "its" in r:
                lines.append(f"- {domain}, m = {m:g}, {r['cells']} cells: "
                             f"{' '.join(map(str, r['its']))}"
                             + (" (varied between repeats)" if r.get("its_varied") else ""))
    return lines


def figure(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results) + 1, figsize=(4 * (len(results) + 1), 3.6))
    for ax, ((domain, m, _), rows) in zip(axes, results.items()):
        for n, r in rows:
            if "its" in r:
                ax.plot(range(1, len(r["its"]) + 1), r["its"], "o-", ms=3,
                        label=f"{r['cells']} cells")
        ax.set_title(f"{domain}, m = {m:g}")
        ax.set_xlabel("JKO step")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("Newton iterations")
    ax = axes[-1]
    for (domain, m, _), rows in results.items():
        ok = [(r["cells"], r["err"] / r["mass"]) for _, r in rows if "err" in r]
        if ok:
            ax.loglog(*zip(*ok), "o-", label=f"{domain}, m = {m:g}")
    ax.set_xlabel("cells")
    ax.set_ylabel(r"relative $L^1$ error vs $B(s_K)$")
    ax.set_title("error of the JKO iterate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(quick: bool, steps: int | None, repeats: int):
    steps = steps or (4 if quick else 10)
    meshes = QUICK_MESHES if quick else MESHES
    results = {}
    for domain, m, C in CASES:
        rows = []
        for n in meshes[domain]:
            r = run(domain, n, m, C, steps, repeats)
            rows.append((n, r))
            PETSc.Sys.Print(f"{domain} m={m:g} cells={r['cells']}: "
                            + (f"failed at step {r['failed']}" if "failed" in r else
                               f"Newton {r['its']}, L1 {r['err']:.3e}, CPU/step "
                               f"{r['cpu_min']:.2f} (min) {r['cpu_median']:.2f} (median), "
                               f"ratio {r['ratio']:.2f}"), comm=COMM_WORLD)
        results[(domain, m, C)] = rows
    lines = table(results, steps, repeats)
    if COMM_WORLD.rank == 0:
        name = os.path.basename(results_path("barenblatt_jko", quick))
        lines += ["", f"![Newton iterations and errors]({name}.png)"]
        figure(results, write_table("barenblatt_jko", lines, quick) + ".png")
        print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two coarse meshes, 4 steps")
    parser.add_argument("--steps", type=int, default=None, help="JKO steps (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (>= 3)")
    args, _ = parser.parse_known_args()
    main(args.quick, args.steps, args.repeats)
