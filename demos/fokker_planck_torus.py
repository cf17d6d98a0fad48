r"""Fokker--Planck on a torus: relaxation to a Gibbs density.
============================================================

On the torus of revolution :math:`M\subset\mathbb{R}^3` (radii :math:`R = 1`,
:math:`r = 0.4`) we follow the Wasserstein gradient flow of the relative entropy
(Kullback--Leibler divergence) to :math:`\pi = e^{-V}/Z`,

.. math::

    J(\rho) = \int_M \rho\log\rho + V\rho\,\mathrm{dvol}, \qquad
    \partial_t\rho = \Delta_M\rho + \operatorname{div}_M(\rho\nabla_M V),

with the tilt :math:`V(x) = -\kappa\,x_1` (mass drifts towards the outer rim on the
:math:`x_1 > 0` side).  For a probability density, :math:`J(\rho) - J(\pi) =
\mathrm{KL}(\rho\,\|\,\pi) \ge 0` with :math:`J(\pi) = -\log Z`, and along the flow

.. math:: \frac{d}{dt}\mathrm{KL}(\rho\,\|\,\pi) = -\int_M\rho\,|\nabla_M\log(\rho/\pi)|^2\,\mathrm{dvol},

which decays exponentially (a log-Sobolev inequality holds on a compact manifold).

We run the reference solver (:class:`~jkoflow.solvers.WassersteinGradientFlow`, log
form) to near equilibrium, and JKO iterates (:class:`~jkoflow.solvers.JKOScheme`) at
one step size :math:`\eta` for comparison.  Printed: KL at the final time, the
:math:`L^1` distance to :math:`\pi`, the observed exponential decay rate, mass drift.
The JKO iterates (P1, first order in :math:`\eta`) decay more slowly per unit time
and level off at the distance between their own discrete equilibrium and :math:`\pi`
(a spatial discretisation error, ~1e-3 in KL on the default mesh).

Output in ``out/fokker_planck_torus``: ``fokker_planck_torus_wgf.pvd``,
``fokker_planck_torus_jko.pvd`` and ``fokker_planck_torus.png``.
"""
import math
import os
import sys
import time

import numpy as np
import ufl
from firedrake import Function, FunctionSpace
from firedrake.petsc import PETSc

from jkoflow.meshes import torus
from jkoflow.solvers import JKOScheme, TimeSeries, VTKOutput, WassersteinGradientFlow, kl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _plotting  # noqa: E402


def main(args):
    os.makedirs(args.output, exist_ok=True)
    # The torus with curved (degree-2) cells; one geometry serves both solvers.
    geom = torus(args.n_major, args.n_minor, 1.0, 0.4)
    x = geom.x
    V = -args.kappa * x[0]
    energy = kl(geom, V)
    PETSc.Sys.Print(geom.describe())

    # The equilibrium pi = exp(-V)/Z with the discrete normalisation, so that
    # KL(rho || pi) = J(rho) + log Z is exactly zero at pi.
    Z = geom.integrate(ufl.exp(-V), degree=8)
    log_Z = math.log(Z)
    pi = ufl.exp(-V) / Z

    # A smooth, strictly positive start far from equilibrium (tilted along x_2),
    # normalised to a probability density.
    Vh = FunctionSpace(geom.mesh, "CG", args.degree)
    rho0 = Function(Vh).interpolate(1 + 0.5 * x[1])
    geom.normalise(rho0)

    # The reference flow: log-density unknown, Radau IIA.
    tic = time.perf_counter()
    flow = WassersteinGradientFlow(energy, rho0, args.dt, stages=args.stages, mass=1.0)
    PETSc.Sys.Print(flow.describe())
    series = flow.add_observer(TimeSeries({
        "kl": lambda s: s.energy_value() + log_Z, "mass": lambda s: s.mass()}))
    flow.add_observer(VTKOutput(os.path.join(args.output, "fokker_planck_torus_wgf.pvd")))
    flow.advance_to(args.T)
    t, kl_wgf, mass = series["t"], series["kl"], series["mass"]
    l1 = geom.integrate(abs(flow.rho_expr - pi), degree=8)
    # Rate from the last half of the run: KL ~ exp(-lambda t).
    half = t >= t[-1] / 2
    rate = -np.polyfit(t[half], np.log(kl_wgf[half]), 1)[0]
    PETSc.Sys.Print(f"WGF: {flow.solver_stats()[0]} steps, {time.perf_counter() - tic:.1f} s")
    PETSc.Sys.Print(f"WGF: KL(rho_0 || pi) = {kl_wgf[0]:.4e} -> KL(rho_T || pi) = "
                    f"{kl_wgf[-1]:.3e} at T = {args.T:g}; decay rate ~ {rate:.3f}")
    PETSc.Sys.Print(f"WGF: ||rho_T - pi||_L1 = {l1:.3e}, mass drift "
                    f"{np.max(np.abs(mass - mass[0])):.1e}, KL decreasing: "
                    f"{bool(np.all(np.diff(kl_wgf) <= 1e-13))}")

    # JKO iterates at one step size, on a P1 copy of the same start (log unknowns).
    tic = time.perf_counter()
    rho0_1 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate(1 + 0.5 * x[1])
    geom.normalise(rho0_1)
    scheme = JKOScheme(energy, rho0_1, args.eta, args.N,
                       vtk=os.path.join(args.output, "fokker_planck_torus_jko.pvd"))
    scheme.advance_to(args.T)
    h = scheme.history
    tk = np.array([e["t"] for e in h])
    kl_jko = np.array([e["energy"] for e in h]) + log_Z
    PETSc.Sys.Print(f"JKO eta = {args.eta:g}: {len(h) - 1} steps, KL(rho_T || pi) = "
                    f"{kl_jko[-1]:.3e}, mass drift "
                    f"{max(abs(e['mass'] - h[0]['mass']) for e in h):.1e}, KL decreasing: "
                    f"{bool(np.all(np.diff(kl_jko) < 0))}, {time.perf_counter() - tic:.1f} s")

    # Figure: KL against time, rho(T) and pi on the torus on one colour scale (the
    # fields are gathered from all ranks first, collectively; rank 0 draws).
    pi_h = Function(Vh).interpolate(pi)
    fields = [(_plotting.vertex_data(flow.rho), rf"WGF $\rho$ at t = {args.T:g}"),
              (_plotting.vertex_data(pi_h), r"equilibrium $\pi = e^{-V}/Z$")]
    if _plotting.on_root():
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(15, 4.5))
        ax = fig.add_subplot(1, 3, 1)
        ax.semilogy(t, kl_wgf, "-", label="WGF (Radau IIA)")
        ax.semilogy(tk, kl_jko, "s--", ms=4, label=rf"JKO $\eta={args.eta:g}$")
        ax.set_xlabel("t")
        ax.set_ylabel(r"KL$(\rho_t\,\|\,\pi)$")
        ax.set_title(rf"Fokker–Planck on a torus, $V=-{args.kappa:g}x_1$")
        ax.legend()
        vmin = min(d.values.min() for d, _ in fields)
        vmax = max(d.values.max() for d, _ in fields)
        axes = []
        for i, (d, title) in enumerate(fields):
            ax3 = fig.add_subplot(1, 3, i + 2, projection="3d")
            sm = _plotting.plot_surface(ax3, d, title=title, vmin=vmin, vmax=vmax)
            ax3.view_init(elev=45, azim=-60)
            axes.append(ax3)
        _plotting.colorbar(fig, sm, axes)
        _plotting.save(fig, os.path.join(args.output, "fokker_planck_torus.png"))
    PETSc.Sys.Print(f"wrote {args.output}/fokker_planck_torus.png and .pvd files")


def parse_args(argv=None):
    p = _cli.parser(__doc__)
    p.add_argument("--n-major", type=int, default=32, help="cells around the core circle")
    p.add_argument("--n-minor", type=int, default=16, help="cells around the tube")
    p.add_argument("--degree", type=int, default=2, help="WGF Lagrange degree")
    p.add_argument("--kappa", type=float, default=2.0, help="tilt of V = -kappa x_1")
    p.add_argument("--T", type=float, default=4.0, help="final time")
    p.add_argument("--dt", type=float, default=0.1, help="WGF time step")
    p.add_argument("--stages", type=int, default=3, help="Radau IIA stages")
    p.add_argument("--eta", type=float, default=0.25, help="JKO step size")
    p.add_argument("--N", type=int, default=4, help="slices per JKO step")
    p.add_argument("--cheap", action="store_true", help="quick run for the tests")
    p.add_argument("--output", default="out/fokker_planck_torus", help="output directory")
    args = _cli.parse(p, argv)   # PETSc options (-wgf_..., -jko_...) pass through
    if args.cheap:
        args.n_major, args.n_minor, args.degree = 16, 8, 1
        args.T, args.dt, args.stages, args.eta, args.N = 1.5, 0.25, 2, 0.5, 2
    return args


if __name__ == "__main__":
    main(parse_args())
