r"""Porous medium with a potential on the sphere, by JKO, to its exact equilibrium.
===============================================================================

On the unit sphere :math:`S^2` take the energy

.. math:: J(\rho) = \int_{S^2}\frac{\rho^m}{m-1}\,\mathrm{dvol}
          + \int_{S^2} V\rho\,\mathrm{dvol}, \qquad V(x) = -c\,x_3 ,

whose Wasserstein gradient flow :math:`\partial_t\rho = \Delta_g(\rho^m) +
\operatorname{div}_g(\rho\nabla_g V)` spreads the density (porous medium) and
pulls it towards the north pole (the potential).  Solutions keep a compact support
that moves at finite speed.

**The equilibrium is known exactly.**  At fixed mass :math:`M`, :math:`J` is minimised
where :math:`\tfrac{m}{m-1}\rho^{m-1} + V` is constant on the support and at least that
constant off it:

.. math:: \rho_\infty = \Bigl(\tfrac{m-1}{m}(C - V)\Bigr)_+^{1/(m-1)} .

For :math:`m = 2` this is :math:`\rho_\infty = \tfrac12(C + c\,x_3)_+`, a linear profile on
the polar cap :math:`x_3 > -C/c`.  On the sphere, by Archimedes,
:math:`\int_{S^2} f(x_3)\,\mathrm{dvol} = 2\pi\int_{-1}^1 f(z)\,dz`.  For a cap
(:math:`C < c`) this gives

.. math:: M = \pi\int_{-C/c}^{1}(C + cz)\,dz = \frac{\pi (C+c)^2}{2c},
          \qquad C = \sqrt{2cM/\pi} - c ,

valid for :math:`M < 2\pi c`.  :math:`J(\rho_\infty)` follows from the same
one-dimensional integral.

**The JKO scheme** (:class:`~jkoflow.solvers.JKOScheme`) starts from a compactly
supported bump on the equator, :math:`\rho_0 \propto (a^2 - |x - e_1|^2)_+`, with no
floor.  Because the energy is not entropic, every step is solved with density unknowns
by the primal--dual interior point, on the curved surface (the geometry supplies
:math:`\nabla_g` and :math:`\mathrm{dvol}_g`).  The iterates decrease :math:`J`,
keep the mass and stay non-negative, and approach :math:`\rho_\infty`.  The demo prints,
per step:

* :math:`J(\rho_k) - J(\rho_\infty)`, which must stay positive and fall;
* the :math:`L^1` distance to :math:`\rho_\infty`;
* the minimum density, the mass drift, and the Newton iterations;
* the area where :math:`\rho_k` vanishes (is below :math:`10^{-4}` of its maximum),
  against the same measure of the interpolant of :math:`\rho_\infty` and the exact
  complement of the cap, :math:`2\pi(1 - C/c)`.

Output in ``out/porous_medium_sphere``: ``porous_medium_sphere.pvd`` (the iterates)
and ``porous_medium_sphere.png`` (the initial density, the last iterate,
:math:`\rho_\infty`, and the energy gap and :math:`L^1` distance against the step).
"""
import math
import os
import sys
import time

import numpy as np
import ufl
from firedrake import Function, FunctionSpace, conditional
from firedrake.petsc import PETSc

from jkoflow.meshes import sphere
from jkoflow.solvers import JKOScheme, porous_medium
from jkoflow.solvers.common import global_max

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _plotting  # noqa: E402


# The equilibrium for m = 2: the constant C from the mass, the profile as UFL, and its
# energy J = 2 pi int (rho^2 + V rho) dz over the cap, integrated exactly (a quadratic).
def equilibrium(c: float, mass: float):
    C = math.sqrt(2 * c * mass / math.pi) - c
    if not -c < C < c:
        raise ValueError(f"mass {mass} must lie in (0, 2 pi c) = (0, {2 * math.pi * c:.3f}) "
                         "for the equilibrium to be a polar cap")
    z = np.polynomial.Polynomial([0.0, 1.0])
    rho = (C + c * z) / 2
    integrand = (rho ** 2 - c * z * rho).integ()
    energy = 2 * math.pi * (integrand(1.0) - integrand(-C / c))
    return C, energy


# Where a P1 density vanishes: the area where it is below 1e-4 of its maximum (the
# interior point leaves values at the barrier's scale, 1e-8..1e-6, where the exact
# iterate is zero).  For P1 this area converges like h to the true one, so the iterates
# are compared with the same measure of the interpolant of rho_inf.
def vanishing_area(geom, rho: Function) -> float:
    return geom.integrate(conditional(rho < 1e-4 * global_max(rho), 1.0, 0.0))


def main(args):
    os.makedirs(args.output, exist_ok=True)
    c, mass = args.c, args.mass
    C, J_inf = equilibrium(c, mass)
    cap = 2 * math.pi * (1 + C / c)
    PETSc.Sys.Print(f"V = -{c:g} x3, m = 2, mass {mass:g}: equilibrium (C + c x3)_+/2 with "
                    f"C = {C:.5f}, support x3 > {-C / c:.4f} (area {cap:.4f} of 4 pi), "
                    f"J(rho_inf) = {J_inf:.6f}")

    # P1 densities on curved (quadratic) cells: the area and the metric are those of
    # the sphere up to O(h^3).
    geom = sphere(args.refinement, degree=2)
    PETSc.Sys.Print(geom.describe())
    x = geom.x
    V1 = FunctionSpace(geom.mesh, "CG", 1)
    bump = ufl.max_value(args.a ** 2 - ufl.dot(x - ufl.as_vector([1.0, 0.0, 0.0]),
                                               x - ufl.as_vector([1.0, 0.0, 0.0])), 0.0)
    rho0 = Function(V1, name="density").interpolate(bump)
    rho0.assign(rho0 * (mass / geom.integrate(rho0)))
    rho_inf = ufl.max_value(C + c * x[2], 0.0) / 2
    rho_inf_h = Function(V1, name="equilibrium").interpolate(rho_inf)

    energy = porous_medium(geom, 2.0, V=-c * x[2])
    scheme = JKOScheme(energy, rho0, args.tau, args.slices,
                       vtk=os.path.join(args.output, "porous_medium_sphere.pvd"))
    PETSc.Sys.Print(f"JKO: tau = {args.tau:g}, N = {args.slices} slices, {args.steps} steps, "
                    f"density unknowns (interior point); rho_0 = bump of chordal radius "
                    f"{args.a:g} on the equator, vanishing on {geom.integrate(conditional(rho0 > 0, 0.0, 1.0)):.3f} of the area")
    PETSc.Sys.Print("   k      t   J - J_inf   L1 to rho_inf   zero area   min rho  "
                    "mass drift  Newton")
    mass0 = scheme.mass()
    tic = time.perf_counter()
    gaps, dists, zero_area = [], [], []
    for _ in range(args.steps):
        scheme.step()
        h = scheme.history[-1]
        gaps.append(h["energy"] - J_inf)
        dists.append(geom.integrate(abs(scheme.rho_expr - rho_inf), degree=6))
        zero_area.append(vanishing_area(geom, scheme.rho))
        PETSc.Sys.Print(f"{h['k']:4d} {scheme.t:6.2f}  {gaps[-1]:.3e}   {dists[-1]:.3e}     "
                        f"{zero_area[-1]:6.3f}   {h['min_rho']:8.1e}  "
                        f"{abs(h['mass'] - mass0):9.1e}  {h['snes_iterations']:5d}")
    hist = scheme.history
    energies = np.array([h["energy"] for h in hist])
    its = [h["snes_iterations"] for h in hist[1:]]
    PETSc.Sys.Print(f"JKO: {args.steps} steps in {time.perf_counter() - tic:.1f} s, Newton "
                    f"iterations per step {its}")
    PETSc.Sys.Print(f"energy decreasing: {bool(np.all(np.diff(energies) < 0))}, "
                    f"above J(rho_inf): {bool(min(gaps) > 0)}; min density "
                    f"{min(h['min_rho'] for h in hist[1:]):.2e}; mass drift "
                    f"{max(abs(h['mass'] - mass0) for h in hist):.1e}")
    PETSc.Sys.Print(f"L1 to the equilibrium: {dists[0]:.3e} after step 1, {dists[-1]:.3e} "
                    f"after step {args.steps} (relative {dists[-1] / mass:.2e}); area where "
                    f"rho = 0: {zero_area[-1]:.3f}, against {vanishing_area(geom, rho_inf_h):.3f}"
                    f" for the interpolant of rho_inf and {4 * math.pi - cap:.3f} exactly")

    # Figure: the initial bump, the last iterate and the equilibrium on the sphere (the
    # last two on one colour scale), and the energy gap and L1 distance per step.  The fields are
    # gathered to rank 0 collectively, so the figure is the same under MPI.
    data = [_plotting.vertex_data(f) for f in
            (rho0, scheme.rho, rho_inf_h)]
    if _plotting.on_root():
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(18, 4.2))
        titles = ("initial bump", f"JKO iterate, t = {scheme.t:g}",
                  r"equilibrium $\rho_\infty$")
        # the bump on its own colour scale; the iterate and rho_inf share one
        vmax = max(float(d.values.max()) for d in data[1:])
        axes = []
        for i, (d, title) in enumerate(zip(data, titles)):
            ax = fig.add_subplot(1, 4, i + 1, projection="3d")
            ax.view_init(elev=20, azim=-30)
            mappable = _plotting.plot_surface(ax, d, title=title, vmin=0.0,
                                              vmax=None if i == 0 else vmax)
            if i == 0:
                _plotting.colorbar(fig, mappable, ax)
            axes.append(ax)
        _plotting.colorbar(fig, mappable, axes[1:])
        ax = fig.add_subplot(1, 4, 4)
        steps = np.arange(1, args.steps + 1)
        ax.semilogy(steps, gaps, "o-", ms=4, label=r"$J(\rho_k) - J(\rho_\infty)$")
        ax.semilogy(steps, dists, "s--", ms=4, mfc="none",
                    label=r"$\|\rho_k - \rho_\infty\|_{L^1}$")
        ax.set_xlabel("JKO step k")
        ax.set_title(f"approach to equilibrium (tau = {args.tau:g})")
        ax.legend(fontsize=8)
        _plotting.save(fig, os.path.join(args.output, "porous_medium_sphere.png"))
    PETSc.Sys.Print(f"wrote {args.output}/porous_medium_sphere.png and .pvd files")


def parse_args(argv=None):
    p = _cli.parser(__doc__)
    p.add_argument("--refinement", type=int, default=4,
                   help="icosahedral refinement (20*4^k cells)")
    p.add_argument("--c", type=float, default=2.0, help="strength of V = -c x3")
    p.add_argument("--mass", type=float, default=1.0, help="total mass")
    p.add_argument("--a", type=float, default=0.6,
                   help="chordal radius of the initial bump")
    p.add_argument("--tau", type=float, default=0.1, help="JKO step size")
    p.add_argument("--steps", type=int, default=30, help="JKO steps")
    p.add_argument("--slices", type=int, default=2, help="transport-time slices per step")
    p.add_argument("--cheap", action="store_true", help="quick run for the tests")
    p.add_argument("--output", default="out/porous_medium_sphere", help="output directory")
    args = _cli.parse(p, argv)   # PETSc options (-jko_...) pass through to PETSc
    if args.cheap:
        args.refinement, args.steps, args.tau = 2, 5, 0.25
    return args


if __name__ == "__main__":
    main(parse_args())
