"""JKO steps and W2 geodesics with density unknowns (the interior point) against
exact answers, for densities that vanish on open sets.

* porous medium: a JKO step maps the Barenblatt profile B(s_k) exactly onto
  B(s_{k+1}) (the optimal map is a dilation), (s_k/s_{k+1})^beta = 1 - beta tau/s_{k+1},
  beta = alpha/d; the L1 error against B(s_K) falls under refinement, from a
  compactly supported start (no floor), on a square and a disk, m = 2 and 3;
* potential energy: one step is the push-forward by the proximal map,
  rho_{k+1}(y) = rho_k(y + eta grad V(y)) det(I + eta Hess V(y));
* geodesics between compactly supported densities (translation: W2^2 = |v|^2);
* bounded Newton iteration counts, bad input, and 2 ranks = serial.
"""
import numpy as np
import pytest
import ufl
from firedrake import COMM_SELF, COMM_WORLD, Function, FunctionSpace
from firedrake.petsc import PETSc

from conftest import Records
from jkoflow.meshes import disk, interval, rectangle, unit_square
from jkoflow.solvers import (JKOScheme, JKOStep, W2Geodesic, barenblatt, barenblatt_constants,
                             barenblatt_jko_time, entropy, kl, porous_medium,
                             potential_energy)


# ------------------------------------------------------------ Barenblatt
def test_barenblatt_recursion_is_a_minimiser_over_dilations():
    """The recursion minimises W2^2(B(s_k), B(s))/(2 tau) + J(B(s)) over s (d = 1,
    W2 by quantiles): a check of the derivation independent of the solver."""
    m, d, C, s0, tau = 2.0, 1, 0.3, 0.01, 0.005
    r = np.linspace(-3, 3, 200001)
    dr = r[1] - r[0]
    alpha, beta, k = barenblatt_constants(m, d)

    def objective(s):
        rho = s ** -alpha * np.maximum(C - k * r ** 2 * s ** (-2 * beta), 0)
        lam = (s0 / s) ** beta             # B(s0) is B(s) dilated by lam
        return (lam - 1) ** 2 * np.sum(r ** 2 * rho) * dr / (2 * tau) + np.sum(rho ** m) * dr

    s = np.linspace(s0 + 0.5 * tau, s0 + 1.5 * tau, 1001)
    best = s[np.argmin([objective(v) for v in s])]
    assert abs(best - barenblatt_jko_time(s0, tau, m, d)) <= s[1] - s[0]


def barenblatt_steps(geometry, centre, m, steps, t0, tau, N=2):
    """K JKO steps from B(t0); returns the L1 errors against B(s_K) and the history."""
    d = geometry.x.ufl_shape[0]
    C = 0.2 if m == 2 else 0.04          # support radius ~0.3 at t0 = 1e-3
    V = FunctionSpace(geometry.mesh, "CG", 1)
    rho = Function(V).interpolate(barenblatt(geometry.x, t0, C, m, centre))
    energy = porous_medium(geometry, m)
    step = JKOStep(energy, tau, N)
    s, hist = t0, []
    m0 = step.mass(rho)
    for _ in range(steps):
        res = step.solve(rho)
        rho.assign(res.rho)
        s = barenblatt_jko_time(s, tau, m, d)
        hist.append((res.mass, energy.value(rho), float(rho.dat.data_ro.min(initial=np.inf)),
                     res.snes_iterations))
    exact = barenblatt(geometry.x, s, C, m, centre)
    return geometry.integrate(abs(rho - exact), degree=6), m0, hist


@pytest.mark.parametrize("m", [2.0, 3.0])
@pytest.mark.parametrize("domain", ["square", "disk"])
def test_barenblatt_exact_jko_steps(domain, m):
    """Two JKO steps from B(t0) (compact support, no floor): the L1 error against
    B(s_2) falls under refinement; min rho >= 0, mass to round-off, J decreasing."""
    if domain == "square":
        meshes, centre = [unit_square(n) for n in (12, 24)], (0.5, 0.5)
    else:
        meshes, centre = [disk(r, radius=0.5) for r in (2, 3)], (0.0, 0.0)
    errors = []
    for geom in meshes:
        err, m0, hist = barenblatt_steps(geom, centre, m, 2, t0=1e-3, tau=5e-4)
        errors.append(err)
        masses, energies, mins, its = map(np.array, zip(*hist))
        assert np.max(np.abs(masses - m0)) < 1e-10 * m0
        assert np.all(mins >= 0)
        assert np.all(np.diff(energies) < 0)
        assert np.max(its) <= 60, its
    PETSc.Sys.Print(f"Barenblatt {domain} m={m}: L1 errors {errors}")
    assert errors[1] < 0.6 * errors[0], errors


def test_loose_barrier_problems_take_fewer_newton_iterations():
    """Intermediate barrier problems solved only to 300 mu (the default) instead of
    10 mu: the same two steps (Barenblatt m = 2 from compact support on 24x24
    squares; KL from a Gaussian bump on [-4, 4], whose tails fall to 3e-18) to 1e-7
    relative, in fewer Newton iterations (31 against 36, and 32 against 38), with
    mass, positivity and the barrier levels' order kept."""
    geom = unit_square(24)
    V = FunctionSpace(geom.mesh, "CG", 1)
    rho0 = Function(V).interpolate(barenblatt(geom.x, 1e-3, 0.2, 2.0, (0.5, 0.5)))
    line = interval(120, -4.0, 4.0)
    bump = Function(FunctionSpace(line.mesh, "CG", 1)).interpolate(
        ufl.exp(-(line.x[0] - 0.5) ** 2 / 0.5))
    for energy, rho, eta, N in ((porous_medium(geom, 2.0), rho0, 5e-4, 2),
                                (kl(line, line.x[0] ** 2 / 2), bump, 0.1, 4)):
        runs = {}
        for name, barrier in (("loose", None), ("tight", {"kappa_eps": 10.0})):
            step = JKOStep(energy, eta, N, variable="density", barrier=barrier)
            first = step.solve(rho)
            second = step.solve(first.rho)
            runs[name] = (first.snes_iterations + second.snes_iterations, second)
            mus = [mu for mu, _ in second.barrier_levels]
            assert mus == sorted(mus, reverse=True) and mus[-1] == pytest.approx(1e-6)
            assert float(second.rho.dat.data_ro.min()) >= 0
            assert abs(second.mass - step.mass(rho)) < 1e-10 * second.mass
        (loose, a), (tight, b) = runs["loose"], runs["tight"]
        PETSc.Sys.Print(f"{energy.name}: Newton {loose} (loose) against {tight} (tight)")
        diff = Function(a.rho.function_space()).assign(a.rho - b.rho)
        assert np.max(np.abs(diff.dat.data_ro)) < 1e-7 * np.max(np.abs(b.rho.dat.data_ro))
        assert loose <= 0.9 * tight, (loose, tight)


# ------------------------------------------------------- potential energy
def potential_case(d, which, eta, n, N=4, centre=(0.3, -0.2), std=0.15, diagonal="left"):
    """One step for J = int V rho from a Gaussian bump on [-1, 1]^d (2D: n x n squares
    cut along one ``diagonal``); returns the L1 errors of the step and of the P1
    interpolant of the exact answer, and the result."""
    if d == 1:
        geom = interval(n, -1.0, 1.0)
    else:
        geom = rectangle(n, n, -1.0, 1.0, -1.0, 1.0, diagonal=diagonal)
    x = geom.x
    V = FunctionSpace(geom.mesh, "CG", 1)

    def bump(y):
        return ufl.exp(-sum((y[i] - centre[i]) ** 2 for i in range(d)) / (2 * std ** 2))

    if which == "quadratic":         # V = |x|^2/2: y + eta grad V = (1 + eta) y
        pot = sum(x[i] ** 2 for i in range(d)) / 2
        pre = [(1 + eta) * x[i] for i in range(d)]
        jac = (1 + eta) ** d
    else:                            # V = x1^4/4 + x2^2/2
        pot = x[0] ** 4 / 4 + (x[1] ** 2 / 2 if d == 2 else 0)
        pre = [x[0] + eta * x[0] ** 3] + ([(1 + eta) * x[1]] if d == 2 else [])
        jac = (1 + 3 * eta * x[0] ** 2) * ((1 + eta) if d == 2 else 1)
    rho0 = Function(V).interpolate(bump(x))
    exact = bump(ufl.as_vector(pre)) * jac
    res = JKOStep(potential_energy(geom, pot), eta, N).solve(rho0)
    err = geom.integrate(abs(res.rho - exact), degree=8)
    err_interp = geom.integrate(abs(Function(V).interpolate(exact) - exact), degree=8)
    return err, err_interp, res


#: (d, V, cells per side, N): the resolution at which the requirement holds.
POTENTIAL_CASES = [(1, "quadratic", 200, 8), (1, "quartic", 200, 8),
                   pytest.param(2, "quadratic", 32, 4, marks=pytest.mark.slow),
                   pytest.param(2, "quartic", 32, 4, marks=pytest.mark.slow)]


@pytest.mark.parametrize("eta", [0.05, 0.1, 0.2])
@pytest.mark.parametrize("d, which, n, N", POTENTIAL_CASES)
def test_potential_energy_exact_step(d, which, n, N, eta):
    """The step is the push-forward by the proximal map: L1 error at most twice that
    of the P1 interpolant of the exact answer (the issue's requirement).

    Measured ratios (error / interpolant's error, eta = 0.05, 0.1, 0.2):

    * 1D, 200 cells (15 cells per std), N = 8: quadratic 0.87, 0.78, 0.92; quartic
      0.97, 0.94, 0.89.  With N = 4 the quadratic case at eta = 0.2 gives 2.15: the
      transport-time error, about 5e-3 (eta/0.2)^3 / N^2 for this bump (negligible
      for the quartic potential, whose gradient is small there), is second order in 1/N but does not fall with h
      while the interpolant's error does (N = 2, 4, 8 at 800 cells: ratios 105, 28,
      7.3).  With 100 cells N = 4 suffices (0.78-0.97).
    * 2D, 32^2 squares cut along one diagonal (2.4 cells per std), N = 4: quadratic
      0.88, 0.79, 0.66; quartic 0.92, 0.85, 0.75; on 16^2 and 64^2 the same to +-0.1
      (N = 4): the ratio tends to a constant below one under refinement.
    * NOT on the default crossed meshes (four triangles per square): there the ratio
      was 2.2-6 on 32^2 and grows like 1/h^2 (7.8 and 22 on 64^2, eta = 0.05, 0.2,
      N = 2), because the L1 error stays at 4e-3 / 1.3e-2 under refinement.  On
      that mesh the corner-to-corner P1 stiffness couplings vanish (the opposite
      angles are right angles), and the consistent-mass discrete divergence
      M^-1 K phi of a smooth potential is a checkerboard: 6 at the square centres, 0
      at the corners for phi = |x|^2/2 (exact 2).  The step's density carries that
      O(eta) alternation between centre and corner vertices (nodal error up to 0.3
      for a peak of 1.4 at eta = 0.2); moments are right, the L1 error is not.
      Measured there (32^2, eta = 0.2, ratio 5.6 with N = 2): N = 4 6.0; mu_min
      1e-9 5.8; tol 1e-11, start_mix 0.01 or 0.5, quadrature degree 6: 5.6 (degree 2:
      7.7); lumping the continuity equation's mass 6.1 (and 1.8 instead of 0.74 on
      the one-diagonal mesh); log unknowns (geometric mean, no barrier) 2.1.
    """
    err, err_interp, res = potential_case(d, which, eta, n, N=N)
    PETSc.Sys.Print(f"potential d={d} {which} eta={eta} n={n} N={N}: L1 {err:.3e}, "
                    f"interpolant {err_interp:.3e}, ratio {err / err_interp:.2f}, "
                    f"Newton {res.snes_iterations}")
    assert err <= 2.0 * err_interp, (err, err_interp)
    assert res.snes_iterations <= 60
    assert float(res.rho.dat.data_ro.min(initial=np.inf)) >= 0


# ------------------------------------------------------------- geodesics
def compact_bump(x, centre, radius):
    r2 = sum((x[i] - centre[i]) ** 2 for i in range(2)) / radius ** 2
    return ufl.max_value(1 - r2, 0) ** 2


def test_geodesic_translation_of_compact_bump():
    """A bump with compact support translated by v: W2^2 = |v|^2 within 1% (32^2)."""
    geom = unit_square(32)
    V = FunctionSpace(geom.mesh, "CG", 1)
    v = (0.3, 0.2)
    rho0 = Function(V).interpolate(compact_bump(geom.x, (0.35, 0.4), 0.2))
    rho1 = Function(V).interpolate(compact_bump(geom.x, (0.35 + v[0], 0.4 + v[1]), 0.2))
    geo = W2Geodesic(geom, 6, variable="density")
    res = geo.solve(rho0, rho1)
    exact = (v[0] ** 2 + v[1] ** 2) * geom.mass(rho0)     # W2^2 = mass |v|^2
    PETSc.Sys.Print(f"translation: W2^2 {res.cost:.6f} (exact {exact}), "
                    f"Newton {res.snes_iterations}")
    assert abs(res.cost - exact) < 0.01 * exact
    assert min(float(r.dat.data_ro.min()) for r in res.slices) >= 0
    assert res.snes_iterations <= 60


def test_geodesic_bump_to_ring():
    """From a bump to a ring around it (both compactly supported): the geodesic
    exists, is non-negative, conserves mass and costs less than moving all mass by
    the ring's outer radius."""
    geom = unit_square(24)
    V = FunctionSpace(geom.mesh, "CG", 1)
    x = geom.x
    rho0 = Function(V).interpolate(compact_bump(x, (0.5, 0.5), 0.15))
    r = ufl.sqrt((x[0] - 0.5) ** 2 + (x[1] - 0.5) ** 2)
    rho1 = Function(V).interpolate(ufl.max_value(1 - ((r - 0.3) / 0.08) ** 2, 0))
    rho1.assign(rho1 * geom.mass(rho0) / geom.mass(rho1))
    res = W2Geodesic(geom, 6, variable="density").solve(rho0, rho1)
    masses = [geom.mass(s) for s in res.slices]
    assert min(float(s.dat.data_ro.min()) for s in res.slices) >= 0
    assert max(masses) - min(masses) < 1e-8 * masses[0]
    assert 0 < res.cost < 0.38 ** 2 * masses[0]


# ------------------------------------------------------------ bad input
def test_density_checks():
    """Zeros are accepted with density unknowns (every energy), refused with the
    right reason for log unknowns; negative, NaN and zero mass are named."""
    geom = interval(20, 0.0, 1.0)
    V = FunctionSpace(geom.mesh, "CG", 1)
    vanishing = Function(V).interpolate(ufl.max_value(0.25 - (geom.x[0] - 0.5) ** 2, 0))
    with pytest.raises(ValueError, match="variable='density'"):
        JKOStep(entropy(geom), 0.01, 2).solve(vanishing)
    for energy in (porous_medium(geom, 2.0), potential_energy(geom, geom.x[0])):
        step = JKOStep(energy, 0.01, 2)
        with pytest.raises(ValueError, match="negative"):
            step.solve(Function(V).interpolate(geom.x[0] - 0.5))
        with pytest.raises(ValueError, match="zero mass"):
            step.solve(Function(V))
        with pytest.raises(ValueError, match="NaN"):
            step.solve(Function(V).assign(np.nan))
        res = step.solve(vanishing)
        assert float(res.rho.dat.data_ro.min()) >= 0


def test_kl_with_density_unknowns_accepts_vanishing_density():
    """KL with variable='density': a density vanishing on an open set takes a step
    (mass conserved, energy decreased and finite at the data, rho >= 0)."""
    geom = interval(60, -2.0, 2.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 1)
    rho0 = Function(V).interpolate(ufl.max_value(1 - (x - 0.5) ** 2, 0))
    energy = kl(geom, x ** 2 / 2)
    step = JKOStep(energy, 0.05, 2, variable="density")
    res = step.solve(rho0)
    assert abs(res.mass - geom.mass(rho0)) < 1e-10
    assert float(res.rho.dat.data_ro.min()) >= 0
    # J of the data is finite (0 log 0 = 0 where they vanish), and the step lowers it,
    # also as a scheme records it
    assert np.isfinite(energy.value(rho0))
    assert energy.value(res.rho) < energy.value(rho0)
    scheme = JKOScheme(energy, rho0, 0.05, 2)
    scheme.step()
    energies = [h["energy"] for h in scheme.history]
    assert np.all(np.isfinite(energies)) and energies[1] < energies[0], energies


def test_barenblatt_step_with_the_named_presets():
    """A porous-medium step with the ``"direct"`` preset named by the user (adapted
    to the interior point: before, its backtracking line search failed every barrier
    level, DIVERGED_LINE_SEARCH) and with the iterative ``"sweep"`` preset: both give
    the default's answer in as many Newton iterations.  The sweep's Schur
    approximation fails at the small barrier levels of compact support (the outer
    FGMRES stalls; issue 15), so Newton's later steps there are taken by MUMPS,
    logged (the direct rescue of ``solve_or_raise``)."""
    geom = rectangle(12, 12, 0.0, 1.0, 0.0, 1.0, diagonal="left")
    V = FunctionSpace(geom.mesh, "CG", 1)
    rho = Function(V).interpolate(barenblatt(geom.x, 1e-3, 0.2, 2.0, (0.5, 0.5)))
    results = {}
    with Records() as rec:
        for params in (None, "direct", "sweep"):
            step = JKOStep(porous_medium(geom, 2.0), 5e-4, 2, solver_parameters=params)
            results[params] = step.solve(rho)
    rescues = [m for m in rec.messages() if "iterative KKT solve failed" in m]
    ref = results[None]
    for params in ("direct", "sweep"):
        assert results[params].snes_iterations == ref.snes_iterations, params
        assert abs(results[params].cost - ref.cost) < 1e-10 * ref.cost, params
        assert abs(results[params].mass - ref.mass) < 1e-12
    assert results["sweep"].linear_iterations > 10 * ref.snes_iterations
    assert rescues and "the rest of the solve uses a direct solve" in rescues[-1], rescues


# -------------------------------------------------------------- parallel
def barenblatt_two_steps(comm):
    """A cold step, then a warm (chained) one: costs, int rho^2, Newton counts."""
    geom = unit_square(12, comm=comm)
    V = FunctionSpace(geom.mesh, "CG", 1)
    rho = Function(V).interpolate(barenblatt(geom.x, 1e-3, 0.2, 2.0, (0.5, 0.5)))
    step = JKOStep(porous_medium(geom, 2.0), 5e-4, 2)
    out = []
    for _ in range(2):
        res = step.solve(rho)
        rho = res.rho
        out.append((res.cost, geom.integrate(res.rho ** 2), res.snes_iterations))
    return out


@pytest.mark.parallel(nprocs=2)
def test_interior_point_parallel_matches_serial():
    par = barenblatt_two_steps(COMM_WORLD)
    ser = barenblatt_two_steps(COMM_SELF)
    PETSc.Sys.Print(f"parallel {par}, serial {ser}")
    for p, s in zip(par, ser):
        assert abs(p[0] - s[0]) < 1e-8 * s[0]
        assert abs(p[1] - s[1]) < 1e-8 * s[1]
        assert p[2] == s[2]
