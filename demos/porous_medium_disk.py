r"""The porous medium equation on a disk: the Barenblatt profile, by WGF and by JKO.
====================================================================================

The porous medium equation :math:`\partial_t\rho = \Delta(\rho^m)` is the Wasserstein
gradient flow of

.. math:: J(\rho) = \int_\Omega \frac{\rho^m}{m-1}\,dx, \qquad m > 1 .

Its solutions have compact support that spreads at finite speed.  In
:math:`\mathbb{R}^d` the self-similar Barenblatt solution is

.. math::

    B(t, x) = t^{-\alpha}\bigl(C - k|x|^2 t^{-2\beta}\bigr)_+^{1/(m-1)},
    \qquad \alpha = \frac{d}{d(m-1)+2},\quad \beta = \frac{\alpha}{d},\quad
    k = \frac{\alpha(m-1)}{2md},

(for :math:`m = 2`, :math:`d = 2`: :math:`\alpha = 1/2`, :math:`k = 1/16`, support
radius :math:`\sqrt{16Ct}`).  We start from it at :math:`t_0 = 1` on the disk
:math:`|x| < 1.5`, whose boundary the support does not reach before :math:`T`, so the
no-flux disk problem has the same exact solution.

The density vanishes on an open set, and the demo solves the problem twice.

**The gradient flow** (``--method wgf``).
:class:`~jkoflow.solvers.WassersteinGradientFlow` with ``form="bounded"`` imposes
:math:`\rho \ge 0` on every Runge--Kutta stage (a variational inequality) and
restores the mass; it is compared with :math:`B(T)`.

**The JKO scheme** (``--method jko``).  :class:`~jkoflow.solvers.JKOScheme` iterates

.. math:: \rho_{k+1} = \operatorname*{argmin}_\rho\
          \frac{W_2^2(\rho_k, \rho)}{2\tau} + J(\rho),

from the compactly supported :math:`\rho_0 = B(t_0)` itself (no floor): for this
non-entropic energy every step is solved with density unknowns by the primal--dual
interior point.  The scheme is only first-order accurate in time, but its iterates
are known exactly, which lets the demo measure the solver's error alone:

* *the optimal map between two Barenblatt profiles is a dilation.*  Changing
  :math:`x = \lambda y` shows that :math:`B(s)` is :math:`B(s')` dilated by
  :math:`\lambda = (s/s')^\beta` (same mass, support radius proportional to
  :math:`s^\beta`), and :math:`y \mapsto \lambda y` is the gradient of the convex
  :math:`\lambda|y|^2/2`, hence the optimal transport map (Brenier);
* *so a step restricted to the family is a scalar problem.*  With
  :math:`M_2(s) = \int|y|^2B(s) = s^{2\beta}M_2(1)` and
  :math:`J(B(s)) = s^{-\alpha(m-1)}J(B(1))` (substitute :math:`y = s^\beta z` and use
  :math:`d\beta = \alpha`), the objective along the family is
  :math:`(s^\beta - s_k^\beta)^2 M_2(1)/(2\tau) + s^{-\alpha(m-1)}J(B(1))`;
* *its minimiser is the step itself.*  The step's optimality condition asks the
  map from :math:`\rho_{k+1}` back to :math:`\rho_k` to be
  :math:`y \mapsto y + \tau\nabla U'(\rho_{k+1})` with :math:`U(\rho) =
  \rho^m/(m-1)`.  On the support of :math:`B(s)`,
  :math:`\nabla U'(B(s)) = -\beta y/s` (because :math:`2mk/(m-1) = \beta` and
  :math:`\alpha(m-1) + 2\beta = 1`), a dilation by :math:`1 - \beta\tau/s`.  Matching
  it with :math:`(s_k/s_{k+1})^\beta` gives the recursion

  .. math:: \Bigl(\frac{s_k}{s_{k+1}}\Bigr)^\beta = 1 - \frac{\beta\tau}{s_{k+1}},
            \qquad s_0 = t_0,

  whose root is the stationary point of the scalar objective; the step has a unique
  minimiser (:math:`J` is displacement convex), so :math:`\rho_k = B(s_k)` exactly.

Expanding the recursion, :math:`s_{k+1} = s_k + \tau - O(\tau^2/s_k) < s_k + \tau`:
the JKO iterates lag the flow, :math:`B(s_k) \ne B(t_0 + k\tau)`, by the scheme's
first-order time error.  The JKO iterate at step :math:`k` is therefore compared with
:math:`B(s_k)`; the error against :math:`B(t_0 + k\tau)` is printed alongside for
contrast.

Printed: for the WGF the :math:`L^2` and :math:`L^1` errors against :math:`B(T)`; for
the JKO scheme, per step, the :math:`L^1` errors against :math:`B(s_k)` (and
:math:`B(t_0 + k\tau)`), the minimum density, the mass drift, the Newton iterations
and the energy against :math:`J(B(s_k))`; for both the minimum density, mass drift
and whether the energy decreases.

Output in ``out/porous_medium_disk``: ``porous_medium_disk.pvd`` (WGF),
``porous_medium_disk_jko.pvd`` (JKO iterates) and ``porous_medium_disk.png`` (one
row per method: energy against the exact energy, radial profile, density, and the
pointwise error of the WGF or the JKO's Newton iterations and errors per step).
"""
import math
import os
import sys
import time

import numpy as np
from firedrake import Function, FunctionSpace
from firedrake.petsc import PETSc

from jkoflow.meshes import disk
from jkoflow.solvers import (JKOScheme, TimeSeries, VTKOutput, WassersteinGradientFlow,
                             barenblatt, barenblatt_constants, barenblatt_jko_time,
                             porous_medium)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _plotting  # noqa: E402

METHODS = ("wgf", "jko", "both")


# The exact solution: jkoflow.solvers.exact gives the profile as UFL (for the errors)
# and the exact JKO times s_k; the radial plots need it in numpy too.
def barenblatt_radial(r, t, C, m=2.0, d=2):
    """The Barenblatt profile at radii ``r`` (numpy)."""
    alpha, beta, k = barenblatt_constants(m, d)
    return t ** -alpha * np.maximum(C - k * r ** 2 * t ** (-2 * beta), 0) ** (1 / (m - 1))


# The gradient flow: the bounded formulation keeps the density non-negative on each
# Runge-Kutta stage and restores the mass after each step; it is compared with the
# Barenblatt profile at the final time T.
def run_wgf(geom, rho0, args):
    m, C, x = args.m, args.C, geom.x
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
    energy, mass = series["energy"], series["mass"]
    corr = np.abs(flow.mass_corrections)
    PETSc.Sys.Print(f"WGF, Barenblatt at T = {args.T:g}: L2 error {err2:.3e} (relative "
                    f"{err2 / nrm2:.2e}), L1 error {err1:.3e}")
    PETSc.Sys.Print(f"WGF: min density {flow.min_density:.2e}, mass drift "
                    f"{np.max(np.abs(mass - mass[0])):.1e} (max bound-induced mass "
                    f"correction per step {corr.max():.1e}), energy decreasing: "
                    f"{bool(np.all(np.diff(energy) <= 1e-14))}")
    error = Function(rho0.function_space(), name="error").interpolate(flow.rho - exact_T)
    return {"label": "WGF, bounded form", "t": series["t"], "energy": energy,
            "exact_energy": series["exact_energy"], "time": args.T, "exact_time": args.T,
            "rho": _plotting.vertex_data(flow.rho), "error": _plotting.vertex_data(error)}


# The JKO scheme from the initial Barenblatt profile itself, zero outside its support.
# The scheme picks density unknowns for this energy; every step is one Newton solve
# of the discrete Benamou-Brenier problem with a few transport-time slices, driven by
# the interior point.  After each step the exact JKO time is advanced by the
# recursion, and the iterate is compared with the Barenblatt profile at that time.
def run_jko(geom, rho0, args):
    m, C, x = args.m, args.C, geom.x
    tic = time.perf_counter()
    energy = porous_medium(geom, m)
    scheme = JKOScheme(energy, rho0, args.tau, args.slices, t0=args.t0,
                       vtk=os.path.join(args.output, "porous_medium_disk_jko.pvd"))
    s = [args.t0]
    err_s, err_t = [], []
    PETSc.Sys.Print(f"JKO: tau = {args.tau:g}, N = {args.slices} slices, {args.steps} steps "
                    "from B(t0), density unknowns (interior point)")
    PETSc.Sys.Print("   k      t_k      s_k   L1 vs B(s_k)  L1 vs B(t_k)   min rho  "
                    "mass drift  Newton   J(rho_k)    J(B(s_k))")
    mass0 = scheme.mass()
    exact_energy = [geom.integrate(barenblatt(x, args.t0, C, m) ** m / (m - 1), degree=6)]
    for _ in range(args.steps):
        scheme.step()
        s.append(barenblatt_jko_time(s[-1], args.tau, m, 2))
        h = scheme.history[-1]
        err_s.append(geom.integrate(abs(scheme.rho_expr - barenblatt(x, s[-1], C, m)),
                                    degree=6))
        err_t.append(geom.integrate(abs(scheme.rho_expr - barenblatt(x, scheme.t, C, m)),
                                    degree=6))
        exact_energy.append(geom.integrate(barenblatt(x, s[-1], C, m) ** m / (m - 1),
                                           degree=6))
        PETSc.Sys.Print(f"{h['k']:4d} {scheme.t:8.4f} {s[-1]:8.4f}   {err_s[-1]:.3e}"
                        f"     {err_t[-1]:.3e}   {h['min_rho']:8.1e}  "
                        f"{abs(h['mass'] - mass0):9.1e}  {h['snes_iterations']:5d}   "
                        f"{h['energy']:.5e}  {exact_energy[-1]:.5e}")
    hist = scheme.history
    energy_k = np.array([h["energy"] for h in hist])
    its = [h["snes_iterations"] for h in hist[1:]]
    PETSc.Sys.Print(f"JKO: {args.steps} steps, Newton iterations per step {its}, "
                    f"{time.perf_counter() - tic:.1f} s")
    PETSc.Sys.Print(f"JKO, exact iterate B(s_K), s_K = {s[-1]:.4f}: L1 error {err_s[-1]:.3e} "
                    f"(relative {err_s[-1] / mass0:.2e}); against B(t0 + K tau) "
                    f"{err_t[-1]:.3e}")
    PETSc.Sys.Print(f"JKO: min density of the iterates {min(h['min_rho'] for h in hist[1:]):.2e}"
                    f" (the interior point keeps them positive), mass drift "
                    f"{max(abs(h['mass'] - mass0) for h in hist):.1e}, energy decreasing: "
                    f"{bool(np.all(np.diff(energy_k) < 0))}")
    return {"label": f"JKO, tau = {args.tau:g}", "t": np.array([h["t"] for h in hist]),
            "s": np.array(s), "energy": energy_k, "exact_energy": np.array(exact_energy),
            "time": scheme.t, "exact_time": s[-1], "its": its, "err_s": err_s,
            "err_t": err_t, "rho": _plotting.vertex_data(scheme.rho)}


def main(args):
    os.makedirs(args.output, exist_ok=True)
    m, C = args.m, args.C
    alpha, beta, k = barenblatt_constants(m, 2)
    T_max = max(args.T, args.t0 + args.steps * args.tau) if args.method != "wgf" else args.T
    front = math.sqrt(C / k) * T_max ** beta
    if front >= args.radius:
        raise ValueError(f"the support (radius {front:.3f} at t = {T_max:g}) must stay inside "
                         f"the disk of radius {args.radius}: lower T, tau*steps or C")

    # The disk mesh (a square mapped radially); P1 suits the Lipschitz profile.
    geom = disk(args.refinement, radius=args.radius)
    PETSc.Sys.Print(geom.describe())
    rho0 = Function(FunctionSpace(geom.mesh, "CG", args.degree), name="density")
    rho0.interpolate(barenblatt(geom.x, args.t0, C, m))
    PETSc.Sys.Print(f"Barenblatt m = {m:g}, C = {C:g} from t0 = {args.t0:g}: support radius "
                    f"{math.sqrt(C / k) * args.t0 ** beta:.3f}, {front:.3f} at t = {T_max:g}")

    rows = []
    if args.method in ("wgf", "both"):
        rows.append(("wgf", run_wgf(geom, rho0, args)))
    if args.method in ("jko", "both"):
        rows.append(("jko", run_jko(geom, rho0, args)))

    # Figure, one row per method: energy against the exact one, the radial profile,
    # the density, and the WGF's pointwise error or the JKO's Newton iterations and
    # errors per step.  The fields were gathered from all ranks (collectively) by
    # ``vertex_data``; rank 0 draws.
    if _plotting.on_root():
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(21, 4.8 * len(rows)))
        fig.subplots_adjust(wspace=0.6, hspace=0.35)
        rr = np.linspace(0, args.radius, 400)
        for i, (method, res) in enumerate(rows):
            ax = fig.add_subplot(len(rows), 4, 4 * i + 1)
            if method == "jko":
                ax.plot(res["s"], res["exact_energy"], "k-", label=r"exact, $J(B(s_k))$")
                ax.plot(res["s"], res["energy"], "o", ms=4, mfc="none",
                        label=r"JKO $J(\rho_k)$ at $s_k$")
                ax.set_xlabel(r"exact JKO time $s_k$")
            else:
                ax.plot(res["t"], res["exact_energy"], "k-", label="exact (Barenblatt)")
                ax.plot(res["t"], res["energy"], "o", ms=3, mfc="none", label=res["label"])
                ax.set_xlabel("t")
            ax.set_ylabel(r"$J(\rho) = \int\rho^m/(m-1)$")
            ax.set_title(f"{method.upper()}: porous medium, m = {m:g}")
            ax.legend()
            rho = res["rho"]
            ax2 = fig.add_subplot(len(rows), 4, 4 * i + 2)
            ax2.plot(np.linalg.norm(rho.X, axis=1), rho.values, ".", ms=2,
                     label=f"{method.upper()} nodes, t = {res['time']:g}")
            if method == "jko":
                ax2.plot(rr, barenblatt_radial(rr, res["exact_time"], C, m), "k-", lw=1,
                         label=rf"exact JKO iterate $B(s_K)$, $s_K$ = {res['exact_time']:.3f}")
                ax2.plot(rr, barenblatt_radial(rr, res["time"], C, m), "r--", lw=1,
                         label=r"flow $B(t_0 + K\tau)$")
            else:
                ax2.plot(rr, barenblatt_radial(rr, res["time"], C, m), "k-", lw=1,
                         label="exact")
            ax2.set_xlabel("|x|")
            ax2.set_ylabel(r"$\rho$")
            ax2.set_title("radial profile")
            ax2.legend(fontsize=8)
            ax3 = fig.add_subplot(len(rows), 4, 4 * i + 3)
            _plotting.colorbar(fig, _plotting.plot_chart(
                ax3, rho, title=rf"{method.upper()}: $\rho$ at t = {res['time']:g}"), ax3)
            ax4 = fig.add_subplot(len(rows), 4, 4 * i + 4)
            if method == "jko":
                steps = np.arange(1, len(res["its"]) + 1)
                ax4.semilogy(steps, res["err_s"], "o-", ms=4,
                             label=r"vs the exact iterate $B(s_k)$")
                ax4.semilogy(steps, res["err_t"], "s--", ms=4, mfc="none",
                             label=r"vs the flow $B(t_0 + k\tau)$")
                for k, its, err in zip(steps, res["its"], res["err_s"]):
                    ax4.annotate(f"{its}", (k, err), textcoords="offset points",
                                 xytext=(0, -13), ha="center", fontsize=8)
                ax4.set_xticks(steps)
                ax4.set_xlabel("JKO step k")
                ax4.set_ylabel(r"$L^1$ error")
                ax4.set_title("JKO: errors per step (Newton its below)")
                ax4.legend(fontsize=8)
            else:
                _plotting.colorbar(fig, _plotting.plot_chart(
                    ax4, res["error"], cmap="RdBu_r", symmetric=True,
                    title=rf"WGF: $\rho - B(T)$ at T = {args.T:g}"), ax4)
        _plotting.save(fig, os.path.join(args.output, "porous_medium_disk.png"))
    PETSc.Sys.Print(f"wrote {args.output}/porous_medium_disk.png and .pvd files")


def parse_args(argv=None):
    p = _cli.parser(__doc__)
    p.add_argument("--method", choices=METHODS, default="both",
                   help="gradient flow, JKO scheme, or both")
    p.add_argument("--refinement", type=int, default=5, help="disk refinement (8*4^k cells)")
    p.add_argument("--radius", type=float, default=1.5, help="disk radius")
    p.add_argument("--degree", type=int, default=1, help="Lagrange degree")
    p.add_argument("--m", type=float, default=2.0, help="porous medium exponent")
    p.add_argument("--C", type=float, default=0.05, help="Barenblatt constant")
    p.add_argument("--t0", type=float, default=1.0, help="initial time")
    p.add_argument("--T", type=float, default=2.0, help="final time (WGF)")
    p.add_argument("--dt", type=float, default=0.025, help="time step (WGF)")
    p.add_argument("--stages", type=int, default=2, help="Radau IIA stages (WGF)")
    p.add_argument("--tau", type=float, default=0.2, help="JKO step size")
    p.add_argument("--steps", type=int, default=None,
                   help="JKO steps (default: round((T - t0)/tau))")
    p.add_argument("--slices", type=int, default=2, help="transport-time slices per JKO step")
    p.add_argument("--cheap", action="store_true", help="quick run for the tests")
    p.add_argument("--output", default="out/porous_medium_disk", help="output directory")
    args = _cli.parse(p, argv)   # PETSc options (-wgf_..., -jko_...) pass through to PETSc
    if args.cheap:
        args.refinement, args.T, args.dt, args.tau = 4, 1.5, 0.1, 0.25
    if args.steps is None:
        args.steps = max(1, round((args.T - args.t0) / args.tau))
    return args


if __name__ == "__main__":
    main(parse_args())
