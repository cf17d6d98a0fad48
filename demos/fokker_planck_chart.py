r"""Fokker--Planck in a metric chart: the hemisphere in stereographic coordinates.
=================================================================================

A Riemannian manifold need not be an embedded mesh: here the upper unit hemisphere
is the unit disk :math:`|u| < 1` with the conformal metric

.. math:: g(u) = \frac{4}{(1+|u|^2)^2}\,I, \qquad
    \mathrm{dvol} = \frac{4}{(1+|u|^2)^2}\,du, \qquad \mathrm{area} = 2\pi,

and the boundary circle is the equator.  On it we solve the Fokker--Planck equation,
the Wasserstein gradient flow of the relative entropy

.. math::

    J(\rho) = \int \rho\log\rho + V\rho\,\mathrm{dvol}, \qquad
    \partial_t\rho = \Delta_g\rho + \operatorname{div}_g(\rho\nabla_g V),

with no flux through the equator, for the potential :math:`V = -\kappa\,x_3(u)`,
:math:`x_3 = (1-|u|^2)/(1+|u|^2)` the height on the sphere.  The equilibrium is the
(restricted) von Mises--Fisher density :math:`\pi = e^{-V}/Z` with respect to
:math:`\mathrm{dvol}` --- not with respect to :math:`du`: the chart density carries the
metric factor.  All operators come from the :class:`~jkoflow.meshes.Geometry` of the
chart (:math:`g^{-1}\nabla`, :math:`\sqrt{\det g}\,du`); the solver code is the one
used on flat domains and surfaces.

Printed: mass drift (round-off: the log form conserves mass exactly), the relative
entropy :math:`\mathrm{KL}(\rho_T\|\pi)` and the :math:`L^1(\mathrm{dvol})` distance
to :math:`\pi` at :math:`T`, which shrink with the mesh.

Output in ``out/fokker_planck_chart``: ``fokker_planck_chart.pvd`` and
``fokker_planck_chart.png``.
"""
import math
import os
import sys
import time

import numpy as np
import ufl
from firedrake import Function, FunctionSpace
from firedrake.petsc import PETSc

from jkoflow.meshes import stereographic_hemisphere
from jkoflow.solvers import TimeSeries, VTKOutput, WassersteinGradientFlow, kl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _plotting  # noqa: E402


def main(args):
    os.makedirs(args.output, exist_ok=True)
    # The chart: a disk mesh carrying the stereographic metric.
    geom = stereographic_hemisphere(args.refinement)
    u = geom.x
    PETSc.Sys.Print(geom.describe())
    PETSc.Sys.Print(f"area {geom.volume():.6f} (hemisphere: 2 pi = {2 * math.pi:.6f})")

    # The potential: minus kappa times the height above the equator.
    r2 = ufl.inner(u, u)
    x3 = (1 - r2) / (1 + r2)
    V = -args.kappa * x3
    energy = kl(geom, V)
    # pi = exp(-V)/Z, normalised with the same (Riemannian) volume measure.
    Z = geom.integrate(ufl.exp(-V), degree=8)
    pi = ufl.exp(-V) / Z

    # A positive start tilted towards one side of the hemisphere, of unit mass.
    Vh = FunctionSpace(geom.mesh, "CG", args.degree)
    rho0 = Function(Vh).interpolate(1 + 0.8 * u[0])
    geom.normalise(rho0)

    # The log form keeps rho > 0 and conserves mass exactly.
    tic = time.perf_counter()
    flow = WassersteinGradientFlow(energy, rho0, args.dt, stages=args.stages, mass=1.0)
    PETSc.Sys.Print(flow.describe())
    series = flow.add_observer(TimeSeries({
        "kl": lambda s: s.energy_value() + math.log(Z), "mass": lambda s: s.mass(),
        "l1": lambda s: geom.integrate(abs(s.rho_expr - pi), degree=8)}))
    flow.add_observer(VTKOutput(os.path.join(args.output, "fokker_planck_chart.pvd")))
    flow.advance_to(args.T)
    t, kl_t, mass, l1 = series["t"], series["kl"], series["mass"], series["l1"]
    PETSc.Sys.Print(f"WGF: {flow.solver_stats()[0]} steps, {time.perf_counter() - tic:.1f} s")
    PETSc.Sys.Print(f"mass: {mass[0]:.15f} -> {mass[-1]:.15f}, max drift "
                    f"{np.max(np.abs(mass - mass[0])):.1e}")
    PETSc.Sys.Print(f"equilibrium at T = {args.T:g}: KL(rho || pi) = {kl_t[0]:.3e} -> "
                    f"{kl_t[-1]:.3e}, ||rho - pi||_L1(dvol) = {l1[0]:.3e} -> {l1[-1]:.3e}")
    PETSc.Sys.Print(f"KL decreasing: {bool(np.all(np.diff(kl_t) <= 1e-13))}")

    # Figure: KL, L1 distance and mass drift; rho(T) and rho - pi, gathered from all
    # ranks first (collective), then drawn by rank 0.
    rho_T = _plotting.vertex_data(flow.rho)
    diff = _plotting.vertex_data(Function(Vh).interpolate(flow.rho_expr - pi))
    if _plotting.on_root():
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(15, 4.5))
        ax = fig.add_subplot(1, 3, 1)
        ax.semilogy(t, np.maximum(kl_t, 1e-16), "-", label=r"KL$(\rho\,\|\,\pi)$")
        ax.semilogy(t, l1, "--", label=r"$\|\rho-\pi\|_{L^1}$")
        ax.semilogy(t, np.maximum(np.abs(mass - mass[0]), 1e-17), ":",
                    label="|mass drift|")
        ax.set_xlabel("t")
        ax.set_title(rf"Fokker–Planck on the hemisphere chart, $\kappa = {args.kappa:g}$")
        ax.legend()
        ax2 = fig.add_subplot(1, 3, 2)
        _plotting.colorbar(fig, _plotting.plot_chart(ax2, rho_T,
                                                     title=rf"$\rho$ at t = {args.T:g}"), ax2)
        ax3 = fig.add_subplot(1, 3, 3)
        im = _plotting.plot_chart(ax3, diff, cmap="RdBu_r", title=r"$\rho - \pi$",
                                  symmetric=True)
        _plotting.colorbar(fig, im, ax3)
        _plotting.save(fig, os.path.join(args.output, "fokker_planck_chart.png"))
    PETSc.Sys.Print(f"wrote {args.output}/fokker_planck_chart.png and .pvd files")


def parse_args(argv=None):
    p = _cli.parser(__doc__)
    p.add_argument("--refinement", type=int, default=4, help="disk refinement (8*4^k cells)")
    p.add_argument("--degree", type=int, default=2, help="Lagrange degree")
    p.add_argument("--kappa", type=float, default=3.0, help="V = -kappa x_3")
    p.add_argument("--T", type=float, default=5.0, help="final time")
    p.add_argument("--dt", type=float, default=0.1, help="time step")
    p.add_argument("--stages", type=int, default=3, help="Radau IIA stages")
    p.add_argument("--cheap", action="store_true", help="quick run for the tests")
    p.add_argument("--output", default="out/fokker_planck_chart", help="output directory")
    args = _cli.parse(p, argv)   # PETSc options (-wgf_...) pass through to PETSc
    if args.cheap:
        args.refinement, args.degree, args.T, args.dt, args.stages = 2, 1, 2.0, 0.25, 2
    return args


if __name__ == "__main__":
    main(parse_args())
