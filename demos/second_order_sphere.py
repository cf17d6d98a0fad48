r"""A second-order JKO scheme on the sphere, from the implicit bias.
=================================================================

A JKO step of size :math:`\eta` for an energy :math:`F`,

.. math::

    \rho_{k+1} = \operatorname*{argmin}_\rho\ \frac{W_2^2(\rho_k,\rho)}{2\eta} + F(\rho),

follows the Wasserstein gradient flow (WGF) of :math:`F` only to first order: by
Halmos & Hanin, to :math:`O(\eta^2)` it follows the WGF of
:math:`F - \frac{\eta}{4} I_F`, where
:math:`I_F(\rho) = \int_M |\nabla_g \tfrac{\delta F}{\delta\rho}|_g^2\,\rho\,\mathrm{dvol}`.
The bias is known, so it can be cancelled in advance: take steps on

.. math::

    F_\eta = J + \frac{\eta}{4} I_J .

Then :math:`F_\eta - \frac{\eta}{4} I_{F_\eta} = J + O(\eta^2)`, so these steps track
the WGF of :math:`J` to second order, while each step is still a minimisation:
:math:`F_\eta` decreases along the iterates, mass is conserved exactly and densities
stay positive.  For the relative entropy :math:`J = \int\rho\log\rho + V\rho` the
added term is the relative Fisher information, which is convex in :math:`\rho`, so
every corrected step is a convex problem.

This demo runs Fokker--Planck on the unit sphere towards the von Mises--Fisher
density :math:`\pi\propto e^{2x_3}` (:math:`V = -2x_3`) from
:math:`\rho_0\propto e^{1.5x_1}`, with plain and corrected JKO steps
(``JKOScheme(..., correction="implicit-bias")``) for :math:`\eta = T/n`, and measures
:math:`L^1` distances at :math:`T = 1/2`:

* to a WGF reference on the same mesh (P1 on a curved sphere, Radau IIA with a small
  time step), run for ``JKOStep.limit_energy()``: the potential replaced by its
  :math:`L^2` projection :math:`\Pi_h V` onto P1.  A log-density JKO step sees
  :math:`V` only through :math:`\Pi_h V`, so as :math:`\eta \to 0` it tends to the
  WGF of that energy; the WGF of :math:`V` itself (not in P1 on curved cells) lies
  :math:`7.5\cdot10^{-4}` away at refinement 3, an :math:`O(h^2)` offset that would
  hide the :math:`\eta^2` errors below it;
* to a time-converged scheme, the corrected scheme with a much smaller step
  (:math:`T/64`), a cross-check that needs no gradient-flow solver (its own distance
  to the WGF, :math:`2.7\cdot10^{-5}`, is its time error).

Measured with the defaults (refinement 3, N = 8): slopes against the WGF 0.95 (plain)
and 1.81 (corrected, local rates 1.77, 1.84), against the time reference 0.95 and
1.86; :math:`F_\eta` decreases along every run, mass drifts by at most 2e-11:

=========  ============  ============  =============  =============
eta        plain - WGF   corr. - WGF   plain - ref.   corr. - ref.
=========  ============  ============  =============  =============
T/4        5.42e-2       4.14e-3       5.41e-2        4.11e-3
T/8        2.83e-2       1.21e-3       2.83e-2        1.18e-3
T/16       1.45e-2       3.38e-4       1.45e-2        3.11e-4
=========  ============  ============  =============  =============

Run ``python demos/second_order_sphere.py`` (``--cheap`` for a quick check, also
under ``mpiexec -n 2``).  PETSc options pass through (``-jko_snes_monitor``).  Output
in ``out/second_order_sphere``: ``second_order_sphere.pvd`` (densities at :math:`T`
for the smallest :math:`\eta`) and ``second_order_sphere.png``.
"""
import os
import sys
import time

import numpy as np
import ufl
from firedrake import COMM_WORLD, Function, FunctionSpace, VTKFile, assemble
from firedrake.petsc import PETSc

from jkoflow.meshes import sphere
from jkoflow.solvers import JKOScheme, JKOStep, WassersteinGradientFlow, kl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _plotting  # noqa: E402


def say(msg: str):
    PETSc.Sys.Print(msg)


# The problem: a curved (degree-2) icosahedral sphere, P1 densities, the potential
# V = -2 x_3 and a log-density l0 = 1.5 x_1 normalised to unit mass with the solvers'
# quadrature.  The log representation keeps every density positive.
def make_problem(refinement: int):
    geom = sphere(refinement, degree=2)
    x = geom.x
    l0 = Function(FunctionSpace(geom.mesh, "CG", 1), name="log_rho0").interpolate(1.5 * x[0])
    l0.assign(l0 - float(np.log(float(assemble(ufl.exp(l0) * geom.dx(degree=4))))))
    return geom, kl(geom, -2.0 * x[2]), l0


def l1_distance(a, b, geom):
    return float(assemble(abs(a - b) * geom.dx(degree=4)))


# The reference: the WGF from the nodal interpolant of exp(l0), rescaled to unit mass
# (the JKO's exact mass), by Radau IIA with a step much smaller than eta.  It is run
# for the JKO step's ``limit_energy``: a log-density JKO step sees V only through its
# L2 projection Pi_h V onto P1 (its stationarity is tested with P1 functions), so its
# limit eta -> 0 is the WGF of Pi_h V; with V itself (not in P1 on curved cells) the
# two semi-discretisations differ by O(h^2), printed as the spatial offset.
def run_wgf(energy, l0, T, dt):
    rho0 = Function(l0.function_space()).interpolate(ufl.exp(l0))
    wgf = WassersteinGradientFlow(energy, rho0, dt, mass=1.0)
    wgf.advance_to(T)
    return wgf.rho_expr


# The schemes: n steps of size eta = T/n, plain or corrected.  For the corrected
# scheme the history also records F_eta, which must decrease.
def run_jko(energy, l0, T, n, N, correction):
    scheme = JKOScheme(energy, None, T / n, N, log_rho0=l0, correction=correction)
    scheme.run(n)
    stepped = np.array([h["stepped_energy"] for h in scheme.history])
    masses = np.array([h["mass"] for h in scheme.history])
    return scheme, {"decreasing": bool(np.all(np.diff(stepped) < 0)),
                    "mass_drift": float(np.max(np.abs(masses - masses[0]))),
                    "min_rho": min(h["min_rho"] for h in scheme.history),
                    "newton": scheme.solver_stats()[1]}


def slope(etas, errors):
    return float(np.polyfit(np.log(etas), np.log(errors), 1)[0])


def main(args):
    out = args.output
    if COMM_WORLD.rank == 0:
        os.makedirs(out, exist_ok=True)
    geom, energy, l0 = make_problem(args.refinement)
    T = args.T
    say(f"{geom.describe()}; P1, T = {T:g}, N = {args.slices}, WGF dt = {args.dt:g}")
    tic = time.perf_counter()
    limit = JKOStep(energy, T, 1).limit_energy()
    rho_wgf = run_wgf(limit, l0, T, args.dt)
    offset = l1_distance(run_wgf(energy, l0, T, args.dt), rho_wgf, geom)
    say(f"WGF reference done ({time.perf_counter() - tic:.1f} s); spatial offset "
        f"|WGF(V) - WGF(Pi_h V)| = {offset:.2e}")

    # Both schemes for every eta = T/n: L1 distance to the reference at T.
    errors = {None: [], "implicit-bias": []}
    finals = {None: [], "implicit-bias": []}
    last = {}
    for n in args.steps:
        for correction in errors:
            tic = time.perf_counter()
            scheme, info = run_jko(energy, l0, T, n, args.slices, correction)
            errors[correction].append(l1_distance(scheme.rho_expr, rho_wgf, geom))
            # keep the exact density e^{l} (a copy of the log-density state), not its
            # nodal interpolant, whose O(h^2) error would swamp the eta^2 differences
            finals[correction].append(ufl.exp(Function(l0.function_space()).assign(
                scheme.state)))
            last[correction] = scheme
            say(f"  eta = T/{n:<3d} {correction or 'plain':13s} |JKO - WGF| = "
                f"{errors[correction][-1]:.3e}  stepped energy decreasing: "
                f"{info['decreasing']}, mass drift {info['mass_drift']:.1e}, min rho "
                f"{info['min_rho']:.2e}, Newton its {info['newton']} "
                f"({time.perf_counter() - tic:.1f} s)")
    # The time-converged reference: the corrected scheme with a much smaller step, a
    # cross-check that needs no gradient-flow solver.  Its distance to the WGF is its
    # own time error (the WGF being that of the JKO-consistent energy).
    tic = time.perf_counter()
    reference, _ = run_jko(energy, l0, T, args.reference_steps, args.slices, "implicit-bias")
    rho_ref = reference.rho_expr
    floor = l1_distance(rho_ref, rho_wgf, geom)
    say(f"time reference: corrected JKO with eta = T/{args.reference_steps}, |ref - WGF| = "
        f"{floor:.3e} ({time.perf_counter() - tic:.1f} s)")
    to_ref = {c: [l1_distance(r, rho_ref, geom) for r in rhos] for c, rhos in finals.items()}

    etas = T / np.array(args.steps, dtype=float)
    slopes = {c: slope(etas, e) for c, e in to_ref.items()}
    say(f"observed slopes against the time reference: plain {slopes[None]:.2f} (expected "
        f"1), corrected {slopes['implicit-bias']:.2f} (expected 2); against the WGF: plain "
        f"{slope(etas, errors[None]):.2f}, corrected {slope(etas, errors['implicit-bias']):.2f}"
        f" (|ref - WGF| {floor:.1e}, spatial offset of WGF(V) {offset:.1e})")
    say("\n| eta | plain - WGF | corrected - WGF | plain - ref | corrected - ref |"
        "\n|---|---|---|---|---|")
    for i, n in enumerate(args.steps):
        say(f"| T/{n} | {errors[None][i]:.3e} | {errors['implicit-bias'][i]:.3e} | "
            f"{to_ref[None][i]:.3e} | {to_ref['implicit-bias'][i]:.3e} |")

    # VTK: the reference and both schemes' densities at T for the smallest eta.
    space = l0.function_space()
    fields = [Function(space, name=name).interpolate(r) for name, r in
              (("rho_wgf", rho_wgf), ("rho_jko", last[None].rho_expr),
               ("rho_jko_corrected", last["implicit-bias"].rho_expr))]
    VTKFile(os.path.join(out, "second_order_sphere.pvd")).write(*fields)
    plot(etas, errors, to_ref, fields, out)
    say(f"figure and VTK files in {out}/")
    return errors, slopes


# The figure: errors against eta (log-log) and the two errors at T for the smallest
# eta on one colour scale.  The fields are gathered to rank 0 first (collective), so
# the figure is the same under MPI.
def plot(etas, errors, to_ref, fields, out):
    wgf, plain, corrected = fields
    space = wgf.function_space()
    diffs = [_plotting.vertex_data(Function(space).interpolate(f - wgf))
             for f in (plain, corrected)]
    if not _plotting.on_root():
        return
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
    fig = plt.figure(figsize=(15, 4.5))
    ax = fig.add_subplot(1, 3, 1)
    ax.loglog(etas, errors[None], "o-", color="C0", label="plain - WGF")
    ax.loglog(etas, errors["implicit-bias"], "s-", color="C1", label="corrected - WGF")
    ax.loglog(etas, to_ref[None], "o--", color="C0", mfc="none", label="plain - ref.")
    ax.loglog(etas, to_ref["implicit-bias"], "s--", color="C1", mfc="none",
              label="corrected - ref.")
    ax.loglog(etas, to_ref[None][0] * (etas / etas[0]), "k:", lw=1, label="slope 1")
    ax.loglog(etas, to_ref["implicit-bias"][0] * (etas / etas[0]) ** 2, "k-.", lw=1,
              label="slope 2")
    ax.set_xticks(etas, [f"{e:.3g}" for e in etas])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(r"$\eta$")
    ax.set_ylabel(r"$L^1$ distance at $T$")
    ax.set_title("Fokker-Planck on $S^2$")
    ax.legend(fontsize=8)
    lim = float(max(abs(d.values).max() for d in diffs))
    for i, (d, title) in enumerate(zip(diffs, ("plain - WGF", "corrected - WGF")), start=2):
        ax3 = fig.add_subplot(1, 3, i, projection="3d")
        sm = _plotting.plot_surface(ax3, d, cmap="RdBu_r", vmin=-lim, vmax=lim,
                                    title=f"{title}, $\\eta$ = {etas[-1]:.3g}")
        _plotting.colorbar(fig, sm, ax3)
    _plotting.save(fig, os.path.join(out, "second_order_sphere.png"))


if __name__ == "__main__":
    parser = _cli.parser(__doc__)
    parser.add_argument("--refinement", type=int, default=3, help="icosahedral refinement")
    parser.add_argument("--T", type=float, default=0.5, help="final time")
    parser.add_argument("--steps", nargs="+", type=int, default=[4, 8, 16],
                        help="numbers of JKO steps n (eta = T/n)")
    parser.add_argument("--slices", type=int, default=8, help="slices N per JKO step")
    parser.add_argument("--reference-steps", type=int, default=64,
                        help="steps of the time-converged corrected reference")
    parser.add_argument("--dt", type=float, default=None,
                        help="WGF time step (default T/32)")
    parser.add_argument("--cheap", action="store_true",
                        help="coarse mesh, two step sizes (for the tests)")
    parser.add_argument("--output", default="out/second_order_sphere")
    args = _cli.parse(parser)   # PETSc options (-jko_..., -wgf_...) pass through
    if args.cheap:
        args.refinement, args.steps, args.slices, args.reference_steps = 2, [2, 4], 4, 16
    if len(set(args.steps)) < 2 or min(args.steps) < 1:
        parser.error(f"--steps needs at least two distinct positive numbers, got {args.steps}")
    args.steps = sorted(set(args.steps))
    if args.reference_steps < 2 * args.steps[-1]:
        parser.error("--reference-steps must be at least twice the largest of --steps")
    args.dt = args.dt or args.T / 32
    main(args)
