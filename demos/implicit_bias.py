r"""The implicit bias of the JKO scheme, measured on meshes.
========================================================

Halmos & Hanin (arXiv:2511.14827) show that the JKO scheme with step :math:`\eta`,

.. math::

    \rho_{k+1} = \operatorname*{argmin}_\rho\ \frac{W_2^2(\rho_k,\rho)}{2\eta} + J(\rho),

does not follow the Wasserstein gradient flow (WGF) of :math:`J` to second order, but
the WGF of the modified energy

.. math::

    J^\eta(\rho) = J(\rho) - \frac{\eta}{4}\int_M |\nabla_g \tfrac{\delta J}{\delta\rho}|_g^2\,\rho .

So, at a fixed time :math:`T` with :math:`\eta = T/n`,

.. math::

    \|\rho_{\mathrm{JKO}}(T) - \rho_{\mathrm{WGF}}(T)\| = O(\eta), \qquad
    \|\rho_{\mathrm{JKO}}(T) - \rho_{\mathrm{JKO\text{-}Flow}}(T)\| = O(\eta^2).

The same expansion gives a second-order JKO scheme: JKO steps on the corrected energy
:math:`J + \frac{\eta}{4}\int_M |\nabla_g \tfrac{\delta J}{\delta\rho}|_g^2\,\rho`
(``JKOScheme(..., correction="implicit-bias")``) follow the WGF of :math:`J` itself to
:math:`O(\eta^2)`, so :math:`\|\rho_{\mathrm{corrected}}(T) -
\rho_{\mathrm{WGF}}(T)\| = O(\eta^2)` where plain JKO has :math:`O(\eta)`.

This demo measures the three slopes for the relative entropy (KL) to :math:`\pi \propto
e^{-V}`, whose modified energy adds the relative Fisher information, in three
geometries:

* ``interval``: the paper's 1D case, :math:`V = x^4/4` on :math:`[-2.5, 3]`, P2,
  :math:`\rho_0 \propto e^{-(x-1)^2/0.5}`, :math:`T = 1/2`, :math:`\eta = T/8 \dots T/32`;
* ``disk``: :math:`V = |x|^4/4` on the disk :math:`|x| < 2.5`, P2,
  :math:`\rho_0 \propto e^{-|x - (1, 0)|^2}`, :math:`T = 1/4`,
  :math:`\eta = T/16 \dots T/64`;
* ``sphere``: Fokker--Planck on the unit sphere towards the von Mises--Fisher density
  :math:`\pi \propto e^{2 x_3}` (:math:`V = -2 x_3`) from
  :math:`\rho_0 \propto e^{1.5 x_1}`, P1, :math:`T = 1/2`, :math:`\eta = T/4 \dots T/32`.

The flows (WGF and JKO-Flow) are run for ``JKOStep.limit_energy()``: the potential
replaced by its :math:`L^2` projection :math:`\Pi_h V` onto the JKO's :math:`P_k`
space.  A log-density JKO step sees :math:`V` only through :math:`\Pi_h V`, so as
:math:`\eta \to 0` it tends to the WGF of that energy; with :math:`V` itself the two
semi-discrete flows differ by :math:`O(h^{k+1})` (printed as the spatial offset: 2e-7
interval, 3.9e-4 disk, 7.5e-4 sphere), a floor that hid the corrected scheme's order
(sphere slope 0.81, disk 1.55 against WGF(V)).

Measured with the defaults (:math:`L^1` distances at :math:`T`, slopes fitted over
all step sizes; ``mpiexec -n 2`` gives the same numbers):

========  =========  ==============  ===========  ================  ===============  ==================
case      slope      slope           slope        smallest eta^2    N -> 2N,         h -> h/2
          JKO - WGF  JKO - JKO-Flow  corrected    differences       dt -> dt/2       (JKO-Flow,
                                     JKO - WGF    (JKO-Flow, corr)                   corrected)
========  =========  ==============  ===========  ================  ===============  ==================
interval  0.97       2.14            1.89         3.0e-5, 7.1e-5    2.3e-6, 1.1e-9   4.3e-9, 3.3e-9
disk      0.99       2.00            1.80         2.2e-5, 3.7e-5    2.6e-7, 7.0e-9   2.9e-8, 3.4e-6
sphere    0.96       1.87            1.82         5.2e-5, 9.4e-5    1.2e-6, 1.4e-10  4.9e-8, 8.3e-6
========  =========  ==============  ===========  ================  ===============  ==================

The corrected JKO's distance to the WGF falls like :math:`\eta^2`: local rates 1.86,
1.92 on the interval (7.1e-5 at :math:`T/32`, against 4.3e-3 for plain JKO),
1.81, 1.80 on the disk (1.76, 1.81 over :math:`T/8 \dots T/32`), 1.77, 1.84, 1.85 on the sphere.  Every
discretisation change sits at least 10x below the :math:`\eta^2` difference it could
contaminate (the closest, the mesh change of :math:`|\mathrm{corrected} -
\mathrm{WGF}|`, is 11x below on the disk and the sphere).

The mesh column is the change of :math:`|\mathrm{JKO} - \mathrm{JKO\text{-}Flow}|`
and of :math:`|\mathrm{corrected} - \mathrm{WGF}|` under one uniform refinement,
i.e. the spatial part of those differences.  On the
sphere the local rates of :math:`|\mathrm{JKO} - \mathrm{JKO\text{-}Flow}|` are 1.77,
1.89, 1.94 from :math:`T/4` to :math:`T/32`, climbing to 2 as :math:`\eta` decreases
(the same on a twice coarser mesh: an :math:`\eta^3` term, not a spatial floor).

Two details decide whether the :math:`\eta^2` regime is visible at all:

* The modified equation is an expansion in :math:`\eta`: the correction
  :math:`\frac{\eta}{4}|\nabla(\log\rho + V)|^2` must stay moderate wherever the
  density lives.  For the quartic, :math:`|\nabla V| = |x|^3`, so the domain ends at
  radius 2.5, where :math:`|\nabla V| \le 16`, and :math:`\eta \le 1/16`.  (On the
  square :math:`[-3, 3]^2` the corners reach :math:`|x| = 4.2`, the correction is
  about :math:`10^3\eta` there, and the JKO-Flow's Newton solves fail at
  :math:`\eta = 1/16`.)
* All three runs must start from *the same mass*: the flows take a density, and the
  nodal interpolant of :math:`e^{l_0}` has mass :math:`1 + O(h^2)`; on the coarse
  sphere that defect alone put a floor of 7e-3 under
  :math:`|\mathrm{JKO} - \mathrm{JKO\text{-}Flow}|`.  The flows are therefore given
  ``mass=1``, the exact mass of the JKO's :math:`e^{l_0}`.

Three solvers from :mod:`jkoflow.solvers` are compared on the same mesh:
:class:`~jkoflow.solvers.JKOScheme` (each step a dynamic Benamou--Brenier problem with
``N`` transport-time slices), the reference
:class:`~jkoflow.solvers.WassersteinGradientFlow` and the
:class:`~jkoflow.solvers.JKOFlow` (its default, well-posed pseudo-parabolic form),
plus the corrected :class:`~jkoflow.solvers.JKOScheme` at the same step sizes (in
``--cheap`` mode on the interval only, which adds a few seconds).  Finally the demo
estimates, at the smallest :math:`\eta`, the discretisation errors that are not part
of the comparison -- the slices (:math:`N \to 2N`), the flows' time step
(:math:`dt \to dt/2`) and the mesh (:math:`h \to h/2`, the change of
:math:`|\mathrm{JKO} - \mathrm{JKO\text{-}Flow}|` and of
:math:`|\mathrm{corrected} - \mathrm{WGF}|`) -- to show that they sit well below
the :math:`\eta^2` differences.

Run ``python demos/implicit_bias.py`` (all cases: about 35 minutes of CPU time serially; longer in wall time on a
loaded machine), ``--cases disk``, ``--cheap``
for a fast check on coarse meshes (two step sizes per case, about a minute), or
``mpiexec -n 2 python demos/implicit_bias.py``.  PETSc options reach the solvers:
``-jko_snes_monitor``, ``-wgf_snes_converged_reason``, ``-jkoflow_snes_monitor``.
"""
import os
import sys
import time

import numpy as np
import ufl
from firedrake import COMM_WORLD, Function, FunctionSpace, VTKFile, assemble
from firedrake.petsc import PETSc

from jkoflow.meshes import disk, interval, sphere
from jkoflow.solvers import JKOFlow, JKOScheme, JKOStep, WassersteinGradientFlow, kl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
import _plotting  # noqa: E402

CASES = ("interval", "disk", "sphere")
#: Step counts n (eta = T/n) of the --cheap runs, per case.
CHEAP_STEPS = {"interval": [8, 16], "disk": [8, 16], "sphere": [4, 8]}


def say(msg: str):
    PETSc.Sys.Print(msg)


# Each case gives a geometry, the potential V (so that pi ~ exp(-V)), the initial
# log-density, the polynomial degree, the final time T and the numbers of steps n.
# ``refine`` halves the mesh size (for the spatial check).  The log-density
# representation keeps every density positive and, with P2, represents Gaussians
# exactly; l0 is normalised to unit mass with the solvers' quadrature (degree 2k+2).
def make_case(name: str, cheap: bool, refine: int = 0):
    if name == "interval":
        geom = interval((40 if cheap else 100) * 2 ** refine, -2.5, 3.0)
        x = geom.x[0]
        V = x ** 4 / 4
        log_rho0 = -(x - 1.0) ** 2 / (2 * 0.25)
        degree, T, steps = 2, 0.5, [8, 16, 32]
    elif name == "disk":
        # Radius 2.5: |grad V| = |x|^3 <= 16 keeps the modified equation's
        # correction moderate where the density lives (see the module notes).
        geom = disk((2 if cheap else 3) + refine, radius=2.5, degree=2)
        x, y = geom.x
        V = (x ** 2 + y ** 2) ** 2 / 4
        log_rho0 = -((x - 1.0) ** 2 + y ** 2) / (2 * 0.5)
        degree, T, steps = 2, 0.25, [16, 32, 64]
    elif name == "sphere":
        geom = sphere((2 if cheap else 3) + refine, degree=2)
        x = geom.x
        V = -2.0 * x[2]
        log_rho0 = 1.5 * x[0]
        degree, T, steps = 1, 0.5, [4, 8, 16, 32]
    else:
        raise ValueError(f"unknown case {name!r}; valid: {', '.join(CASES)}")
    space = FunctionSpace(geom.mesh, "CG", degree)
    l0 = Function(space, name="log_rho0").interpolate(log_rho0)
    l0.assign(l0 - float(np.log(float(assemble(ufl.exp(l0) * geom.dx(degree=2 * degree + 2))))))
    return geom, kl(geom, V), l0, degree, T, steps


# The flows' reference energy.  A log-density JKO step sees V only through its
# L2 projection onto the P_k space (its terminal stationarity is tested with P_k
# functions), so as eta -> 0 it tends to the WGF of the energy with potential
# Pi_h V, not V: with V itself the two semi-discretisations differ by O(h^{k+1}), a
# floor under every JKO - WGF distance.  ``limit_energy`` is that consistent energy;
# both flows use it, and the offset |WGF(V) - WGF(Pi_h V)| is reported separately as
# the spatial error it is.
def limit_energy(energy, degree):
    return JKOStep(energy, 1.0, 1, degree=degree).limit_energy()


def l1_distance(a, b, geom, degree):
    return float(assemble(abs(a - b) * geom.dx(degree=2 * degree + 2)))


# The JKO scheme starts from l0 itself.  The flows take a density, here the nodal
# interpolant of exp(l0), whose mass is 1 + O(h^2); ``mass=1`` restores the JKO's
# exact unit mass, so that all three start from the same state (with P2 and P1 the
# log of the interpolant is l0 at the nodes, and the rescaling is a constant shift).
# The flows are integrated with Radau IIA (order 5) and a step small enough that
# their time error is negligible; dt is halved once below to show it.
def run_wgf(energy, l0, T, dt):
    rho0 = Function(l0.function_space()).interpolate(ufl.exp(l0))
    wgf = WassersteinGradientFlow(energy, rho0, dt, mass=1.0)
    wgf.advance_to(T)
    return wgf.rho_expr


def run_jkoflow(energy, l0, eta, T, dt):
    rho0 = Function(l0.function_space()).interpolate(ufl.exp(l0))
    flow = JKOFlow(energy, rho0, eta, dt, mass=1.0)
    flow.advance_to(T)
    return flow.rho_expr


def run_jko(energy, l0, eta, n, N, degree, correction=None):
    scheme = JKOScheme(energy, None, eta, N, log_rho0=l0, degree=degree,
                       correction=correction)
    scheme.run(n)
    its = np.mean([h["snes_iterations"] for h in scheme.history[1:]])
    return scheme.jko.density(scheme.state), its


def slope(etas, errors):
    return float(np.polyfit(np.log(etas), np.log(errors), 1)[0])


def experiment(name, args, out):
    geom, energy, l0, degree, T, steps = make_case(name, args.cheap)
    steps = sorted(set(args.steps or (CHEAP_STEPS[name] if args.cheap else steps)))
    reference = limit_energy(energy, degree)
    say(f"\n=== {name}: {geom.describe()}; P{degree}, T = {T:g}, N = {args.slices}")
    dt = T / (8 if args.cheap else 32)
    t0 = time.perf_counter()

    # The solutions at T: the WGF once, JKO and JKO-Flow for each eta = T/n, and the
    # corrected JKO (steps on J + (eta/4) I_J), which should follow the WGF itself to
    # O(eta^2).  In cheap mode only the interval case runs it, to keep the test short.
    corrected = not args.cheap or name == "interval"
    rho_wgf = run_wgf(reference, l0, T, dt)
    offset = l1_distance(run_wgf(energy, l0, T, dt), rho_wgf, geom, degree)
    say(f"  spatial offset of the flows' limits |WGF(V) - WGF(Pi_h V)| = {offset:.2e}")
    rows = []
    for n in steps:
        eta = T / n
        rho_jko, its = run_jko(energy, l0, eta, n, args.slices, degree)
        rho_flow = run_jkoflow(reference, l0, eta, T, dt)
        e_corr = np.nan
        if corrected:
            rho_corr, _ = run_jko(energy, l0, eta, n, args.slices, degree,
                                  correction="implicit-bias")
            e_corr = l1_distance(rho_corr, rho_wgf, geom, degree)
        rows.append((eta, l1_distance(rho_jko, rho_wgf, geom, degree),
                     l1_distance(rho_jko, rho_flow, geom, degree),
                     l1_distance(rho_flow, rho_wgf, geom, degree), its, e_corr))
        say(f"  eta = T/{n:<3d} |JKO-WGF| = {rows[-1][1]:.3e}  |JKO-JKOFlow| = "
            f"{rows[-1][2]:.3e}  |JKOFlow-WGF| = {rows[-1][3]:.3e}  "
            f"(Newton its/step {its:.1f})"
            + (f"  |corrected-WGF| = {e_corr:.3e}" if corrected else ""))
    etas = np.array([r[0] for r in rows])
    e_wgf = np.array([r[1] for r in rows])
    e_flow = np.array([r[2] for r in rows])
    e_corr = np.array([r[5] for r in rows])
    s_wgf, s_flow = slope(etas, e_wgf), slope(etas, e_flow)
    s_corr = slope(etas, e_corr) if corrected else None
    rates = np.log2(e_flow[:-1] / e_flow[1:])
    say(f"  observed slopes: |JKO - WGF| ~ eta^{s_wgf:.2f},  "
        f"|JKO - JKO-Flow| ~ eta^{s_flow:.2f}   (expected 1 and 2; local rates of "
        f"|JKO - JKO-Flow|: {', '.join(f'{r:.2f}' for r in rates)})")
    if corrected:
        say(f"  corrected JKO: |corrected - WGF| ~ eta^{s_corr:.2f} (expected 2; local "
            f"rates {', '.join(f'{r:.2f}' for r in np.log2(e_corr[:-1] / e_corr[1:]))})")

    # Discretisation errors outside the comparison, at the smallest eta (whose JKO
    # and JKO-Flow solutions are the last ones computed above): the JKO slices
    # (N -> 2N), the flows' time step (dt -> dt/2) and the mesh (h -> h/2: how much
    # the eta^2 difference |JKO - JKO-Flow| itself moves).
    eta, n = etas[-1], steps[-1]
    rho_2N, _ = run_jko(energy, l0, eta, n, 2 * args.slices, degree)
    err_N = l1_distance(rho_2N, rho_jko, geom, degree)
    err_dt = l1_distance(run_jkoflow(reference, l0, eta, T, dt / 2), rho_flow, geom, degree)
    fine, energy_f, l0_f, _, _, _ = make_case(name, args.cheap, refine=1)
    reference_f = limit_energy(energy_f, degree)
    diff_fine = l1_distance(run_jko(energy_f, l0_f, eta, n, args.slices, degree)[0],
                            run_jkoflow(reference_f, l0_f, eta, T, dt), fine, degree)
    err_h = abs(diff_fine - e_flow[-1])
    say(f"  discretisation at eta = T/{n}: slices N={args.slices}->{2 * args.slices}: "
        f"{err_N:.1e}, flow dt -> dt/2: {err_dt:.1e}, mesh h -> h/2: |JKO-JKOFlow| "
        f"{e_flow[-1]:.3e} -> {diff_fine:.3e} (change {err_h:.1e}); smallest eta^2 "
        f"difference {e_flow[-1]:.1e}")
    err_h_corr = np.nan
    if corrected:
        corr_fine = l1_distance(
            run_jko(energy_f, l0_f, eta, n, args.slices, degree,
                    correction="implicit-bias")[0],
            run_wgf(reference_f, l0_f, T, dt), fine, degree)
        err_h_corr = abs(corr_fine - e_corr[-1])
        say(f"  mesh h -> h/2: |corrected - WGF| {e_corr[-1]:.3e} -> {corr_fine:.3e} "
            f"(change {err_h_corr:.1e})")
    say(f"  ({time.perf_counter() - t0:.0f} s)")

    # VTK output of the three densities at T for the smallest eta.
    space = l0.function_space()
    fields = [Function(space, name=nm).interpolate(r) for nm, r in
              (("rho_jko", rho_jko), ("rho_wgf", rho_wgf), ("rho_jkoflow", rho_flow))]
    VTKFile(os.path.join(out, f"{name}.pvd")).write(*fields)
    return {"etas": etas, "jko_wgf": e_wgf, "jko_flow": e_flow, "corr_wgf": e_corr,
            "slopes": (s_wgf, s_flow, s_corr), "offset": offset,
            "disc": (err_N, err_dt, err_h, err_h_corr), "fields": fields, "geom": geom, "eta": eta}


# The figure: the log-log plot of both distances against eta and one row per case:
# the JKO density at T, the implicit bias rho_JKO - rho_WGF (O(eta)) and the
# JKO-Flow's prediction of it, rho_JKOFlow - rho_WGF, on one colour scale: they agree
# to O(eta^2).  The fields are gathered to rank 0 first (collective), so the figure
# is the same under MPI.
def gather_row(r):
    rho_jko, rho_wgf, rho_flow = r["fields"]
    space = rho_jko.function_space()
    bias = Function(space).interpolate(rho_jko - rho_wgf)
    pred = Function(space).interpolate(rho_flow - rho_wgf)
    if r["geom"].gdim == 1:
        return [_plotting.nodal_profile(f) for f in (*r["fields"], bias, pred)]
    return [_plotting.vertex_data(f) for f in (rho_jko, bias, pred)]


def plot_row(fig, gs, row, name, r, data):
    eta = f"$\\eta$ = {r['eta']:.3g}"
    if r["geom"].gdim == 1:
        ax = fig.add_subplot(gs[row, 1])
        for f, (x, v) in zip(r["fields"], data[:3]):
            ax.plot(x, v, label=f.name())
        ax.legend(fontsize=7)
        ax.set_title(f"{name}: densities at T")
        ax = fig.add_subplot(gs[row, 2:])
        ax.plot(*data[3], label="JKO - WGF")
        ax.plot(*data[4], "--", label="JKO-Flow - WGF")
        ax.legend(fontsize=7)
        ax.set_title(f"{name}: implicit bias at T, {eta}")
        return
    surface = r["geom"].gdim == 3
    kw = {"projection": "3d"} if surface else {}
    lim = float(max(abs(data[1].values).max(), abs(data[2].values).max()))
    panels = [(data[0], f"{name}: JKO density at T", "viridis", None),
              (data[1], f"JKO - WGF, {eta}", "RdBu_r", lim),
              (data[2], "JKO-Flow - WGF", "RdBu_r", lim)]
    for col, (d, title, cmap, a) in enumerate(panels, start=1):
        ax = fig.add_subplot(gs[row, col], **kw)
        vmin, vmax = (None, None) if a is None else (-a, a)
        if surface:
            sm = _plotting.plot_surface(ax, d, cmap=cmap, title=title, vmin=vmin, vmax=vmax)
        else:
            sm = _plotting.plot_chart(ax, d, cmap=cmap, title=title, vmin=vmin, vmax=vmax)
        _plotting.colorbar(fig, sm, ax)


def plot(results, out):
    data = {name: gather_row(r) for name, r in results.items()}
    if not _plotting.on_root():
        return
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
    names = list(results)
    rows = len(names)
    fig = plt.figure(figsize=(18, 4 * rows))
    gs = fig.add_gridspec(rows, 4, wspace=0.45)
    ax = fig.add_subplot(gs[:, 0])
    for i, name in enumerate(names):
        r = results[name]
        ax.loglog(r["etas"], r["jko_wgf"], "o-", color=f"C{i}", label=f"{name}: |JKO-WGF|")
        ax.loglog(r["etas"], r["jko_flow"], "s--", color=f"C{i}",
                  label=f"{name}: |JKO-JKOFlow|")
        if r["slopes"][2] is not None:
            ax.loglog(r["etas"], r["corr_wgf"], "^:", color=f"C{i}",
                      label=f"{name}: |corrected JKO-WGF|")
    e = np.array(sorted({x for r in results.values() for x in r["etas"]}))
    ax.loglog(e, 0.3 * e, "k:", lw=1, label="slope 1")
    ax.loglog(e, 0.3 * e ** 2, "k-.", lw=1, label="slope 2")
    ax.set_xticks(e, [f"{x:.3g}" for x in e])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(r"$\eta$")
    ax.set_ylabel(r"$L^1$ distance at $T$")
    ax.legend(fontsize=7)
    ax.set_title("implicit bias of JKO")
    for row, name in enumerate(names):
        plot_row(fig, gs, row, name, results[name], data[name])
    _plotting.save(fig, os.path.join(out, "implicit_bias.png"))


def main(args):
    out = args.output
    if COMM_WORLD.rank == 0:
        os.makedirs(out, exist_ok=True)
    results = {name: experiment(name, args, out) for name in args.cases}
    plot(results, out)
    say("\n| case | slope JKO-WGF | slope JKO-JKOFlow | slope corrected-WGF | "
        "smallest eta^2 diff. (JKO-JKOFlow, corrected-WGF) | N -> 2N | dt -> dt/2 | "
        "h -> h/2 (JKO-JKOFlow, corrected-WGF) | WGF(V) - WGF(Pi_h V) |\n"
        "|---|---|---|---|---|---|---|---|---|")

    def num(x, fmt=".1e"):          # "-" where the corrected scheme did not run
        return "-" if x is None or np.isnan(x) else format(x, fmt)

    for name, r in results.items():
        err_N, err_dt, err_h, err_h_corr = r["disc"]
        say(f"| {name} | {r['slopes'][0]:.2f} | {r['slopes'][1]:.2f} | "
            f"{num(r['slopes'][2], '.2f')} | {r['jko_flow'][-1]:.1e}, "
            f"{num(r['corr_wgf'][-1])} | {err_N:.1e} | {err_dt:.1e} | {err_h:.1e}, "
            f"{num(err_h_corr)} | {r['offset']:.1e} |")
    say(f"figure and VTK files in {out}/")
    return results


if __name__ == "__main__":
    parser = _cli.parser(__doc__)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES,
                        help="which experiments to run (default: all)")
    parser.add_argument("--steps", nargs="+", type=int, default=None,
                        help="numbers of JKO steps n (eta = T/n); default per case")
    parser.add_argument("--slices", type=int, default=None,
                        help="transport-time slices N per JKO step (default 8; 4 with "
                             "--cheap)")
    parser.add_argument("--cheap", action="store_true",
                        help="coarse meshes, two step sizes per case (for the tests)")
    parser.add_argument("--output", default="out/implicit_bias")
    args = _cli.parse(parser)   # PETSc options (-jko_..., -wgf_..., ...) pass through
    if args.steps is not None and (len(set(args.steps)) < 2 or min(args.steps) < 1):
        parser.error(f"--steps needs at least two distinct positive numbers of steps (a "
                     f"slope is fitted), got {args.steps}")
    args.slices = args.slices or (4 if args.cheap else 8)
    main(args)
