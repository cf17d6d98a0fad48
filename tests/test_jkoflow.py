"""The JKO-Flow solver (issue 6) against exact solutions and the JKO scheme.

* The chemical potential derived by UFL equals the paper's formula
  (docs/maths/implicit_bias.rst).
* Ornstein--Uhlenbeck Gaussians (docs/maths/reference_solutions.rst), both forms, 1D
  and 2D: orders in dt (P2, where the log-density is exact) and in h (P1); the P2 error is far below the
  distance to the other models' ODEs, so the solver solves *its* equation.
* The stability check: exact growth rate and critical mesh size on a constant state,
  flags fine and passes coarse meshes (1D, 2D, Gaussians), the predicted growth is
  what the time integration shows, the pseudo-parabolic form is stable on every mesh.
* |JKO - WGF| ~ eta and |JKO - JKO-Flow| ~ eta^2 on the 1D OU Gaussian (exact JKO
  recursion), both forms; on the sphere and torus against JKOStep iterates.
* Sphere: linear decay rates of both forms; porous medium and potential energy;
  a metric chart; observers, output, adaptive steps; bad input; 2 ranks = serial.
"""
import math
import os

import numpy as np
import pytest
import ufl
from firedrake import Function, FunctionSpace, assemble
from mpi4py import MPI
from scipy.integrate import solve_ivp

from jkoflow.meshes import (Geometry, interval, poincare_disk, rectangle, sphere, torus,
                            unit_square)
from jkoflow.solvers import (Checkpointer, JKOFlow, TimeSeries, UnstableFormError, VTKOutput,
                             entropy, gaussian_jko_step, kl, porous_medium, potential_energy,
                             restart)

from conftest import rates

# 1D OU: V = a x^2/2, N(m0, S0) contracting to N(0, 1/a); box: mean +- 6 std all along.
A, M0, S0, T = 1.0, 1.0, 2.0, 1.0
BOX = (-8.5, 9.5)
# 2D: independent axes
A2, M2, S2, BOX2 = (1.0, 0.75), (1.0, -0.5), (2.0, 2.0), (-9.0, 9.5)


# ------------------------------------------------------------- references
def gaussian_ode(form, eta, a=A, m0=M0, s0=S0, t=T):
    """(m, S) at time t for the WGF (eta = 0) and both JKO-Flow forms
    (docs/maths/reference_solutions.rst)."""
    def rhs(_, y):
        m, S = y
        b = a - 1 / S
        if form == "fisher":
            return [-a * (1 - eta * a / 2) * m, 2 - 2 * a * S + eta * a * a * S - eta / S]
        return [-a * m * (1 - eta / 2 * b) / (1 + eta / (2 * S)),
                2 * S * (-b + eta / 2 * b * b) / (1 + eta / S)]
    return solve_ivp(rhs, (0, t), [m0, s0], rtol=1e-13, atol=1e-14).y[:, -1]


def jko_gaussian(eta, n, a=A, m0=M0, s0=S0):
    """The exact JKO recursion for Gaussians (docs/maths/reference_solutions.rst): (m_n, s_n)."""
    m, s = m0, math.sqrt(s0)
    for _ in range(n):
        m, s = gaussian_jko_step(m, s, eta, a)
    return m, s


def moments(flow, i=0):
    """Mean and variance of the density along axis i (the residual's quadrature)."""
    x, r, dx = flow.geometry.x[i], flow.rho_expr, flow.dx
    mass = flow.mass()
    m = float(assemble(x * r * dx)) / mass
    return m, float(assemble((x - m) ** 2 * r * dx)) / mass


def ou_flow_1d(form, eta, n, degree, dt, *, qdeg, T_end=T, comm=MPI.COMM_WORLD, **kw):
    geom = interval(n, *BOX, comm=comm)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", degree)
    rho0 = Function(V).interpolate(ufl.exp(-(x - M0) ** 2 / (2 * S0)))
    flow = JKOFlow(kl(geom, A * x ** 2 / 2), rho0, eta, dt, form=form, stages=2,
                   quadrature_degree=qdeg, **kw)
    if T_end:
        flow.advance_to(T_end)
    return flow


def ou_flow_2d(form, eta, n, degree, dt, *, qdeg, T_end=T, comm=MPI.COMM_WORLD):
    geom = rectangle(n, n, *BOX2, *BOX2, comm=comm)
    X = geom.x
    V = FunctionSpace(geom.mesh, "CG", degree)
    rho0 = Function(V).interpolate(
        ufl.exp(-sum((X[i] - M2[i]) ** 2 / (2 * S2[i]) for i in range(2))))
    energy = kl(geom, sum(A2[i] * X[i] ** 2 / 2 for i in range(2)))
    flow = JKOFlow(energy, rho0, eta, dt, form=form, stages=2, quadrature_degree=qdeg)
    flow.advance_to(T_end)
    return flow


def errors_2d(flow, form, eta):
    e = []
    for i in range(2):
        ex = gaussian_ode(form, eta, A2[i], M2[i], S2[i], t=flow.t)
        e.extend(np.subtract(moments(flow, i), ex))
    return np.array(e)


ETA = {"pseudo-parabolic": 0.1, "fisher": 0.01}   # fisher: eta small enough for P1/P2
OTHER = {"pseudo-parabolic": "fisher", "fisher": "pseudo-parabolic"}


def assert_mass_exact(flow):
    assert abs(flow.mass() / flow.initial_mass - 1) < 1e-12
    if flow.mass_corrections:   # the SNES-tolerance mass defect removed per step
        assert max(abs(c) for c in flow.mass_corrections) < 1e-9


# -------------------------------------------------- the chemical potential
@pytest.mark.parametrize("form", ["fisher", "pseudo-parabolic"])
def test_chemical_potential_is_the_papers(form):
    r"""At t = 0 the solver's consistent (mu, d_t log rho) equal the paper's
    mu^eta = g - (eta/4) dI_J/drho (strong form from Energy.curvature_variation_strong)
    and, for the pseudo-parabolic form, mu~ = g - eta/4 |grad g|^2 + eta/2 d_t log rho
    with the exact Gaussian rate (P2 holds the quadratic log-density exactly)."""
    eta = 0.1
    flow = ou_flow_1d(form, eta, 24, 2, 0.1, qdeg=12, T_end=None, allow_unstable=True)
    x, rho = flow.geometry.x[0], flow.rho_expr
    en = flow.energy
    # exact rates of the Gaussian at t = 0 from the form's ODE
    eps = 1e-6
    m1, S1 = gaussian_ode(form, eta, t=eps)
    dm, dS = (m1 - M0) / eps, (S1 - S0) / eps
    y = x - M0
    dlog = dm * y / S0 + dS * y ** 2 / (2 * S0 ** 2) - dS / (2 * S0)
    g = en.first_variation(rho)
    if form == "fisher":
        exact_mu = g - eta / 4 * en.curvature_variation_strong(rho)
    else:
        exact_mu = g - eta / 4 * flow.geometry.grad_norm2(g) + eta / 2 * dlog
    rate, mu = flow.linearised.consistent_rate()
    dx = flow.dx

    # rho-weighted, 3 std around the mean: mu has a boundary layer at the box edges (the
    # natural condition grad g.n = 0 of the fisher mu-equation), harmless where rho ~ 0
    inner = ufl.conditional(abs(x - M0) < 3 * math.sqrt(S0), 1.0, 0.0)

    def wnorm(e):
        return math.sqrt(float(assemble(inner * rho * e ** 2 * dx)))
    scale = wnorm(exact_mu - g)   # the size of the eta-terms
    # (the pseudo-parabolic mu-equation has no integration by parts, no layer)
    tol = {"fisher": (1e-4, 1e-3), "pseudo-parabolic": (1e-6, 1e-5)}[form]
    assert wnorm(mu - exact_mu) < tol[0] * scale, (wnorm(mu - exact_mu), scale)
    assert wnorm(rate - dlog) < tol[1] * wnorm(dlog), (wnorm(rate - dlog), wnorm(dlog))
    # and the WGF potential is clearly different
    assert wnorm(mu - g) > 0.5 * scale


# ------------------------------------------------------- OU Gaussians 1D
@pytest.mark.parametrize("form", ["pseudo-parabolic", "fisher"])
def test_ou_1d_time_order_p2(form):
    """P2 holds the Gaussian's log-density exactly: the error is the time error,
    order 3 for 2-stage Radau IIA; it is far below the distance to the other form's
    and to the WGF's ODE."""
    eta = ETA[form]
    errs = []
    for dt in (1 / 16, 1 / 32, 1 / 64):
        flow = ou_flow_1d(form, eta, 24, 2, dt, qdeg=12)
        assert flow.num_retries == 0
        assert_mass_exact(flow)
        errs.append(np.abs(np.subtract(moments(flow), gaussian_ode(form, eta))).max())
    r = rates(errs)
    assert np.all(r > 2.7), (errs, r)
    ref = gaussian_ode(form, eta)
    for other in (gaussian_ode(OTHER[form], eta), gaussian_ode(form, 0.0)):
        assert errs[-1] < 0.05 * np.abs(ref - other).max(), (errs[-1], ref - other)


@pytest.mark.parametrize("form,meshes", [("pseudo-parabolic", (16, 32, 64)),
                                         ("fisher", (16, 32, 56))])
def test_ou_1d_space_order_p1(form, meshes):
    """P1: second order in h (fisher on meshes coarser than its critical size)."""
    eta = ETA[form]
    errs = []
    for n in meshes:
        flow = ou_flow_1d(form, eta, n, 1, 1 / 32, qdeg=4)
        assert_mass_exact(flow)
        errs.append(np.abs(np.subtract(moments(flow), gaussian_ode(form, eta))).max())
    r = np.log(np.divide(errs[:-1], errs[1:])) / np.log(np.divide(meshes[1:], meshes[:-1]))
    assert np.all(r > 1.85), (errs, r)


# ------------------------------------------------------- OU Gaussians 2D
@pytest.mark.parametrize("form", ["pseudo-parabolic", "fisher"])
def test_ou_2d_time_order_p2(form):
    """2D diagonal covariance: the axes decouple; P2, order 3 in dt."""
    eta = ETA[form]
    errs = []
    for dt in (1 / 16, 1 / 32):
        flow = ou_flow_2d(form, eta, 12, 2, dt, qdeg=8)
        assert_mass_exact(flow)
        if form == "fisher":
            assert flow.stability.stable
        errs.append(np.abs(errors_2d(flow, form, eta)).max())
    r = rates(errs)
    assert errs[-1] < 3e-6 and r[0] > 2.7, (errs, r)


def test_ou_2d_space_order_p1():
    form, eta = "pseudo-parabolic", 0.1
    errs = []
    for n in (8, 16, 32):
        flow = ou_flow_2d(form, eta, n, 1, 1 / 8, qdeg=4)
        assert_mass_exact(flow)
        errs.append(np.abs(errors_2d(flow, form, eta)).max())
    r = rates(errs)
    assert np.all(r > 1.85), (errs, r)


# ------------------------------------------------------- stability check
def constant_state_flow(n, eta, form="fisher", comm=MPI.COMM_WORLD, **kw):
    geom = interval(n, 0.0, 1.0, comm=comm)
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).assign(1.0)
    return JKOFlow(entropy(geom), rho0, eta, 1e-3, form=form, stages=1, **kw)


def check_constant_state_growth(comm=MPI.COMM_WORLD):
    """Uniform P1 mesh, constant density: the rightmost mode is the alternating one,
    kappa = 12/h^2 exactly, growth -kappa + (eta/2) kappa^2, h_c = sqrt(6 eta)."""
    n, eta = 16, 0.01
    h = 1.0 / n
    kappa = 12 / h ** 2
    with pytest.raises(UnstableFormError) as info:
        constant_state_flow(n, eta, comm=comm)
    rep = info.value.report
    exact = -kappa + eta / 2 * kappa ** 2
    assert abs(rep.growth_rate - exact) < 1e-6 * exact, (rep.growth_rate, exact)
    assert abs(rep.kappa_max - kappa) < 1e-6 * kappa
    assert abs(rep.h_crit - math.sqrt(6 * eta)) < 1e-6
    msg = str(info.value)
    for word in ("growth rate", "h_c", "pseudo-parabolic", "allow_unstable"):
        assert word in msg, msg
    return rep


def test_stability_exact_on_constant_state():
    rep = check_constant_state_growth()
    # the dense generalised eigenproblem agrees with Arnoldi
    flow = constant_state_flow(16, 0.01, allow_unstable=True, stability_method="dense")
    assert abs(flow.stability.growth_rate - rep.growth_rate) < 1e-8 * rep.growth_rate
    # the pseudo-parabolic form on the same mesh: all modes decay
    pp = constant_state_flow(16, 0.01, form="pseudo-parabolic")
    assert pp.check_stability().growth_rate < 0
    assert pp.check_stability(method="dense").growth_rate < 0


def test_stability_flags_fine_passes_coarse_1d_2d():
    """Refused below, accepted above the critical size, h_c ~ pi sqrt(eta/2)."""
    eta = 0.01
    rule = math.pi * math.sqrt(eta / 2)
    # 1D near-constant state on [0, 1]
    for n, stable in ((2, True), (3, True), (6, False), (16, False)):
        geom = interval(n, 0.0, 1.0)
        rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate(
            1 + 0.2 * ufl.cos(ufl.pi * geom.x[0]))
        flow = JKOFlow(entropy(geom), rho0, eta, 1e-3, form="fisher", stages=1,
                       allow_unstable=True)
        rep = flow.stability
        assert rep.stable == stable == (rep.h_min > rep.h_crit), (n, rep)
        assert 0.9 < rep.h_crit / rule < 1.4, (rep.h_crit, rule)
    # 2D, crossed triangles on the unit square (h = the longest edge; in 2D the
    # resolved |k|^2 doubles and the crossed P1 mass matrix adds to it: h_c ~ 2.7 rule)
    for n, stable in ((1, True), (8, False)):
        geom = unit_square(n)
        X = geom.x
        rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate(
            1 + 0.2 * ufl.cos(ufl.pi * X[0]) * ufl.cos(ufl.pi * X[1]))
        flow = JKOFlow(entropy(geom), rho0, eta, 1e-3, form="fisher", stages=1,
                       allow_unstable=True)
        rep = flow.stability
        assert rep.stable == stable == (rep.h_min > rep.h_crit), (n, rep)
        assert 2.0 < rep.h_crit / rule < 3.5, (rep.h_crit, rule)
    # the OU Gaussian (1D P1, eta = 0.01): n = 64 (h = 0.28) runs, n = 96 is refused
    ou_flow_1d("fisher", eta, 64, 1, 0.1, qdeg=4, T_end=None)
    with pytest.raises(UnstableFormError, match="mesh-scale"):
        ou_flow_1d("fisher", eta, 96, 1, 0.1, qdeg=4, T_end=None)


def test_predicted_growth_is_real():
    """With allow_unstable=True, the alternating mode on a constant state grows exactly
    as the reported growth rate predicts (implicit Euler factor 1/(1 - dt lambda) per
    step) under the fisher form, and decays under the pseudo-parabolic form."""
    n, eta, dt, steps = 12, 0.01, 1e-5, 30
    amp = {}
    for form in ("fisher", "pseudo-parabolic"):
        flow = constant_state_flow(n, eta, form=form, allow_unstable=True,
                                   solver_parameters={"snes_atol": 1e-16, "snes_rtol": 1e-8})
        flow.dt = dt
        u = flow.u_field
        u.interpolate(u + 1e-6 * ufl.cos(n * ufl.pi * flow.geometry.x[0]))
        start = np.ptp(u.dat.data_ro)
        for _ in range(steps):
            flow.step()
        amp[form] = np.ptp(u.dat.data_ro) / start
    lam = constant_state_flow(n, eta, allow_unstable=True).stability.growth_rate
    predicted = (1 / (1 - dt * lam)) ** steps
    assert predicted > 50
    assert abs(amp["fisher"] / predicted - 1) < 5e-3, (amp, predicted)
    assert amp["pseudo-parabolic"] < 1


# --------------------------------------------------- JKO vs JKO-Flow, 1D
def w2_gaussian(m1, s1, m2, s2):
    return math.hypot(m1 - m2, s1 - s2)


def test_jko_minus_jkoflow_is_eta_squared_1d():
    """|JKO - WGF| ~ eta, |JKO - JKO-Flow| ~ eta^2 (W2 distance of the Gaussians at
    T = 1, exact JKO recursion), for both forms; the PDE reproduces the ODE values.
    The fisher form runs on the finest P2 mesh its stability check accepts."""
    etas = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
    d = {"wgf": [], "pseudo-parabolic": [], "fisher": []}
    wgf = ou_flow_1d("pseudo-parabolic", 0.0, 24, 2, 1 / 32, qdeg=12)
    mw, Sw = moments(wgf)
    for eta in etas:
        mj, sj = jko_gaussian(eta, round(T / eta))
        d["wgf"].append(w2_gaussian(mj, sj, mw, math.sqrt(Sw)))
        flow = ou_flow_1d("pseudo-parabolic", eta, 24, 2, 1 / 32, qdeg=12)
        m, S = moments(flow)
        d["pseudo-parabolic"].append(w2_gaussian(mj, sj, m, math.sqrt(S)))
        mo, So = gaussian_ode("pseudo-parabolic", eta)
        assert abs(d["pseudo-parabolic"][-1] / w2_gaussian(mj, sj, mo, math.sqrt(So)) - 1) < 0.02
        if eta > 1 / 8:
            continue
        n = math.ceil((BOX[1] - BOX[0]) / math.sqrt(30 * eta)) + 2   # P2: h_c ~ sqrt(30 eta)
        while True:
            try:
                flow = ou_flow_1d("fisher", eta, n, 2, 1 / 32, qdeg=30)
                break
            except UnstableFormError:
                n -= 1
        m, S = moments(flow)
        d["fisher"].append(w2_gaussian(mj, sj, m, math.sqrt(S)))
        mo, So = gaussian_ode("fisher", eta)
        assert abs(d["fisher"][-1] / w2_gaussian(mj, sj, mo, math.sqrt(So)) - 1) < 0.02
    slopes = {k: rates(v) for k, v in d.items()}
    assert np.all(np.abs(slopes["wgf"] - 1) < 0.1), slopes
    assert np.all(slopes["pseudo-parabolic"] > 1.85), slopes
    assert np.all(slopes["fisher"] > 1.9), slopes
    # the pseudo-parabolic form is the closer one (docs/maths/implicit_bias.rst)
    assert d["pseudo-parabolic"][-1] < 0.5 * d["fisher"][-1]


# ------------------------------------------------- sphere, torus, charts
def sphere_rate(form, eta, comm=MPI.COMM_WORLD):
    """Decay rate of the l = 2 mode x1 x2 (Lambda = 6) of a near-uniform density."""
    geom = sphere(1, comm=comm)
    X = geom.x
    Y = X[0] * X[1]
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate((1 + 1e-3 * Y) / (4 * np.pi))
    flow = JKOFlow(entropy(geom), rho0, eta, 0.025, form=form, stages=2)
    amp0 = float(assemble(Y * flow.rho_expr * flow.dx))
    flow.advance_to(0.5)
    assert_mass_exact(flow)
    assert flow.rho.dat.data_ro.min() > 0
    return math.log(float(assemble(Y * flow.rho_expr * flow.dx)) / amp0) / 0.5, flow


def test_sphere_linear_rates_both_forms():
    r"""A mode with discrete eigenvalue Lambda_h (measured from the WGF, eta = 0) decays
    at -Lambda + eta/2 Lambda^2 (fisher) and -Lambda/(1 + eta/2 Lambda) (pseudo-
    parabolic); exact JKO: -log(1 + eta Lambda)/eta."""
    lam_h = -sphere_rate("pseudo-parabolic", 0.0)[0]
    assert abs(lam_h - 6) < 1.0          # a coarse (42-vertex) sphere
    eta = 0.02
    fisher, flow = sphere_rate("fisher", eta)
    assert flow.stability.stable
    assert abs(fisher - (-lam_h + eta / 2 * lam_h ** 2)) < 2e-3 * lam_h
    pseudo, _ = sphere_rate("pseudo-parabolic", eta)
    assert abs(pseudo - (-lam_h / (1 + eta / 2 * lam_h))) < 2e-3 * lam_h
    # the fisher form on the next finer sphere is refused (eta_crit is reported)
    geom = sphere(2)
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).assign(1 / (4 * np.pi))
    with pytest.raises(UnstableFormError) as info:
        JKOFlow(entropy(geom), rho0, eta, 0.025, form="fisher")
    assert info.value.report.eta_crit < eta


@pytest.mark.parametrize("surface", ["sphere", "torus"])
def test_surface_jko_step_agreement(surface):
    r"""Heat flow on a coarse surface: JKO iterates (JKOStep, N = 4) against the
    JKO-Flow and the WGF at T = 0.4.  The two discretisations differ by an
    eta-independent spatial offset, so the slopes are measured on successive
    differences e(eta) - e(eta/2): O(eta^2) for the JKO-Flow, O(eta) for the WGF.
    Mass exact, positivity, decreasing entropy along the flow."""
    from jkoflow.solvers.jko import JKOStep
    if surface == "sphere":
        geom = sphere(2, degree=1)
        bump = 1 + 0.5 * geom.x[2]
    else:
        geom = torus(16, 8, degree=1)
        bump = 1 + 0.5 * geom.x[0] + 0.5 * geom.x[2]
    V = FunctionSpace(geom.mesh, "CG", 1)
    rho0 = geom.normalise(Function(V).interpolate(bump))
    E = entropy(geom)
    Tend = 0.4
    wgf = JKOFlow(E, rho0, 0.0, 0.02, stages=2)
    wgf.advance_to(Tend)
    eF, eW = [], []
    for eta in (0.2, 0.1, 0.05, 0.025):
        step = JKOStep(E, eta, 4)
        rho = rho0
        for _ in range(round(Tend / eta)):
            rho = step.solve(rho).rho
        flow = JKOFlow(E, rho0, eta, min(eta, 0.02), stages=2)
        series = flow.add_observer(TimeSeries())
        flow.advance_to(Tend)
        assert_mass_exact(flow)
        assert flow.rho.dat.data_ro.min() > 0
        assert np.all(np.diff(series["energy"]) < 0)
        eF.append(Function(V).interpolate(rho - flow.rho_expr))
        eW.append(Function(V).interpolate(rho - wgf.rho_expr))

    def diffs(e):
        return [math.sqrt(float(assemble((a - b) ** 2 * geom.dx))) for a, b in zip(e, e[1:])]
    dF, dW = diffs(eF), diffs(eW)
    sF, sW = rates(dF), rates(dW)
    assert np.all(sF > 1.5) and sF[-1] > 1.7, (dF, sF)
    assert np.all(np.abs(sW - 1) < 0.25), (dW, sW)
    assert dF[-1] < 0.1 * dW[-1]


def test_porous_medium_linear_rates():
    r"""PME (m = 2, density variable) near rho = 1: D = 2, and a cosine mode decays at
    -D Lambda + eta/2 D^2 Lambda^2 (fisher) and -D Lambda/(1 + eta/2 D Lambda)."""
    geom = interval(6, 0.0, 1.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 1)
    mode = ufl.cos(ufl.pi * x)
    rho0 = Function(V).interpolate(1 + 1e-4 * mode)

    def rate(form, eta):
        flow = JKOFlow(porous_medium(geom, 2.0), rho0, eta, 2e-3, form=form, stages=2)
        assert flow.variable == "density"
        a0 = float(assemble(mode * flow.rho_expr * flow.dx))
        flow.advance_to(0.02)
        assert_mass_exact(flow)
        assert flow.min_density > 0
        return math.log(float(assemble(mode * flow.rho_expr * flow.dx)) / a0) / 0.02, flow
    dlam = -rate("pseudo-parabolic", 0.0)[0]          # D Lambda_h (P1, 6 cells)
    assert abs(dlam - 2 * math.pi ** 2) < 0.05 * dlam
    eta = 1.5e-3     # P1, h = 1/6: D kappa_max = 2 * 12/h^2 = 864 < 2/eta
    fisher, flow = rate("fisher", eta)
    assert flow.stability.stable
    assert abs(fisher - (-dlam + eta / 2 * dlam ** 2)) < 1e-3 * dlam
    pseudo, _ = rate("pseudo-parabolic", 0.02)
    assert abs(pseudo - (-dlam / (1 + 0.01 * dlam))) < 1e-3 * dlam


def test_potential_energy_kinetic_bias():
    r"""J = int V rho, V = a x^2/2: the JKO-Flow transports by the modified potential
    V - eta/4 |V'|^2, so a Gaussian keeps its shape, m' = -a(1 - eta a/2) m and
    S' = -2a(1 - eta a/2) S (and the exact JKO map x/(1 + a eta) agrees to O(eta^2))."""
    a, eta, Tend = 0.5, 0.2, 0.5
    geom = interval(160, -5.0, 6.0)
    x = geom.x[0]
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate(
        ufl.exp(-(x - 1.0) ** 2 / 2))
    for form in ("fisher", "pseudo-parabolic"):
        flow = JKOFlow(potential_energy(geom, a * x ** 2 / 2), rho0, eta, 0.05, form=form,
                       stages=2)
        assert flow.stability is None    # no internal energy: no fourth-order term
        flow.advance_to(Tend)
        assert_mass_exact(flow)
        c = a * (1 - eta * a / 2)
        m, S = moments(flow)
        assert abs(m - math.exp(-c * Tend)) < 1e-4 and abs(S - math.exp(-2 * c * Tend)) < 1e-4


def test_metric_chart_poincare_disk():
    """KL on the hyperbolic disk: mass exact, positive, energy decreasing."""
    geom = poincare_disk(2, r0=0.6)
    X = geom.x
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate(
        ufl.exp(-4 * ((X[0] - 0.2) ** 2 + X[1] ** 2)))
    flow = JKOFlow(kl(geom, X[0] ** 2 + X[1] ** 2), rho0, 0.02, 0.01, stages=2)
    series = flow.add_observer(TimeSeries())
    flow.advance_to(0.1)
    assert_mass_exact(flow)
    assert flow.rho.dat.data_ro.min() > 0
    assert np.all(np.diff(series["energy"]) < 0)
    assert np.allclose(series["mass"], series["mass"][0], rtol=1e-12)


# --------------------------------------------- observers, output, adaptivity
def test_observers_output_adaptive(tmp_path):
    geom = interval(24, *BOX)
    x = geom.x[0]
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate(
        ufl.exp(-(x - M0) ** 2 / (2 * S0)))
    flow = JKOFlow(kl(geom, A * x ** 2 / 2), rho0, 0.1, 0.05, stages=2, adaptive=True,
                   tol=1e-5, quadrature_degree=12)
    series = flow.add_observer(TimeSeries({"energy": lambda s: s.energy_value(),
                                           "mass": lambda s: s.mass(),
                                           "J_eta": lambda s: s.modified_energy_value()}))
    if importable("vtkmodules"):
        flow.add_observer(VTKOutput(str(tmp_path / "jkoflow.pvd")))
    flow.advance_to(T)
    assert flow.t == T and len(series) == flow.num_steps + 1
    err = np.abs(np.subtract(moments(flow), gaussian_ode("pseudo-parabolic", 0.1))).max()
    assert err < 1e-4, err
    assert np.all(np.diff(series["energy"]) < 0) and np.all(np.diff(series["J_eta"]) < 0)
    assert np.allclose(series["mass"], series["mass"][0], rtol=1e-12)
    names = [f.name() for f in flow.output_functions()]
    assert names == ["density", "log_density", "chemical_potential"], names
    if importable("vtkmodules"):
        assert os.path.exists(tmp_path / "jkoflow.pvd")
    assert flow.solver_stats()[0] == flow.num_steps


def test_checkpoint_restart(tmp_path):
    """The mixed state (u, mu) is checkpointed every step; a restart from step 2
    reproduces the uninterrupted run."""
    chk = str(tmp_path / "jkoflow.h5")
    flow = ou_flow_1d("pseudo-parabolic", 0.1, 24, 2, 0.1, qdeg=12, T_end=None)
    flow.add_observer(Checkpointer(chk))
    flow.advance_to(0.4)
    final = np.array([*moments(flow), flow.energy_value()])

    def build(mesh, rho):
        geom = Geometry(mesh, name="restart")
        return JKOFlow(kl(geom, A * geom.x[0] ** 2 / 2), rho, 0.1, 0.1, stages=2,
                       quadrature_degree=12)

    flow2 = restart(chk, build, step=2)
    assert abs(flow2.t - 0.2) < 1e-14
    flow2.advance_to(0.4)
    assert np.allclose([*moments(flow2), flow2.energy_value()], final, rtol=1e-10), final


def importable(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def test_bad_input():
    geom = interval(8, -3, 3)
    V = FunctionSpace(geom.mesh, "CG", 1)
    e = kl(geom, geom.x[0] ** 2 / 2)
    good = Function(V).assign(1.0)
    with pytest.raises(ValueError, match="valid: .*'pseudo-parabolic'"):
        JKOFlow(e, good, 0.1, 0.1, form="truncated")
    with pytest.raises(ValueError, match="valid: .*'log'"):
        JKOFlow(e, good, 0.1, 0.1, variable="exp")
    for eta in (-0.1, float("nan"), "big"):
        with pytest.raises(ValueError, match="eta"):
            JKOFlow(e, good, eta, 0.1)
    for dt in (0.0, -1.0):
        with pytest.raises(ValueError, match="dt"):
            JKOFlow(e, good, 0.1, dt)
    with pytest.raises(ValueError, match="strictly positive"):
        JKOFlow(e, Function(V).interpolate(geom.x[0] + 3), 0.1, 0.1)
    with pytest.raises(ValueError, match="negative"):
        JKOFlow(porous_medium(geom), Function(V).interpolate(geom.x[0]), 0.1, 0.1)
    with pytest.raises(ValueError, match="different mesh"):
        other = interval(8, -3, 3)
        JKOFlow(e, Function(FunctionSpace(other.mesh, "CG", 1)).assign(1.0), 0.1, 0.1)
    with pytest.raises(TypeError, match="Energy"):
        JKOFlow("kl", good, 0.1, 0.1)
    with pytest.raises(ValueError, match="stability method"):
        JKOFlow(e, good, 0.1, 0.1).check_stability(method="slepc")


# -------------------------------------------------------------- parallel
@pytest.mark.parallel(nprocs=2)
def test_parallel_stability_exact():
    check_constant_state_growth()


@pytest.mark.parallel(nprocs=2)
def test_parallel_reproduces_serial():
    """The 2D Gaussian (fisher, with its stability check) and the sphere on 2 ranks
    give the serial answers (computed on COMM_SELF on each rank)."""
    res = []
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        flow = ou_flow_2d("fisher", 0.01, 8, 2, 1 / 8, qdeg=8, T_end=0.25, comm=comm)
        assert_mass_exact(flow)
        res.append(np.array([*errors_2d(flow, "fisher", 0.01), flow.energy_value(),
                             flow.stability.growth_rate]))
    assert np.abs(res[0][:4]).max() < 1e-4, res
    assert np.allclose(res[0][:-1], res[1][:-1], rtol=1e-8, atol=1e-12), res
    # the rightmost mode is the slowest mean mode, m2' = -a2 (1 - eta a2/2) m2
    slowest = -A2[1] * (1 - 0.01 * A2[1] / 2)
    assert abs(res[0][-1] / slowest - 1) < 2e-3 and abs(res[1][-1] / slowest - 1) < 2e-3, res
    rw = sphere_rate("pseudo-parabolic", 0.02, comm=MPI.COMM_WORLD)[0]
    rs = sphere_rate("pseudo-parabolic", 0.02, comm=MPI.COMM_SELF)[0]
    assert abs(rw - rs) < 1e-9, (rw, rs)
