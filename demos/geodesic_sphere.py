r"""A Wasserstein geodesic on the sphere.
======================================

Between two probability densities :math:`\rho_0, \rho_1` on the unit sphere
:math:`S^2`, the :math:`W_2` distance is given by the Benamou--Brenier problem

.. math::

    W_2^2(\rho_0,\rho_1) = \min\Bigl\{\int_0^1\!\!\int_{S^2}\rho_s|v_s|^2\,\mathrm{dvol}\,ds
    \ :\ \partial_s\rho_s + \operatorname{div}(\rho_s v_s) = 0\Bigr\},

whose minimiser :math:`s\mapsto\rho_s` is the displacement interpolation (the
geodesic).  :class:`~jkoflow.solvers.W2Geodesic` discretises :math:`s` with N
slices and solves the optimality system by an interior-point Newton method in
log-density variables.

The ends are two von Mises--Fisher bumps :math:`\rho_i \propto e^{\kappa\,x\cdot e_i}`
whose centres are an angle :math:`\theta` apart.  The rotation by :math:`\theta` that
maps one onto the other is a transport map, so

.. math:: W_2^2 \le \int_{S^2} d(x, R_\theta x)^2\rho_0\,\mathrm{dvol} \le \theta^2,
    \qquad \cos d(x, R_\theta x) = \cos\theta + (1-\cos\theta)(x\cdot a)^2

(:math:`a` the rotation axis); for concentrated bumps :math:`W_2 \approx \theta`.
From below, arcs are longer than chords, so :math:`W_2` exceeds the Euclidean
distance of the means, :math:`|\int x\rho_0 - \int x\rho_1|`.  We print
:math:`W_2` with this bracket and follow the centre of mass along the geodesic: its
angle should grow linearly in :math:`s`.

Output in ``out/geodesic_sphere``: ``geodesic_sphere.pvd`` (the slices as a series
in :math:`s`) and ``geodesic_sphere.png``.
"""
import math
import os
import sys
import time

import numpy as np
import ufl
from firedrake import Function, FunctionSpace, VTKFile
from firedrake.petsc import PETSc

from jkoflow.meshes import sphere
from jkoflow.solvers import W2Geodesic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _plotting  # noqa: E402


def main(args):
    os.makedirs(args.output, exist_ok=True)
    # A flat-faceted icosahedral sphere and P1 (log-)densities keep the space-time
    # system (N slices of densities and potentials) small.
    geom = sphere(args.refinement, degree=1)
    x = geom.x
    PETSc.Sys.Print(geom.describe())

    # Two von Mises--Fisher bumps: centres e0 (north pole) and e1, theta apart.
    theta = math.radians(args.angle)
    e0 = ufl.as_vector((0.0, 0.0, 1.0))
    e1 = ufl.as_vector((math.sin(theta), 0.0, math.cos(theta)))
    Vh = FunctionSpace(geom.mesh, "CG", 1)
    log0 = Function(Vh, name="log_rho0").interpolate(args.kappa * ufl.dot(x, e0))
    log1 = Function(Vh, name="log_rho1").interpolate(args.kappa * ufl.dot(x, e1))
    # Unit mass (a constant shift of the log-densities).
    for lg in (log0, log1):
        lg.assign(lg - math.log(geom.integrate(ufl.exp(lg), degree=4)))

    # Solve the discrete Benamou--Brenier problem; -geodesic_snes_monitor etc. work.
    tic = time.perf_counter()
    result = W2Geodesic(geom, args.N).solve(log_rho0=log0, log_rho1=log1)
    W2 = math.sqrt(result.cost)
    # The rotation about a = e0 x e1 (here the x2-axis) gives an upper bound.
    cos_d = ufl.min_value(math.cos(theta) + (1 - math.cos(theta)) * x[1] ** 2, 1.0)
    bound = math.sqrt(geom.integrate(ufl.acos(cos_d) ** 2 * ufl.exp(log0), degree=4))
    PETSc.Sys.Print(f"W2 geodesic, N = {args.N}: {result.snes_iterations} Newton iterations "
                    f"over {len(result.barrier_levels)} barrier levels, "
                    f"{time.perf_counter() - tic:.1f} s")
    PETSc.Sys.Print(f"W2 = {W2:.5f};  rotation bound {bound:.5f};  angle theta = {theta:.5f}")

    # The centre of mass of each slice and its angle from e0.
    s = np.linspace(0, 1, args.N + 1)
    angles = []
    vtk = VTKFile(os.path.join(args.output, "geodesic_sphere.pvd"))
    for k, rho in enumerate(result.slices):
        m = [geom.integrate(rho * x[i]) for i in range(3)]
        angles.append(math.atan2(m[0], m[2]))
        out = Function(Vh, name="density").assign(rho)
        vtk.write(out, time=float(s[k]))
    angles = np.array(angles)
    lin = np.max(np.abs(angles - (angles[0] + s * (angles[-1] - angles[0]))))
    # The Euclidean distance of the end barycentres bounds W2 from below (geodesic
    # distances exceed chords, and W2 in R^3 exceeds the distance of the means).
    m0, m1 = ([geom.integrate(ufl.exp(lg) * x[i], degree=4) for i in range(3)]
              for lg in (log0, log1))
    lower = float(np.linalg.norm(np.subtract(m0, m1)))
    PETSc.Sys.Print("centre-of-mass angle per slice: "
                    + " ".join(f"{a:.4f}" for a in angles))
    PETSc.Sys.Print(f"deviation from linear growth in s: {lin:.2e}")
    PETSc.Sys.Print(f"bracket: |mean_0 - mean_1| = {lower:.5f} <= W2 = {W2:.5f} <= rotation "
                    f"bound {bound:.5f};  end mass {result.mass:.15f}")

    # Figure: the angle against s and a few slices on the sphere, on one colour
    # scale (gathered from all ranks first, collectively; rank 0 draws).
    shown = list(range(0, args.N + 1, max(1, args.N // 4)))
    data = [_plotting.vertex_data(result.slices[k]) for k in shown]
    if _plotting.on_root():
        import matplotlib.pyplot as plt
        ncol = 1 + len(shown)
        fig = plt.figure(figsize=(3.6 * ncol + 1, 4))
        ax = fig.add_subplot(1, ncol, 1)
        ax.plot(s, angles, "o-", label="centre of mass")
        ax.plot([0, 1], [0, theta], "k:", label=r"$s\,\theta$")
        ax.set_xlabel("s")
        ax.set_ylabel("angle from $e_0$")
        ax.set_title(rf"$W_2$ = {W2:.4f}, $\theta$ = {theta:.4f}")
        ax.legend()
        vmax = max(d.values.max() for d in data)
        axes = []
        for j, (k, d) in enumerate(zip(shown, data)):
            ax3 = fig.add_subplot(1, ncol, j + 2, projection="3d")
            sm = _plotting.plot_surface(ax3, d, vmin=0, vmax=vmax, title=f"s = {s[k]:.2f}")
            ax3.view_init(elev=10, azim=-90)
            axes.append(ax3)
        _plotting.colorbar(fig, sm, axes, label=r"$\rho_s$")
        _plotting.save(fig, os.path.join(args.output, "geodesic_sphere.png"))
    PETSc.Sys.Print(f"wrote {args.output}/geodesic_sphere.png and .pvd files")


def parse_args(argv=None):
    p = _cli.parser(__doc__)
    p.add_argument("--refinement", type=int, default=3, help="icosahedral refinement level")
    p.add_argument("--kappa", type=float, default=6.0, help="concentration of the bumps")
    p.add_argument("--angle", type=float, default=60.0, help="angle between centres (deg)")
    p.add_argument("--N", type=int, default=8, help="transport-time slices")
    p.add_argument("--cheap", action="store_true", help="quick run for the tests")
    p.add_argument("--output", default="out/geodesic_sphere", help="output directory")
    args = _cli.parse(p, argv)   # PETSc options (-geodesic_...) pass through to PETSc
    if args.cheap:
        args.refinement, args.N, args.kappa = 2, 4, 4.0
    return args


if __name__ == "__main__":
    main(parse_args())
