"""Steep tails (issue 12), with log-density and with density unknowns.

KL with a double well V = (x^2 - 1)^2/4 and a quartic V = x^4/4 on [-4, 5], from
rho_0 = N(0.5, 0.25), P2, 180 cells, N = 8 slices, eta = 0.1.  In the tails eta*V''
is far above 1 (75 at x = 5 for the quartic).  Within one step the log-density
there falls by 30-40 units, down to about -150.

The scheme's default (no ``variable``) chooses the unknowns from the data
(``choose_variable``): the predicted change of the log-density in one step,
Lambda = eta max |<grad l, grad u>|, is about 190 here, so it takes density
unknowns, as it does for the -700 case and for data that vanish somewhere; a smooth
Gaussian (Lambda = 0.8) keeps log unknowns.  Lambda is checked against its exact
value for a Gaussian.  The scheme judges again before every step: at eta = 0.05 on 90
cells (Lambda = 92 at rho_0, 175 at rho_1) it changes to density unknowns at step 2,
where log unknowns kept throughout fail two steps later; the change conserves mass,
keeps the warm start, is recorded per snapshot in checkpoints and survives a restart.

Log unknowns (chosen explicitly): both cases converge over five steps, with mass
conserved and the energy decreasing, and a step from a log-density whose minimum is
-200 gives finite results.  The issue's targets that log unknowns do *not* reach are
strict ``xfail`` tests, so they fail loudly once they pass (and the choice rule should
then be revisited): at most 20 Newton iterations per warm step
(measured: 34-42 for the quartic and 33-50 for the double well since log steps start
from the linearised prediction; 37-93 and 36-157 before, counting the failed first
attempts before continuation in eta), and a step from a log-density whose
minimum is -700 (it raises SolverDivergedError with its history; no NaN).  Each
Newton iteration moves a tail log-density by one or two units, and these steps need
a hundred.

The same cases with density unknowns (the default's choice, the interior point):
the barrier floors the tails near 1e-8 instead of following them down to e^-150, so
no Newton iteration has to walk a log-density through a hundred units.  Checked: both
converge in at most 25 Newton iterations on the cold first step (measured 23-24) and
at most 20 on the warm ones (measured 17; warm start from the previous increment), and
a warm start that fails (a twentyfold larger step) is retried cold; they agree with the
log-unknown iterates in L1 to 1e-3 (measured 1e-4), conserve mass and decrease the
energy; and a step from the log-density whose minimum is -700 (densities 3e-304) is
accepted and matches the exact JKO step of a Gaussian (V = x^2/2: the step maps
N(m, s0^2) to N(m/(1+eta), s^2) with (1+eta)s^2 - s0 s - eta = 0) to L1 2.3e-4 and
W2^2 to 1e-3.  That case also exercises the repair of a MUMPS workspace overflow
(``solve_or_raise``), which the extreme scaling of its KKT system provokes.
Run time about 50 s (one core), mostly kernel compilation and the five-step runs.
"""
import numpy as np
import pytest
import ufl
from firedrake import COMM_WORLD, Function, FunctionSpace, assemble

from jkoflow.meshes import Geometry, interval, rectangle
from jkoflow.solvers import (JKOScheme, JKOStep, SolverDivergedError, choose_variable,
                             gaussian_jko_step, kl, logger, porous_medium, predicted_log_change,
                             read_checkpoint, restart, wasserstein_distance)
from jkoflow.solvers.representation import recorded_variable
from jkoflow.solvers.common import global_min

STEPS = 5
POTENTIALS = {"double-well": lambda x: (x ** 2 - 1) ** 2 / 4, "quartic": lambda x: x ** 4 / 4}


def issue_case(name, variable="log", geom=None, eta=0.1, **kwargs):
    """The issue's scheme, from the exact log-density of N(0.5, 0.25) in P2
    (``variable=None``: the scheme's own choice of unknowns; ``kwargs`` go to
    :class:`JKOScheme`)."""
    geom = geom or interval(180, -4.0, 5.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 2)
    l0 = Function(V).interpolate(-(x - 0.5) ** 2 / (2 * 0.25) - 0.5 * ufl.ln(2 * ufl.pi * 0.25))
    energy = kl(geom, POTENTIALS[name](x))
    return JKOScheme(energy, None, eta, 8, log_rho0=l0, degree=2, variable=variable,
                     **kwargs)


@pytest.fixture(scope="module", params=sorted(POTENTIALS))
def tail_run(request):
    scheme = issue_case(request.param)
    scheme.run(STEPS)
    return request.param, scheme


def test_steep_tails_converge(tail_run):
    _, tail_run = tail_run
    hist = tail_run.history
    assert len(hist) == STEPS + 1
    masses = np.array([h["mass"] for h in hist])
    assert np.max(np.abs(masses / masses[0] - 1)) < 1e-10
    energies = np.array([h["energy"] for h in hist])
    assert np.all(np.diff(energies) < 0), energies
    state = tail_run.state.dat.data_ro
    assert np.all(np.isfinite(state))
    # the tails really are steep: the log-density falls far below the start's -40
    assert state.min() < -140
    # Regression bound on the warm steps (counts include a failed first attempt before
    # continuation, up to 50 iterations).  Before the full-step globalisation the double
    # well failed at step 2 and the quartic warm steps took 161, 206, 67 Newton
    # iterations (without the failed attempts).
    its = [h["snes_iterations"] for h in hist[1:]]
    assert max(its[1:]) <= 200, its


@pytest.mark.xfail(strict=True, reason="log unknowns (chosen explicitly) miss issue 12's target "
                   "on these data: warm steps take up to 42 (quartic) and 50 (double well) "
                   "Newton iterations (steep_tails.md, 180 cells, eta = 0.1; 93 and 157 "
                   "before the linearised start); the scheme's default "
                   "chooses density unknowns for them (test_steep_tails_default_...)")
def test_steep_tails_warm_steps_within_20_newton_iterations(tail_run):
    _, tail_run = tail_run
    its = [h["snes_iterations"] for h in tail_run.history[1:]]
    assert max(its[1:]) <= 20, its


def gaussian_log_density_with_minimum(V, x, lmin):
    """A normalised Gaussian log-density on [-4, 5] centred at 0.5 whose minimum is
    about ``lmin`` (at x = -4 and 5)."""
    l = Function(V).interpolate(lmin * ((x - 0.5) / 4.5) ** 2)
    shift = float(np.log(assemble(ufl.exp(l) * ufl.dx(domain=V.mesh()))))
    return l.assign(l - shift)


def step_from_log_minimum(lmin, eta=0.01):
    geom = interval(180, -4.0, 5.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 2)
    l = gaussian_log_density_with_minimum(V, x, lmin)
    step = JKOStep(kl(geom, x ** 2 / 2), eta, 8, degree=2)
    return l, step.solve(log_rho_k=l)


def test_step_from_log_density_minimum_200_is_finite():
    l, res = step_from_log_minimum(-200.0)
    assert l.dat.data_ro.min() < -195
    assert np.all(np.isfinite(res.log_rho.dat.data_ro))
    assert np.isfinite(res.cost) and res.cost > 0
    assert abs(res.mass - 1) < 1e-10


@pytest.mark.xfail(strict=True, raises=SolverDivergedError,
                   reason="log unknowns (a JKOStep's default for KL) fail here: in this step "
                   "the tails rise by hundreds of log units (heat flow out of a narrow "
                   "Gaussian); clipped Newton steps diverge and so does continuation (already "
                   "from a minimum of -300).  Density unknowns take it, and JKOScheme and "
                   "choose_variable pick them: see the tests below")
def test_step_from_log_density_minimum_700_is_finite():
    l, res = step_from_log_minimum(-700.0)
    assert np.all(np.isfinite(res.log_rho.dat.data_ro))


def test_failed_steep_step_points_to_density_unknowns():
    """While log unknowns fail on it, the error names the steep tails and the remedy."""
    with pytest.raises(SolverDivergedError, match="steep tails.*variable='density'"):
        step_from_log_minimum(-700.0)


def test_steep_tails_default_chooses_density_unknowns(tail_run):
    """The issue's cases as a user writes them (KL, from the log-density, no
    ``variable``): the scheme predicts a change of the log-density by about 190 in one
    step and takes density unknowns (the interior point).  Bounded Newton counts, and
    the same iterates as the log-density unknowns (up to the barrier floor in the
    tails)."""
    potential, log_run = tail_run
    scheme = issue_case(potential, variable=None, geom=log_run.geometry)
    assert scheme.variable == "density"
    scheme.run(STEPS)
    hist = scheme.history
    masses = np.array([h["mass"] for h in hist])
    assert np.max(np.abs(masses / masses[0] - 1)) < 1e-12
    energies = np.array([h["energy"] for h in hist])
    assert np.all(np.diff(energies) < 0), energies
    assert scheme.rho.dat.data_ro.min() > 0
    its = [h["snes_iterations"] for h in hist[1:]]
    # The issue's target: at most 20 per warm step (warm start from the previous
    # increment: measured 17; the cold first step 23-24).
    assert its[0] <= 25 and max(its[1:]) <= 20, its
    l1 = assemble(abs(scheme.rho_expr - log_run.rho_expr) * ufl.dx(degree=8))
    assert l1 < 1e-3, l1
    # the energies agree to the same order (the two use different slice means)
    assert abs(energies[-1] - log_run.history[-1]["energy"]) < 1e-3


def check_step_from_log_density_minimum_700_with_density_unknowns():
    """min log rho = -700 (densities 3e-304), density unknowns: the exact Gaussian
    JKO step for V = x^2/2."""
    lmin, eta = -700.0, 0.01
    geom = interval(180, -4.0, 5.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 2)
    l = gaussian_log_density_with_minimum(V, x, lmin)
    rho = Function(V).interpolate(ufl.exp(l))
    assert 0 < global_min(rho) < 1e-300
    # No extra MUMPS workspace to start with: its overflow (delayed pivots) must be
    # repaired by enlarging the allowance, not reported as a failure.
    step = JKOStep(kl(geom, x ** 2 / 2), eta, 8, degree=2, variable="density",
                   solver_parameters_extra={"mat_mumps_icntl_14": 0})
    res = step.solve(rho)
    assert step.solver.parameters["mat_mumps_icntl_14"] >= 100
    # exact step of N(m0, s0^2): N(m0/(1+eta), s1^2), (1+eta) s1^2 - s0 s1 - eta = 0
    m0, s0 = 0.5, 4.5 / np.sqrt(2 * abs(lmin))
    m1, s1 = gaussian_jko_step(m0, s0, eta)
    exact = ufl.exp(-(x - m1) ** 2 / (2 * s1 ** 2)) / np.sqrt(2 * np.pi * s1 ** 2)
    start = ufl.exp(-(x - m0) ** 2 / (2 * s0 ** 2)) / np.sqrt(2 * np.pi * s0 ** 2)
    err = assemble(abs(res.rho - exact) * ufl.dx(degree=10))
    moved = assemble(abs(start - exact) * ufl.dx(degree=10))
    assert err < 1e-3 < 0.3 < moved, (err, moved)
    w2 = (m1 - m0) ** 2 + (s1 - s0) ** 2
    assert abs(res.cost / w2 - 1) < 1e-2, (res.cost, w2)
    assert abs(res.mass - 1) < 1e-12
    assert global_min(res.rho) > 0


def test_step_from_log_density_minimum_700_with_density_unknowns():
    check_step_from_log_density_minimum_700_with_density_unknowns()


@pytest.mark.parallel(nprocs=2)
def test_step_from_log_density_minimum_700_with_density_unknowns_parallel():
    """The same on two ranks: the MUMPS workspace repair is collective."""
    check_step_from_log_density_minimum_700_with_density_unknowns()


def quartic_step_90(eta=0.05):
    """A density-unknown step of the quartic case on 90 cells, and its rho_0."""
    geom = interval(90, -4.0, 5.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 2)
    rho0 = Function(V).interpolate(ufl.exp(-(x - 0.5) ** 2 / (2 * 0.25)
                                           - 0.5 * ufl.ln(2 * ufl.pi * 0.25)))
    energy = kl(geom, POTENTIALS["quartic"](x))
    return JKOStep(energy, eta, 8, degree=2, variable="density"), energy, rho0


def test_warm_start_only_for_chained_steps():
    """Density unknowns start warm (from the previous increment) only when rho_k is
    the previous step's result: the same data solved twice start cold twice (same
    count, same answer), the chained step starts warm (fewer iterations)."""
    jko, _, rho0 = quartic_step_90(0.1)
    first = jko.solve(rho0)
    rho1 = first.rho.copy(deepcopy=True)
    again = jko.solve(rho0)
    assert again.snes_iterations == first.snes_iterations
    assert assemble(abs(again.rho - rho1) * ufl.dx) < 1e-12
    chained = jko.solve(again.rho)
    cold = jko.solve(again.rho, warm_start=False)
    assert chained.snes_iterations < cold.snes_iterations, \
        (chained.snes_iterations, cold.snes_iterations)
    assert assemble(abs(chained.rho - cold.rho) * ufl.dx) < 1e-6


def test_failed_warm_start_is_retried_cold(caplog):
    """A step twenty times larger than the previous one: the slices predicted from the
    previous increment are too far off and Newton fails from them (100 iterations);
    the step is retried from the cold start, said in a warning, and gives the cold
    step's answer."""
    jko, energy, rho0 = quartic_step_90()
    rho1 = jko.solve(rho0).rho
    logger.addHandler(caplog.handler)      # the jkoflow logger does not propagate
    try:
        res = jko.solve(rho1, eta=1.0)
    finally:
        logger.removeHandler(caplog.handler)
    assert "failed from the warm start" in caplog.text and "retrying from the cold" \
        in caplog.text, caplog.text
    assert jko.continuation_path == [] and res.snes_iterations > 100, res.snes_iterations
    cold = JKOStep(energy, 1.0, 8, degree=2, variable="density").solve(rho1)
    assert cold.snes_iterations <= 30
    assert assemble(abs(res.rho - cold.rho) * ufl.dx) < 1e-6
    assert abs(res.mass - cold.mass) < 1e-12 and res.rho.dat.data_ro.min() > 0


def check_predicted_log_change_is_exact_for_a_gaussian():
    """Lambda = eta max |l' u'| for l = -a (x - m)^2 and KL with V = x^2/2 on [-4, 5]:
    u' = l' + x, a quadratic whose maximum modulus is at x = 5 (P2: exact)."""
    geom = interval(45, -4.0, 5.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 2)
    a, m, eta = 2.0, 0.5, 0.1
    l = Function(V).interpolate(-a * (x - m) ** 2)
    expected = max(abs(-2 * a * (t - m) * (-2 * a * (t - m) + t)) for t in (-4.0, 5.0)) * eta
    assert abs(predicted_log_change(kl(geom, x ** 2 / 2), l, eta) / expected - 1) < 1e-12


def test_predicted_log_change_is_exact_for_a_gaussian():
    check_predicted_log_change_is_exact_for_a_gaussian()


@pytest.mark.parallel(nprocs=2)
def test_predicted_log_change_parallel():
    """The same on two ranks (the maximum is collective; x = 5 is on one rank only)."""
    check_predicted_log_change_is_exact_for_a_gaussian()


def test_choose_variable_from_the_data():
    """Log unknowns for a smooth KL step (Lambda = 0.8), density unknowns for steep
    tails (the -700 case: Lambda about 1e3), for data that vanish somewhere and for a
    non-entropic energy; the scheme's default follows it, and invalid data are refused
    with the density check's message."""
    geom = interval(180, -4.0, 5.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 2)
    energy = kl(geom, x ** 2 / 2)
    smooth = gaussian_log_density_with_minimum(V, x, -25.0)
    steep = gaussian_log_density_with_minimum(V, x, -700.0)
    assert choose_variable(energy, 0.01, log_rho=smooth, degree=2) == "log"
    assert choose_variable(energy, 0.01, log_rho=steep, degree=2) == "density"
    rho = Function(V).interpolate(ufl.exp(smooth))
    assert choose_variable(energy, 0.01, rho, degree=2) == "log"
    bump = Function(V).interpolate(ufl.max_value(1 - (x - 0.5) ** 2, 0.0))
    assert choose_variable(energy, 0.01, bump, degree=2) == "density"
    assert choose_variable(porous_medium(geom, 2), 0.01, rho, degree=2) == "density"
    assert JKOScheme(energy, bump, 0.01, 8, degree=2).variable == "density"
    # restart rebuilds from the restored density within the checkpoint's record
    with recorded_variable("density"):
        assert choose_variable(energy, 0.01, rho, degree=2) == "density"
    with recorded_variable("log"):
        assert choose_variable(energy, 0.01, log_rho=steep, degree=2) == "log"
        assert choose_variable(porous_medium(geom, 2), 0.01, rho, degree=2) == "density"
    assert choose_variable(energy, 0.01, rho, degree=2) == "log"
    with pytest.raises(ValueError, match="negative"):
        choose_variable(energy, 0.01, Function(V).interpolate(x), degree=2)


def test_default_scheme_steps_from_log_density_minimum_700():
    """The -700 case through the scheme's default: density unknowns, a finite step with
    mass conserved (log unknowns fail on it, above)."""
    geom = interval(180, -4.0, 5.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 2)
    l = gaussian_log_density_with_minimum(V, x, -700.0)
    scheme = JKOScheme(kl(geom, x ** 2 / 2), None, 0.01, 8, log_rho0=l, degree=2)
    assert scheme.variable == "density"
    scheme.step()
    assert np.all(np.isfinite(scheme.rho.dat.data_ro)) and global_min(scheme.rho) > 0
    assert abs(scheme.mass() - 1) < 1e-10
    assert scheme.history[1]["snes_iterations"] <= 30


def test_wasserstein_distance_chooses_density_unknowns_for_compact_support():
    """A compactly supported bump of unit mass and its translate by v: W2 = |v| (within
    1%), with no ``variable`` given (log unknowns would refuse the data)."""
    geom = interval(120, 0.0, 1.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 1)

    def bump(c):
        return geom.normalise(Function(V).interpolate(ufl.max_value(0.01 - (x - c) ** 2,
                                                                    0.0)))

    w2 = wasserstein_distance(bump(0.35), bump(0.6), geom, N=8)
    assert abs(w2 / 0.25 - 1) < 1e-2, w2


def test_choose_variable_keeps_log_unknowns_for_p2_on_triangles(caplog):
    """A 2D Gaussian N((1, 0), diag(0.25, 0.16)) at eta = 0.25 (Lambda = 136): P1
    steps get density unknowns; P2 steps keep log unknowns, with a warning (the
    interior point is refused with P2 on triangles: it failed even on smooth data)."""
    geom = rectangle(15, 12, -3.5, 4.0, -3.0, 3.0, diagonal="left")
    x, y = geom.x
    energy = kl(geom, (x ** 2 + y ** 2) / 2)
    l = -(x - 1.0) ** 2 / 0.5 - y ** 2 / 0.32
    chosen = {}
    logger.addHandler(caplog.handler)
    try:
        for degree in (1, 2):
            log_rho = Function(FunctionSpace(geom.mesh, "CG", degree)).interpolate(l)
            assert predicted_log_change(energy, log_rho, 0.25) > 100
            chosen[degree] = choose_variable(energy, 0.25, log_rho=log_rho, degree=degree)
    finally:
        logger.removeHandler(caplog.handler)
    assert chosen == {1: "density", 2: "log"}
    assert "not reliable with P2 on triangles" in caplog.text, caplog.text


def steepening_case(comm=COMM_WORLD, geom=None, variable=None, **kwargs):
    """The double well on 90 cells at eta = 0.05 (:func:`issue_case`): Lambda = 92 at
    rho_0, so the default scheme starts with log unknowns; after one step the tails
    have steepened (Lambda = 175).  Log unknowns kept throughout fail at step 4
    (``benchmarks/results/steep_tails.md``)."""
    return issue_case("double-well", variable, geom or interval(90, -4.0, 5.0, comm=comm),
                      eta=0.05, **kwargs)


def check_default_scheme_changes_unknowns_when_tails_steepen(comm=COMM_WORLD):
    """Log unknowns for step 1, density unknowns (warm-started) from step 2 on; every
    warm step within 20 Newton iterations (measured 18), mass exact across the
    change, the energy decreasing.  Returns the scheme."""
    scheme = steepening_case(comm)
    assert scheme.variable == "log" and scheme.chooses_variable
    scheme.run(STEPS)
    hist = scheme.history
    assert [h["variable"] for h in hist[1:]] == ["log"] + ["density"] * (STEPS - 1)
    its = [h["snes_iterations"] for h in hist[1:]]
    assert max(its[1:]) <= 20, its
    masses = np.array([h["mass"] for h in hist])
    assert np.max(np.abs(masses / masses[0] - 1)) < 1e-12, masses
    energies = np.array([h["energy"] for h in hist])
    assert np.all(np.diff(energies) < 0), energies
    assert global_min(scheme.rho) > 0
    # the output fields stay the same across the change
    assert [f.name() for f in scheme.output_functions()] == \
        ["density", "log_density", "transport_potential"]
    return scheme


def test_default_scheme_changes_unknowns_when_tails_steepen(tmp_path):
    """The change, its checkpoints and a restart across it: snapshots record their own
    unknowns (``read_checkpoint`` gives the log-density only for log snapshots), and a
    restart from the log snapshot of step 1 changes again at step 2 and reproduces
    the run.  Against density unknowns throughout: the same fifth iterate (L1 1e-3;
    the first steps differ by the slice representation)."""
    scheme = check_default_scheme_changes_unknowns_when_tails_steepen()
    path = str(tmp_path / "steepening.h5")
    run = steepening_case(checkpoint=path)
    run.run(3)
    assert read_checkpoint(path, 1).representation == "log"
    snap = read_checkpoint(path, 3)
    assert snap.representation == "density" and snap.log_rho is None
    assert abs(snap.info["mass"] - 1) < 1e-12

    def build(mesh, rho):
        geom = Geometry(mesh)
        return JKOScheme(kl(geom, POTENTIALS["double-well"](geom.x[0])), rho, 0.05, 8,
                         degree=2)

    resumed = restart(path, build, step=1)
    assert resumed.variable == "log" and resumed.step_number == 1
    resumed.run(STEPS - 1)
    assert resumed.variable == "density"

    def moments(run):
        x, dx = run.geometry.x[0], ufl.dx(domain=run.geometry.mesh, degree=8)
        return np.array([run.energy_value()] + [assemble(x ** p * run.rho_expr * dx)
                                                for p in (0, 1, 2, 4)])

    np.testing.assert_allclose(moments(resumed), moments(scheme), rtol=1e-8)
    dx = ufl.dx(domain=scheme.geometry.mesh, degree=8)
    density = steepening_case(geom=scheme.geometry, variable="density")
    density.run(STEPS)
    l1 = assemble(abs(density.rho_expr - scheme.rho_expr) * dx)
    assert l1 < 1e-3, l1


@pytest.mark.parallel(nprocs=2)
def test_default_scheme_changes_unknowns_when_tails_steepen_parallel():
    check_default_scheme_changes_unknowns_when_tails_steepen()
