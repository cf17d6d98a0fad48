r"""Log or density unknowns: Newton iterations and CPU time of one KL JKO step against
the predicted change of the log-density, the quantity by which
:func:`~jkoflow.solvers.representation.choose_variable` decides.

Along the gradient flow :math:`\partial_t l = \Delta_g u + \langle\nabla_g l,
\nabla_g u\rangle_g` (:math:`l = \log\rho`, :math:`u = \delta J/\delta\rho`), and
:math:`\Lambda = \eta\max|\langle\nabla_g l, \nabla_g u\rangle_g|` at the data predicts
the largest change of :math:`l` in one step.  Log unknowns linearise :math:`e^{l}`, so
their Newton count grows with that change; the interior point's does not.

Cases (one cold step each, with either unknowns):

* ``gaussian``: KL with :math:`V = x^2/2` on :math:`[-4, 5]`, P2, 180 cells, N = 8,
  :math:`\eta = 0.01`, from the normalised Gaussian :math:`l \propto l_{\min}((x -
  0.5)/4.5)^2` whose minimum is :math:`l_{\min}` = -10 ... -250: heat flow out of an
  ever narrower Gaussian, whose tails rise by :math:`\Lambda` units;
* ``bump 2D``: the workload of ``variant_growth.py`` (KL to :math:`N(0, I)` on
  :math:`[-3, 3]^2` from :math:`e^{-|x - (0.5, 0)|^2/0.5}`, P1, 48 x 48, N = 4,
  :math:`\eta = 0.05`);
* ``steep tails``: the double well of ``steep_tails.py`` (180 cells, :math:`\eta = 0.1`).

Reported: :math:`\Lambda`, the largest actual change :math:`\max|l_{k+1} - l_k|` of the
log-unknown step (where it converged), Newton iterations (log: failed first attempts
before continuation included, and whether continuation was needed), CPU seconds
(``time.process_time()``, second solve of the same step so that kernel compilation is
excluded), and the unknowns :func:`choose_variable` picks.

Run: ``"$(make -s env-path)/bin/python" benchmarks/representation_choice.py``
(``--quick``: three Gaussians).  Results: ``benchmarks/results/representation_choice.md``.
"""
import argparse
import os
import sys
import time

import numpy as np
import ufl
from firedrake import COMM_WORLD, Function, FunctionSpace, assemble

from jkoflow.meshes import interval, rectangle
from jkoflow.solvers import (JKOStep, SolverDivergedError, choose_variable, kl,
                             predicted_log_change, set_log_level)
from jkoflow.solvers.common import global_max, global_min

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import write_table  # noqa: E402
from steep_tails import tail_data  # noqa: E402


def gaussian_case(lmin: float):
    geom = interval(180, -4.0, 5.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 2)
    l = Function(V).interpolate(lmin * ((x - 0.5) / 4.5) ** 2)
    l.assign(l - float(np.log(assemble(ufl.exp(l) * ufl.dx(domain=geom.mesh)))))
    return kl(geom, x ** 2 / 2), l, 0.01, 8, 2


def bump_case():
    geom = rectangle(48, 48, -3.0, 3.0, -3.0, 3.0, diagonal="left")
    x, y = geom.x
    V = FunctionSpace(geom.mesh, "CG", 1)
    l = Function(V).interpolate(-((x - 0.5) ** 2 + y ** 2) / 0.5)
    return kl(geom, (x ** 2 + y ** 2) / 2), l, 0.05, 4, 1


def tails_case():
    energy, l = tail_data(interval(180, -4.0, 5.0), "double well")
    return energy, l, 0.1, 8, 2


def one_step(energy, l, eta, N, degree, variable):
    """Two cold solves of the same step (the second timed); its, CPU, change of l."""
    step = JKOStep(energy, eta, N, degree=degree, variable=variable,
                   options_prefix=f"choice_{variable}_")
    rho = Function(l.function_space()).interpolate(ufl.exp(l))

    def solve():
        if variable == "log":
            return step.solve(log_rho_k=l, warm_start=False)
        return step.solve(rho, warm_start=False)

    try:
        solve()
        c0 = time.process_time()
        res = solve()
    except SolverDivergedError:
        return {"its": "failed", "cpu": float("nan"), "change": float("nan"), "cont": ""}
    cpu = COMM_WORLD.allreduce(time.process_time() - c0)
    change = float("nan")
    if variable == "log":
        d = Function(l.function_space()).assign(res.log_rho - l)
        change = max(global_max(d), -global_min(d))
    return {"its": res.snes_iterations, "cpu": cpu, "change": change,
            "cont": " (continuation)" if step.continuation_path else ""}


def main(quick: bool):
    set_log_level("ERROR")
    lmins = (-10, -50, -100) if quick else (-10, -25, -50, -60, -70, -80, -90, -100, -150,
                                            -200, -250)
    cases = [(f"gaussian, min log rho = {m}", lambda m=m: gaussian_case(float(m)))
             for m in lmins]
    if not quick:
        cases += [("bump 2D, 48^2", bump_case), ("steep tails, double well", tails_case)]
    lines = ["# Log or density unknowns: one KL JKO step against the predicted change of the "
             "log-density", "",
             f"{COMM_WORLD.size} MPI rank(s); MUMPS; cold steps, CPU seconds of a repeated "
             "solve (no compilation).  Lambda: predicted change of log rho in the step; "
             "change: actual largest change of the log-unknown step; choice: what "
             "choose_variable picks (density when Lambda > 100).", "",
             "| case | Lambda | change (log) | Newton its (log) | CPU s (log) | "
             "Newton its (density) | CPU s (density) | choice |",
             "|---|---|---|---|---|---|---|---|"]
    for name, make in cases:
        energy, l, eta, N, degree = make()
        lam = predicted_log_change(energy, l, eta)
        r = {v: one_step(energy, l, eta, N, degree, v) for v in ("log", "density")}
        choice = choose_variable(energy, eta, log_rho=l, degree=degree)
        lines.append(f"| {name} | {lam:.3g} | {r['log']['change']:.3g} | "
                     f"{r['log']['its']}{r['log']['cont']} | {r['log']['cpu']:.2f} | "
                     f"{r['density']['its']}{r['density']['cont']} | "
                     f"{r['density']['cpu']:.2f} | {choice} |")
        if COMM_WORLD.rank == 0:
            print(lines[-1], flush=True)
    if COMM_WORLD.rank == 0:
        path = write_table("representation_choice", lines, quick)
        print(f"written to {path}.md")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three Gaussians")
    main(parser.parse_args().quick)
