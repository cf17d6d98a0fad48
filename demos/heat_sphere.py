r"""Heat flow on the unit sphere: Wasserstein gradient flow and JKO iterates.
============================================================================

The heat equation :math:`\partial_t\rho = \Delta_{S^2}\rho` is the Wasserstein
gradient flow of the Boltzmann entropy

.. math:: J(\rho) = \int_{S^2}\rho\log\rho\,\mathrm{dvol}.

Starting from :math:`\rho_0 = (1 + \varepsilon x_3)/(4\pi)`, the first spherical
harmonic :math:`x_3` (eigenvalue :math:`\ell(\ell+1) = 2`) decays exactly as

.. math:: \rho(t) = \frac{1 + \varepsilon e^{-2t} x_3}{4\pi},
    \qquad A(t) := \frac{4\pi\int\rho\,x_3}{\int x_3^2} = \varepsilon e^{-2t}.

We compute the flow in two ways:

* the reference solver :class:`~jkoflow.solvers.WassersteinGradientFlow` (Radau IIA in
  time, P2 on a curved sphere, log-density unknown :math:`l = \log\rho`);
* the JKO scheme :math:`\rho_{k+1} = \mathrm{argmin}\,W_2^2(\rho_k,\rho)/(2\eta) + J(\rho)`
  (:class:`~jkoflow.solvers.JKOScheme`) for a few step sizes :math:`\eta`; for this
  linear mode the JKO scheme behaves like implicit Euler,
  :math:`A_k \approx \varepsilon(1 + 2\eta)^{-k}`, i.e. first order in :math:`\eta`.

Run ``python demos/heat_sphere.py`` (``--cheap`` for a quick check, ``--help`` for the
options; PETSc options such as ``-wgf_snes_monitor`` or ``-jko_snes_monitor`` pass
through).  Output in ``out/heat_sphere``: ``heat_sphere_wgf.pvd`` (WGF density and
log-density), ``heat_sphere_jko.pvd`` (JKO iterates for the largest :math:`\eta`) and
``heat_sphere.png`` (amplitude against time and the final density).
"""
import math
import os
import sys
import time

import numpy as np
from firedrake import Function, FunctionSpace, assemble
from firedrake.petsc import PETSc

from jkoflow.meshes import sphere
from jkoflow.solvers import (JKOScheme, TimeSeries, VTKOutput, WassersteinGradientFlow,
                             entropy)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _plotting  # noqa: E402


def amplitude(geom, rho, dx):
    r"""The :math:`x_3`-mode amplitude :math:`4\pi\int\rho x_3/\int x_3^2` (exact: :math:`\varepsilon e^{-2t}`)."""
    x3 = geom.x[2]
    return 4 * math.pi * float(assemble(rho * x3 * dx)) / float(assemble(x3 ** 2 * dx))


def run_wgf(args):
    """The reference flow: P2 on a curved (degree-2) icosahedral sphere, log form."""
    # A curved sphere keeps the geometric error O(h^4), far below the P2 error.
    geom = sphere(args.refinement, degree=2)
    x3 = geom.x[2]
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate(
        (1 + args.eps * x3) / (4 * math.pi))
    # Entropic energy: the log form (the default for entropies) keeps rho > 0 by
    # construction and conserves mass exactly.
    flow = WassersteinGradientFlow(entropy(geom), rho0, args.dt, stages=args.stages)
    PETSc.Sys.Print(flow.describe())
    # Observers: a time series of energy, mass and the mode amplitude, and VTK output.
    series = flow.add_observer(TimeSeries({
        "energy": lambda s: s.energy_value(), "mass": lambda s: s.mass(),
        "amplitude": lambda s: amplitude(geom, s.rho_expr, s.dx)}))
    flow.add_observer(VTKOutput(os.path.join(args.output, "heat_sphere_wgf.pvd")))
    flow.advance_to(args.T)
    return flow, series


def run_jko(args, eta, vtk=None):
    """JKO iterates of step ``eta`` (P1 on a flat-faceted sphere, N slices per step)."""
    # The JKO step solves a space-time saddle-point problem with N slices: P1 keeps it
    # small.  Its unknowns are log-densities, so rho0 must be strictly positive.
    geom = sphere(args.refinement, degree=1)
    x3 = geom.x[2]
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate(
        (1 + args.eps * x3) / (4 * math.pi))
    scheme = JKOScheme(entropy(geom), rho0, eta, args.N, vtk=vtk)
    amps = [amplitude(geom, scheme.jko.density(scheme.state), scheme.jko.dx)]
    while scheme.t < args.T - 1e-12:
        scheme.step(min(eta, args.T - scheme.t))
        amps.append(amplitude(geom, scheme.jko.density(scheme.state), scheme.jko.dx))
    t = np.array([h["t"] for h in scheme.history])
    return scheme, t, np.array(amps)


def main(args):
    os.makedirs(args.output, exist_ok=True)
    exact = lambda t: args.eps * np.exp(-2 * np.asarray(t))  # noqa: E731
    tic = time.perf_counter()
    flow, series = run_wgf(args)
    steps, newton, _ = flow.solver_stats()
    t, amp, mass, energy = series["t"], series["amplitude"], series["mass"], series["energy"]
    PETSc.Sys.Print(f"WGF: {steps} steps, {newton} Newton iterations, "
                    f"{time.perf_counter() - tic:.1f} s")
    PETSc.Sys.Print(f"WGF: A(T) = {amp[-1]:.6e}, exact {exact(args.T):.6e}, "
                    f"relative error {abs(amp[-1] / exact(args.T) - 1):.2e}")
    PETSc.Sys.Print(f"WGF: mass drift {np.max(np.abs(mass - mass[0])):.2e}, "
                    f"energy decreasing: {bool(np.all(np.diff(energy) <= 1e-14))}")

    # The JKO scheme for each eta: first order in eta, like implicit Euler for this mode.
    jko = {}
    for i, eta in enumerate(args.eta):
        tic = time.perf_counter()
        vtk = os.path.join(args.output, "heat_sphere_jko.pvd") if i == 0 else None
        scheme, tk, ak = run_jko(args, eta, vtk)
        jko[eta] = (tk, ak)
        h = scheme.history
        ie = args.eps * (1 + 2 * eta) ** -(len(ak) - 1)
        PETSc.Sys.Print(
            f"JKO eta = {eta:g}: A(T) = {ak[-1]:.6e} (exact {exact(tk[-1]):.6e}, implicit "
            f"Euler {ie:.6e}), |A - exact| = {abs(ak[-1] - exact(tk[-1])):.2e}, "
            f"mass drift {max(abs(x['mass'] - h[0]['mass']) for x in h):.1e}, "
            f"Newton its {scheme.solver_stats()[1]}, {time.perf_counter() - tic:.1f} s")

    # Observed order in eta of the JKO error at T (1 for a first-order scheme).
    etas = sorted(jko, reverse=True)
    errs = [abs(jko[e][1][-1] - exact(jko[e][0][-1])) for e in etas]
    for (e1, a), (e2, b) in zip(zip(etas, errs), zip(etas[1:], errs[1:])):
        PETSc.Sys.Print(f"JKO error order between eta = {e1:g} and {e2:g}: "
                        f"{math.log(a / b) / math.log(e1 / e2):.2f}")

    # Rank 0 draws the figure: amplitudes are global numbers; the density snapshot is
    # gathered from all ranks first (collective), so the figure is the same in parallel.
    rho_T = _plotting.vertex_data(flow.rho)
    if _plotting.on_root():
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(11, 4.5))
        ax = fig.add_subplot(1, 2, 1)
        tt = np.linspace(0, args.T, 200)
        ax.semilogy(tt, exact(tt), "k-", label=r"exact $\varepsilon e^{-2t}$")
        ax.semilogy(t, amp, "o", ms=3, mfc="none", label="WGF (Radau IIA, P2)")
        for eta, (tk, ak) in jko.items():
            ax.semilogy(tk, ak, "s--", ms=4, label=rf"JKO $\eta={eta:g}$")
        ax.set_xlabel("t")
        ax.set_ylabel(r"$x_3$-mode amplitude $A(t)$")
        ax.set_title("Heat flow on $S^2$")
        ax.legend()
        ax3 = fig.add_subplot(1, 2, 2, projection="3d")
        sm = _plotting.plot_surface(ax3, rho_T, title=f"WGF density at t = {args.T:g}")
        _plotting.colorbar(fig, sm, ax3)
        _plotting.save(fig, os.path.join(args.output, "heat_sphere.png"))
    PETSc.Sys.Print(f"wrote {args.output}/heat_sphere.png and .pvd files")


def parse_args(argv=None):
    p = _cli.parser(__doc__)
    p.add_argument("--refinement", type=int, default=3, help="icosahedral refinement level")
    p.add_argument("--eps", type=float, default=0.5, help="initial mode amplitude")
    p.add_argument("--T", type=float, default=1.0, help="final time")
    p.add_argument("--dt", type=float, default=0.05, help="WGF time step")
    p.add_argument("--stages", type=int, default=3, help="Radau IIA stages")
    p.add_argument("--eta", type=float, nargs="+", default=[0.2, 0.1, 0.05],
                   help="JKO step sizes")
    p.add_argument("--N", type=int, default=4, help="slices per JKO step")
    p.add_argument("--cheap", action="store_true",
                   help="quick run for the tests (coarse mesh, few steps)")
    p.add_argument("--output", default="out/heat_sphere", help="output directory")
    # PETSc options (-wgf_..., -jko_...) are read by PETSc itself; others are errors.
    args = _cli.parse(p, argv)
    if args.cheap:
        args.refinement, args.T, args.dt, args.stages = 2, 0.4, 0.1, 2
        args.eta, args.N = [0.2, 0.1], 2
    return args


if __name__ == "__main__":
    main(parse_args())
