r"""The porous medium equation on a disk: the Barenblatt profile.
=================================================================

The porous medium equation :math:`\partial_t\rho = \Delta(\rho^m)` is the Wasserstein
gradient flow of

.. math:: J(\rho) = \int_\Omega \frac{\rho^m}{m-1}\,dx, \qquad m > 1 .

Its solutions have compact support that spreads at finite speed.  In
:math:`\mathbb{R}^d` the self-similar Barenblatt solution is

.. math::

    \rho(t, x) = t^{-\alpha}\bigl(C - k|x|^2 t^{-2\alpha/d}\bigr)_+^{1/(m-1)},
    \qquad \alpha = \frac{d}{d(m-1)+2},\quad k = \frac{\alpha(m-1)}{2md},

(for :math:`m = 2`, :math:`d = 2`: :math:`\alpha = 1/2`, :math:`k = 1/16`, support
radius :math:`\sqrt{16Ct}`).  We start from it at :math:`t_0 = 1` on the disk
:math:`|x| < 1.5`, whose boundary the support does not reach before :math:`T`, so the
no-flux disk problem has the same exact solution.

The density vanishes on an open set, so neither the log form nor a plain density form
is appropriate: :class:`~jkoflow.solvers.WassersteinGradientFlow` with
``form="bounded"`` imposes :math:`\rho \ge 0` on every Runge--Kutta stage (a
variational inequality) and restores the mass.  Printed: the :math:`L^2` and
:math:`L^1` errors against the exact profile at :math:`T`, the minimum density, the
mass drift and the energy decay.

Output in ``out/porous_medium_disk``: ``porous_medium_disk.pvd`` and
``porous_medium_disk.png`` (energy against the exact energy, the radial profile
and the density).
"""
import math
import os
import sys
import time

import numpy as np
import ufl
from firedrake import Function, FunctionSpace
from firedrake.petsc import PETSc

from jkoflow.meshes import disk
from jkoflow.solvers import TimeSeries, VTKOutput, WassersteinGradientFlow, porous_medium

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _plotting  # noqa: E402


def barenblatt(x, t, C, m=2.0, d=2):
    """The Barenblatt profile as a UFL expression of the coordinates ``x``."""
    alpha = d / (d * (m - 1) + 2)
    k = alpha * (m - 1) / (2 * m * d)
    r2 = ufl.inner(x, x)
    return t ** (-alpha) * ufl.max_value(C - k * r2 * t ** (-2 * alpha / d), 0) ** (1 / (m - 1))


def main(args):
    os.makedirs(args.output, exist_ok=True)
    m, C = args.m, args.C
    alpha = 2 / (2 * (m - 1) + 2)
    k = alpha * (m - 1) / (2 * m * 2)
    front = math.sqrt(C / k * args.T ** alpha)
    if front >= args.radius:
        raise ValueError(f"the support (radius {front:.3f} at T) must stay inside the disk "
                         f"of radius {args.radius}: lower T or C")

    # The disk mesh (a square mapped radially); P1 suits the Lipschitz profile.
    geom = disk(args.refinement, radius=args.radius)
    x = geom.x
    PETSc.Sys.Print(geom.describe())
    rho0 = Function(FunctionSpace(geom.mesh, "CG", args.degree), name="density")
    rho0.interpolate(barenblatt(x, args.t0, C, m))

    # The bounded formulation: rho >= 0 on each stage, mass restored after each step.
    tic = time.perf_counter()
    flow = WassersteinGradientFlow(porous_medium(geom, m), rho0, args.dt, t0=args.t0,
                                   form="bounded", stages=args.stages)
    PETSc.Sys.Print(flow.describe())
    series = flow.add_observer(TimeSeries({
        "energy": lambda s: s.energy_value(), "mass": lambda s: s.mass(),
        "exact_energy": lambda s: geom.integrate(
            barenblatt(x, s.t, C, m) ** m / (m - 1), degree=6)}))
    flow.add_observer(VTKOutput(os.path.join(args.output, "porous_medium_disk.pvd")))
    flow.advance_to(args.T)
    steps, newton, _ = flow.solver_stats()
    PETSc.Sys.Print(f"WGF: {steps} steps, {newton} Newton iterations, "
                    f"{time.perf_counter() - tic:.1f} s")

    # Errors against the exact Barenblatt profile at T.
    exact_T = barenblatt(x, args.T, C, m)
    err2 = math.sqrt(geom.integrate((flow.rho - exact_T) ** 2, degree=6))
    nrm2 = math.sqrt(geom.integrate(exact_T ** 2, degree=6))
    err1 = geom.integrate(abs(flow.rho - exact_T), degree=6)
    t, energy, mass = series["t"], series["energy"], series["mass"]
    corr = np.abs(flow.mass_corrections)
    PETSc.Sys.Print(f"Barenblatt at T = {args.T:g}: L2 error {err2:.3e} (relative "
                    f"{err2 / nrm2:.2e}), L1 error {err1:.3e}, support radius {front:.3f}")
    PETSc.Sys.Print(f"min density {flow.min_density:.2e}, mass drift "
                    f"{np.max(np.abs(mass - mass[0])):.1e} (max bound-induced mass "
                    f"correction per step {corr.max():.1e}), energy decreasing: "
                    f"{bool(np.all(np.diff(energy) <= 1e-14))}")

    # Figure: energy against the exact one, the radial profile and the density (the
    # density is gathered from all ranks first, collectively; rank 0 draws).
    rho_T = _plotting.vertex_data(flow.rho)
    if _plotting.on_root():
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(15, 4.5))
        ax = fig.add_subplot(1, 3, 1)
        ax.plot(t, series["exact_energy"], "k-", label="exact (Barenblatt)")
        ax.plot(t, energy, "o", ms=3, mfc="none", label="WGF, bounded form")
        ax.set_xlabel("t")
        ax.set_ylabel(r"$J(\rho) = \int\rho^m/(m-1)$")
        ax.set_title(f"Porous medium, m = {m:g}")
        ax.legend()
        r = np.linalg.norm(rho_T.X, axis=1)
        rr = np.linspace(0, args.radius, 400)
        ex = args.T ** -alpha * np.maximum(C - k * rr ** 2 * args.T ** (-alpha), 0) ** (1 / (m - 1))
        ax2 = fig.add_subplot(1, 3, 2)
        ax2.plot(r, rho_T.values, ".", ms=2, label=f"WGF nodes, t = {args.T:g}")
        ax2.plot(rr, ex, "k-", lw=1, label="exact")
        ax2.set_xlabel("|x|")
        ax2.set_ylabel(r"$\rho$")
        ax2.set_title("radial profile")
        ax2.legend()
        ax3 = fig.add_subplot(1, 3, 3)
        _plotting.colorbar(fig, _plotting.plot_chart(ax3, rho_T,
                                                     title=rf"$\rho$ at t = {args.T:g}"), ax3)
        _plotting.save(fig, os.path.join(args.output, "porous_medium_disk.png"))
    PETSc.Sys.Print(f"wrote {args.output}/porous_medium_disk.png and .pvd files")


def parse_args(argv=None):
    p = _cli.parser(__doc__)
    p.add_argument("--refinement", type=int, default=5, help="disk refinement (8*4^k cells)")
    p.add_argument("--radius", type=float, default=1.5, help="disk radius")
    p.add_argument("--degree", type=int, default=1, help="Lagrange degree")
    p.add_argument("--m", type=float, default=2.0, help="porous medium exponent")
    p.add_argument("--C", type=float, default=0.05, help="Barenblatt constant")
    p.add_argument("--t0", type=float, default=1.0, help="initial time")
    p.add_argument("--T", type=float, default=2.0, help="final time")
    p.add_argument("--dt", type=float, default=0.025, help="time step")
    p.add_argument("--stages", type=int, default=2, help="Radau IIA stages")
    p.add_argument("--cheap", action="store_true", help="quick run for the tests")
    p.add_argument("--output", default="out/porous_medium_disk", help="output directory")
    args = _cli.parse(p, argv)   # PETSc options (-wgf_...) pass through to PETSc
    if args.cheap:
        args.refinement, args.T, args.dt = 3, 1.5, 0.1
    return args


if __name__ == "__main__":
    main(parse_args())
