"""Log-density steps with the vertex rule (``quadrature="vertex"``) and the symmetric
LDL^T solve of their Newton systems (preset ``"ldlt"``, jkoflow.solvers.symmetric_solve).

* one step of the 1D Gaussian converges at order 2 in h, as with Gauss quadrature,
  conserving mass;
* the Jacobian with its log-density rows scaled by the nodal densities is symmetric
  with the vertex rule (and is not with Gauss quadrature) away from the solution, for
  a JKO step, a corrected step (its Fisher term differentiated in the nodal
  densities) and a geodesic;
* LDL^T takes the same Newton steps as LU, to round-off, for the three and for a step
  on the sphere; on two ranks it matches a serial solve;
* the corrected scheme with the vertex rule is second order in eta, plain JKO first;
* a Jacobian whose log-densities span too much is factorised by LU (logged);
* bad combinations are refused with the reason; a checkpoint records the rule.
"""
import logging

import numpy as np
import pytest
import scipy.sparse as sp
import ufl
from firedrake import COMM_SELF, COMM_WORLD, Function, FunctionSpace, assemble
from firedrake.petsc import PETSc

from conftest import Records, rates
from jkoflow.meshes import Geometry, interval, rectangle, sphere
from jkoflow.solvers import (CheckpointError, JKOScheme, JKOStep, W2Geodesic, kl, porous_medium,
                             restart, symmetric_solve)


def gaussian_step(n, degree, quadrature="gauss"):
    """Moments of one KL step (N = 4, eta = 0.1) from N(2, 0.25) to N(0, 1) on [-5, 6]."""
    geom = interval(n, -5.0, 6.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", degree)
    l0 = Function(V).interpolate(-(x - 2.0) ** 2 / 0.5 - 0.5 * ufl.ln(0.5 * ufl.pi))
    step = JKOStep(kl(geom, x ** 2 / 2), 0.1, 4, degree=degree, quadrature=quadrature)
    res = step.solve(log_rho_k=l0)
    rho = ufl.exp(res.log_rho)
    m = float(assemble(x * rho * step.dx))
    return m, float(assemble((x - m) ** 2 * rho * step.dx)), res.mass, step.mass(l0)


def test_vertex_rule_converges_at_order_two():
    m_ref, s2_ref, _, _ = gaussian_step(110, 2)
    errs = []
    for n in (22, 44, 88):
        m, s2, mass, mass0 = gaussian_step(n, 1, "vertex")
        assert abs(mass - mass0) < 1e-12 * mass0
        errs.append(abs(m - m_ref) + abs(s2 - s2_ref))
    r = rates(errs)
    assert np.all(r > 1.7), (errs, r)


def bump(n, comm=COMM_WORLD):
    geom = rectangle(n, n, -3.0, 3.0, -3.0, 3.0, diagonal="left", comm=comm)
    x, y = geom.x
    V = FunctionSpace(geom.mesh, "CG", 1)
    rho0 = Function(V).interpolate(ufl.exp(-((x - 0.5) ** 2 + y ** 2) / 0.5) + 1e-3)
    return kl(geom, (x ** 2 + y ** 2) / 2), rho0


def build(kind, n=8, quadrature="vertex", solver="direct", comm=COMM_WORLD, prefix=""):
    """A JKO step, a corrected step or a geodesic on the bump (or a JKO step on the
    sphere), ready to solve; and the call that solves it."""
    if kind == "sphere":
        geom = sphere(2, comm=comm)
        x = geom.x
        P1 = FunctionSpace(geom.mesh, "CG", 1)
        rho0 = Function(P1).interpolate(ufl.exp(3 * x[2]) + 1e-3)
        step = JKOStep(kl(geom, -2 * x[0]), 0.1, 4, quadrature=quadrature,
                       solver_parameters=solver, options_prefix=f"vq_{prefix}sphere_")
        return step, lambda: step.solve(rho0)
    energy, rho0 = bump(n, comm)
    if kind == "geodesic":
        x, y = energy.geometry.x
        V = rho0.function_space()
        l0 = Function(V).interpolate(ufl.ln(rho0))
        l1 = Function(V).interpolate(ufl.ln(ufl.exp(-((x + 0.5) ** 2 + (y - 0.3) ** 2) / 0.4)
                                            + 1e-3))
        solver_ = W2Geodesic(energy.geometry, 4, quadrature=quadrature,
                             solver_parameters=solver, options_prefix=f"vq_{prefix}geo_")
        l1 += np.log(solver_.mass(l0) / solver_.mass(l1))     # equal masses
        return solver_, lambda: solver_.solve(log_rho0=l0, log_rho1=l1)
    correction = "implicit-bias" if kind == "corrected" else None
    step = JKOStep(energy, 0.05, 4, quadrature=quadrature, correction=correction,
                   solver_parameters=solver, options_prefix=f"vq_{prefix}{kind}_")
    return step, lambda: step.solve(rho0)


def scaled_asymmetry(step) -> float:
    """||S - S^T|| / ||S|| for S the Jacobian at the current state with its log-density
    rows scaled by the nodal densities (serial)."""
    J = step.solver.jacobian()
    ai, aj, av = J.getValuesCSR()
    S = sp.csr_matrix((av, aj, ai), shape=J.getSize())
    d = np.ones(S.shape[0])
    idx = step.field_indices(step.rho_fields)
    with step.w.dat.vec_ro as w:
        d[idx] = np.exp(w.getArray(readonly=True)[idx])
    S = sp.diags(d) @ S
    return abs(S - S.T).max() / abs(S).max()


@pytest.mark.parametrize("kind", ["jko", "corrected", "geodesic"])
def test_scaled_jacobian_is_symmetric_with_the_vertex_rule(kind):
    asym = {}
    for quadrature in ("vertex", "gauss"):
        step, solve = build(kind, quadrature=quadrature, prefix=quadrature)
        seen = []

        def monitor(snes, it, fnorm):
            if it == 1:        # one Newton step in: far from the solution
                seen.append(scaled_asymmetry(step))
        step.solver.snes.setMonitor(monitor)
        solve()
        asym[quadrature] = seen[0]
    assert asym["vertex"] < 1e-13, asym
    assert asym["gauss"] > 1e-3, asym


def newton_history(step, solve):
    history = []
    step.solver.snes.setMonitor(lambda snes, it, fnorm: history.append(fnorm))
    return solve(), history


@pytest.mark.parametrize("kind", ["jko", "corrected", "geodesic", "sphere"])
def test_ldlt_takes_the_newton_steps_of_lu(kind):
    results = {}
    for solver in ("direct", "ldlt"):
        step, solve = build(kind, solver=solver, prefix=solver)
        res, history = newton_history(step, solve)
        results[solver] = (res, history, step)
    (lu, h_lu, _), (ld, h_ld, step) = results["direct"], results["ldlt"]
    assert len(h_lu) == len(h_ld) and len(h_lu) >= 3
    # the same iterates: residuals agree until round-off dominates them
    for a, b in zip(h_lu, h_ld):
        assert abs(a - b) <= 1e-6 * a + 1e-11, (h_lu, h_ld)
    # (the same mesh built twice: the same numbering)
    mid_lu, mid_ld = lu.slices[2].dat.data_ro, ld.slices[2].dat.data_ro
    assert np.abs(mid_lu - mid_ld).max() < 1e-10 * mid_lu.max()
    assert abs(lu.cost - ld.cost) < 1e-10 * lu.cost
    pc = step.solver.snes.getKSP().getPC().getPythonContext()
    assert isinstance(pc, symmetric_solve.ScaledLDLTPC) and pc.fallbacks == 0


def test_wide_log_range_falls_back_to_lu(monkeypatch):
    monkeypatch.setattr(symmetric_solve, "MAX_LOG_RANGE", 1.0)
    step, solve = build("jko", solver="ldlt", prefix="fallback")
    ref, solve_ref = build("jko", solver="direct", prefix="fallback_ref")
    with Records() as rec:
        res = solve()
    pc = step.solver.snes.getKSP().getPC().getPythonContext()
    assert pc.fallbacks == res.snes_iterations
    assert any("factorised by LU" in m for m in rec.messages(logging.INFO))
    assert abs(res.cost - solve_ref().cost) < 1e-10 * res.cost


def test_refused_combinations():
    energy, _ = bump(4)
    with pytest.raises(ValueError, match="quadrature='vertex'"):
        JKOStep(energy, 0.05, 2, solver_parameters="ldlt")
    with pytest.raises(ValueError, match="variable='log'"):
        JKOStep(energy, 0.05, 2, variable="density", quadrature="vertex",
                solver_parameters="ldlt")
    with pytest.raises(ValueError, match="not entropic"):
        JKOStep(porous_medium(energy.geometry, 2.0), 0.05, 2, variable="log",
                quadrature="vertex", correction="implicit-bias", solver_parameters="ldlt")
    with pytest.raises(ValueError, match="needs P1"):
        JKOStep(energy, 0.05, 2, degree=2, quadrature="vertex")
    with pytest.raises(ValueError, match="no quadrature_degree"):
        JKOStep(energy, 0.05, 2, quadrature="vertex", quadrature_degree=4)
    with pytest.raises(ValueError, match="valid: 'gauss', 'vertex'"):
        JKOStep(energy, 0.05, 2, quadrature="lobatto")


def test_checkpoint_records_the_rule(tmp_path):
    path = str(tmp_path / "vertex.h5")
    energy, rho0 = bump(6)
    scheme = JKOScheme(energy, rho0, 0.05, 2, quadrature="vertex", solver_parameters="ldlt",
                       checkpoint=path)
    scheme.run(2)
    assert scheme.variable == "log"

    def rebuild(quadrature):
        def make(mesh, rho):
            geom = Geometry(mesh, name=energy.geometry.name)
            x, y = geom.x
            return JKOScheme(kl(geom, (x ** 2 + y ** 2) / 2), rho, 0.05, 2,
                             quadrature=quadrature, checkpoint=path,
                             checkpoint_mode="resume")
        return make

    with pytest.raises(CheckpointError, match="quadrature: checkpoint 'vertex'"):
        restart(path, rebuild("gauss"))
    resumed = restart(path, rebuild("vertex"))
    assert resumed.k == 2
    assert abs(resumed.energy_value() - scheme.energy_value()) < 1e-12


@pytest.mark.parallel(nprocs=2)
@pytest.mark.parametrize("kind", ["jko", "corrected"])
def test_ldlt_parallel_matches_serial(kind):
    out = {}
    for comm in (COMM_WORLD, COMM_SELF):
        step, solve = build(kind, n=12, solver="ldlt", comm=comm,
                            prefix=f"par{comm.size}_")
        res = solve()
        x, y = step.geometry.x
        out[comm.size] = (res.cost, float(assemble(x * res.rho * step.dx)),
                          res.snes_iterations)
    PETSc.Sys.Print(f"ldlt, {kind}: 2 ranks {out[2]}, serial {out[1]}")
    assert out[2][2] == out[1][2]
    assert abs(out[2][0] - out[1][0]) < 1e-9 * out[1][0]
    assert abs(out[2][1] - out[1][1]) < 1e-9


def test_scheme_gives_density_unknowns_the_direct_solver():
    """A scheme with the 'ldlt' solver that chooses density unknowns itself (the data
    vanish on an open set) solves them with 'direct' and says so; the vertex rule
    serves density unknowns too."""
    energy, _ = bump(10)
    x, y = energy.geometry.x
    V = FunctionSpace(energy.geometry.mesh, "CG", 1)
    rho0 = Function(V).interpolate(ufl.max_value(1 - (x ** 2 + y ** 2), 0.0))
    with Records() as rec:
        scheme = JKOScheme(energy, rho0, 0.05, 2, quadrature="vertex",
                           solver_parameters="ldlt")
        scheme.run(2)
    assert scheme.variable == "density"
    assert any("'direct' solver" in m for m in rec.messages(logging.INFO))
    masses = [h["mass"] for h in scheme.history]
    assert max(masses) - min(masses) < 1e-10 * masses[0]
    assert np.all(np.diff([h["energy"] for h in scheme.history]) < 0)
    assert min(h["min_rho"] for h in scheme.history) >= 0


def test_corrected_vertex_rule_is_second_order():
    """The corrected scheme with the vertex rule (its Fisher term differentiated in the
    nodal densities, solved by LDL^T) is second order in eta; plain JKO first order.
    Reference: the corrected scheme at eta = T/32 with the same discretisation (the
    steps' own limit eta -> 0 is a WGF with the vertex rule, which no other solver
    discretises).  Quartic potential on 30 P1 cells, N = 4, T = 1/4, as
    test_second_order's Gauss-quadrature test."""
    geom = interval(30, -2.5, 3.0)
    x = geom.x[0]
    energy = kl(geom, x ** 4 / 4)
    l0 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate(-(x - 1) ** 2 / 0.5)
    T = 0.25

    def run(n, correction):
        scheme = JKOScheme(energy, None, T / n, 4, log_rho0=l0, correction=correction,
                           quadrature="vertex", solver_parameters="ldlt")
        scheme.run(n)
        masses = [h["mass"] for h in scheme.history]
        assert max(masses) - min(masses) < 1e-12 * masses[0]
        return scheme

    ref = run(32, "implicit-bias")
    dx = ref.jko.dx
    errors = {None: [], "implicit-bias": []}
    for n in (2, 4, 8):
        for corr in errors:
            scheme = run(n, corr)
            errors[corr].append(float(assemble(abs(scheme.rho_expr - ref.rho_expr) * dx)))
    PETSc.Sys.Print(f"vertex rule: plain {errors[None]}, corrected {errors['implicit-bias']}")
    assert min(rates(errors["implicit-bias"])) > 1.6
    assert 0.75 < min(rates(errors[None])) <= max(rates(errors[None])) < 1.15
    assert errors["implicit-bias"][-1] < 0.1 * errors[None][-1]


def test_nodally_scaled_row_jacobian_matches_finite_differences():
    """The Jacobian of a corrected step with the vertex rule, whose last row has a
    nodally scaled part (SliceAssembledSolver's log_scaled_rows), against central
    differences of the residual at a state away from the solution."""
    step, solve = build("corrected", n=6)
    step.initial_guess()
    rng = np.random.default_rng(1)
    for f in step.w.subfunctions:
        f.dat.data[:] += 0.3 * rng.standard_normal(f.dat.data.shape)
    solver = step.solver
    with step.w.dat.vec_ro as w:
        x0 = w.copy()
    J = solver.jacobian()
    d = x0.duplicate()
    d.setArray(rng.standard_normal(d.getLocalSize()))
    Jd, Fp, Fm = x0.duplicate(), x0.duplicate(), x0.duplicate()
    J.mult(d, Jd)
    eps = 1e-6
    for sign, F in ((1, Fp), (-1, Fm)):
        x = x0.copy()
        x.axpy(sign * eps, d)
        solver.form_function(solver.snes, x, F)
    Fp.axpy(-1.0, Fm)
    Fp.scale(0.5 / eps)
    # the whole residual, and the scaled row's block alone (an error confined there
    # could hide in the norm of the whole vector)
    last = step.field_indices(slice(step.n_rho - 1, step.n_rho)) - x0.getOwnershipRange()[0]
    fd, jd = Fp.getArray(), Jd.getArray()
    assert np.abs(fd - jd).max() < 1e-6 * np.abs(jd).max()
    assert np.abs(fd[last] - jd[last]).max() < 1e-6 * np.abs(jd[last]).max()
    assert list(solver.log_scaled_rows) == [step.n_rho - 1]     # the path under test
