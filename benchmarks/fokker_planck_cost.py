"""Accuracy per CPU second: plain against corrected (second-order) JKO, linear Fokker--Planck.

Problem: :math:`\\partial_t\\rho = \\Delta\\rho + \\operatorname{div}(\\rho\\nabla V)` on the
unit square with :math:`V = -x` (a drift in :math:`+x`), no-flux walls.  With
:math:`a = \\pi^2 + 1/4` the exact solution is

.. math::

    \\rho(t, x) = e^{-a t + x/2}\\big(\\pi\\cos\\pi x + \\tfrac12\\sin\\pi x\\big)
                 + \\pi e^{x - 1/2},

which vanishes at :math:`x = 1` at :math:`t = 0`; the log-density unknowns need
:math:`\\rho > 0`, so the runs start at :math:`t_0 = 0.05` (there
:math:`\\min\\rho \\approx 2`) and the JKO schemes integrate to :math:`T = 0.25`.

For every step count and mesh, plain JKO and JKO on the corrected energy
:math:`J + (\\eta/4) I_J` (``correction="implicit-bias"``) run from the interpolated
exact :math:`\\rho(t_0)` (P2 log-densities, N transport slices); the error is
:math:`\\|\\rho_h(T) - \\rho(T)\\|_{L^1}` and the cost is CPU time
(``time.process_time()``, one core) of building the scheme and running it (the mesh is
built once per size and shared), repeated:
the first run compiles the kernels, the minimum and median of the repeats are reported.

The comparison is Richardson extrapolation of plain JKO,
:math:`\\rho_R = 2\\rho_{\\eta/2} - \\rho_\\eta`, also second order, at the same
:math:`\\eta` as the corrected scheme: its cost is that of both plain runs (:math:`n` and
:math:`2n` steps), and, unlike the JKO iterates, :math:`\\rho_R` need not be a density:
its minimum nodal value (P2 interpolant) is reported next to the JKO iterates' minimum
over all steps.
Results go to ``benchmarks/results/fokker_planck_cost.md`` and a PNG.

Run: ``"$(make -s env-path)/bin/python" benchmarks/fokker_planck_cost.py`` (``--quick``
for a smaller sweep).  Serial (CPU time is per process).
"""
import argparse
import os
import sys
import time

import numpy as np
import ufl
from firedrake import COMM_WORLD, Function, FunctionSpace, assemble
from firedrake.petsc import PETSc

from jkoflow.meshes import rectangle
from jkoflow.solvers import JKOScheme, kl
from jkoflow.solvers.common import global_min

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_table  # noqa: E402


T0, T1 = 0.05, 0.25
A = np.pi ** 2 + 0.25
#: The cost target of the issue: L1 error <= 2e-3 in under 5 CPU seconds.
TARGET = (2e-3, 5.0)


def exact(x, t):
    """The exact density at time ``t`` (UFL expression of the coordinate x)."""
    return (ufl.exp(-A * t + x / 2) * (ufl.pi * ufl.cos(ufl.pi * x) + 0.5 * ufl.sin(ufl.pi * x))
            + ufl.pi * ufl.exp(x - 0.5))


#: One mesh per size, shared by all runs (Richardson combines runs on the same mesh).
GEOMETRIES: dict = {}


def run(n, steps, correction, N=4, degree=2):
    """One run; returns (L1 error at T, CPU seconds, Newton iterations, minimum density
    over all steps, the scheme)."""
    if n not in GEOMETRIES:
        GEOMETRIES[n] = rectangle(n, n, diagonal="right")
    geom = GEOMETRIES[n]
    t0 = time.process_time()
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", degree)
    l0 = Function(V).interpolate(ufl.ln(exact(x, T0)))
    scheme = JKOScheme(kl(geom, -x), None, (T1 - T0) / steps, N, log_rho0=l0,
                       degree=degree, correction=correction, t0=T0)
    scheme.run(steps)
    err = float(assemble(abs(scheme.rho_expr - exact(x, T1)) * scheme.jko.dx))
    cpu = time.process_time() - t0
    min_rho = min(h["min_rho"] for h in scheme.history)
    return err, cpu, scheme.solver_stats()[1], min_rho, scheme


def timed(n, steps, correction, repeats):
    """``repeats`` timed runs after a compiling one: (error, min CPU, median CPU,
    Newton its, min density, the last scheme)."""
    results = [run(n, steps, correction) for _ in range(repeats + 1)]
    cpus = [r[1] for r in results[1:]]
    err, _, its, min_rho, scheme = results[-1]
    return err, min(cpus), float(np.median(cpus)), its, min_rho, scheme


def richardson(fine, coarse):
    """L1 error and minimum nodal value of 2 rho_{eta/2} - rho_eta (same mesh)."""
    rho = 2 * fine.rho_expr - coarse.rho_expr
    x = fine.geometry.x[0]
    err = float(assemble(abs(rho - exact(x, T1)) * fine.jko.dx))
    nodal = Function(fine.state.function_space()).interpolate(rho)
    return err, global_min(nodal)


def main(quick: bool, repeats: int):
    meshes = (4, 8) if quick else (4, 8, 16)
    step_counts = (2, 4) if quick else (2, 4, 8, 16)
    rows, runs = [], {}
    for correction in (None, "implicit-bias"):
        # plain JKO also at twice the largest step count, for Richardson
        counts = step_counts + ((2 * step_counts[-1],) if correction is None else ())
        for n in meshes:
            for steps in counts:
                *res, scheme = timed(n, steps, correction, repeats)
                runs[correction, n, steps] = res, scheme
                if steps in step_counts:
                    rows.append((correction or "plain", n, steps, *res))
                    PETSc.Sys.Print("| %s | %d | %d | %.3e | %.2f | %.2f | %d | %.3g |"
                                    % rows[-1])
    # Richardson 2 rho_{eta/2} - rho_eta against the corrected JKO at the same eta
    side = []
    for n in meshes:
        for steps in step_counts:
            (e1, c1, _, _, _), coarse = runs[None, n, steps]
            (e2, c2, _, _, _), fine = runs[None, n, 2 * steps]
            err, min_rho = richardson(fine, coarse)
            (ec, cc, _, _, mc), _ = runs["implicit-bias", n, steps]
            side.append((n, steps, ec, cc, mc, err, c1 + c2, min_rho))
            PETSc.Sys.Print("| %d | %d | %.3e | %.2f | %.3g | %.3e | %.2f | %.3g |"
                            % side[-1])
    hits = [r for r in rows if r[0] == "implicit-bias" and r[3] <= TARGET[0]]
    best = min(hits, key=lambda r: r[4]) if hits else None
    lines = ["# Fokker-Planck: L1 error against CPU time, plain and corrected JKO", "",
             "Unit square, V = -x, exact solution from t0 = 0.05 to T = 0.25 (the exact "
             "solution vanishes at x = 1 at t = 0, so the runs start at t0 > 0). P2 "
             "log-densities, N = 4 slices, MUMPS, one core; CPU seconds of building and "
             f"running a scheme on a shared mesh (time.process_time), min and median of {repeats} repeats "
             "after a compiling run.", "",
             "| scheme | cells per side | steps | L1 error at T | CPU s (min) | "
             "CPU s (median) | Newton its | min density |", "|---|---|---|---|---|---|---|---|"]
    lines += ["| %s | %d | %d | %.3e | %.2f | %.2f | %d | %.3g |" % r for r in rows]
    lines += ["", f"Target (issue 14): corrected JKO reaches L1 <= {TARGET[0]:g} in under "
              f"{TARGET[1]:g} CPU s."]
    if best:
        lines.append(f"Cheapest corrected run meeting the error: {best[1]} cells per side, "
                     f"{best[2]} steps, L1 = {best[3]:.2e} in {best[4]:.2f} CPU s "
                     f"({'met' if best[4] < TARGET[1] else 'NOT met'}).")
    else:
        lines.append("No corrected run reached the error target.")
    lines += ["", "## Richardson extrapolation at the same eta", "",
              "2 rho_{eta/2} - rho_eta from the plain runs with n and 2n steps; its CPU "
              "time is the sum of both (min of repeats). Min density: over all steps for "
              "the JKO iterates, nodal (P2 interpolant) for the extrapolation.", "",
              "| cells per side | steps | corrected L1 | corrected CPU s | corrected min "
              "density | Richardson L1 | Richardson CPU s | Richardson min density |",
              "|---|---|---|---|---|---|---|---|"]
    lines += ["| %d | %d | %.3e | %.2f | %.3g | %.3e | %.2f | %.3g |" % r for r in side]
    PETSc.Sys.Print("\n".join(lines[-len(side) - 8:]))
    if COMM_WORLD.rank == 0:
        plot(rows, side, write_table("fokker_planck_cost", lines, quick) + ".png")


def plot(rows, side, path):
    """L1 error against CPU time, one curve per scheme and mesh, Richardson dotted
    (optional matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for scheme, marker in (("plain", "o"), ("implicit-bias", "s")):
        for n in sorted({r[1] for r in rows}):
            pts = [(r[4], r[3]) for r in rows if r[0] == scheme and r[1] == n]
            if pts:
                c, e = zip(*pts)
                ax.loglog(c, e, marker=marker, ls="-" if scheme == "plain" else "--",
                          label=f"{scheme}, {n}x{n}")
    for n in sorted({r[0] for r in side}):
        pts = [(r[6], r[5]) for r in side if r[0] == n]
        c, e = zip(*pts)
        ax.loglog(c, e, marker="^", ls=":", label=f"Richardson, {n}x{n}")
    ax.axhline(TARGET[0], color="grey", lw=0.8)
    ax.axvline(TARGET[1], color="grey", lw=0.8)
    ax.set_xlabel("CPU seconds (min of repeats)")
    ax.set_ylabel(r"$\|\rho_h(T) - \rho(T)\|_{L^1}$")
    ax.set_title("Fokker-Planck, unit square")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sweep")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per run")
    args, _ = parser.parse_known_args()
    main(args.quick, args.repeats)
