"""Steep tails with log-density unknowns (issue 12).

KL with a double well V = (x^2 - 1)^2/4 and a quartic V = x^4/4 on [-4, 5], from
rho_0 = N(0.5, 0.25), P2, 180 cells, N = 8 slices, eta = 0.1.  In the tails eta*V''
is far above 1 (75 at x = 5 for the quartic).  Within one step the log-density
there falls by 30-40 units, down to about -150.

What is checked here: both cases converge over five steps, with mass conserved and
the energy decreasing.  A step from a log-density whose minimum is -200 gives finite
results.  The issue's targets that are *not* reached yet are strict ``xfail`` tests,
so they fail loudly once they pass: at most 20 Newton iterations per warm step (measured
now: up to 62 for the quartic and 123 for the double well, plus a failed first attempt
of up to 50 where continuation in eta took over), and a step from a
log-density whose minimum is -700 (it raises SolverDivergedError with its history; no
NaN).  Run time 54 s (one core, machine shared), mostly kernel compilation and the
two five-step runs.
"""
import numpy as np
import pytest
import ufl
from firedrake import Function, FunctionSpace

from jkoflow.meshes import interval
from jkoflow.solvers import JKOScheme, JKOStep, SolverDivergedError, kl

STEPS = 5
POTENTIALS = {"double-well": lambda x: (x ** 2 - 1) ** 2 / 4, "quartic": lambda x: x ** 4 / 4}


def issue_case(name):
    geom = interval(180, -4.0, 5.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 2)
    l0 = Function(V).interpolate(-(x - 0.5) ** 2 / (2 * 0.25) - 0.5 * ufl.ln(2 * ufl.pi * 0.25))
    return JKOScheme(kl(geom, POTENTIALS[name](x)), None, 0.1, 8, log_rho0=l0, degree=2)


@pytest.fixture(scope="module", params=sorted(POTENTIALS))
def tail_run(request):
    scheme = issue_case(request.param)
    scheme.run(STEPS)
    return scheme


def test_steep_tails_converge(tail_run):
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


@pytest.mark.xfail(strict=True, reason="issue 12 target not reached: warm steps still take "
                   "up to 62 (quartic) and 123 (double well) Newton iterations")
def test_steep_tails_warm_steps_within_20_newton_iterations(tail_run):
    its = [h["snes_iterations"] for h in tail_run.history[1:]]
    assert max(its[1:]) <= 20, its


def gaussian_log_density_with_minimum(V, x, lmin):
    """A normalised Gaussian log-density on [-4, 5] centred at 0.5 whose minimum is
    about ``lmin`` (at x = -4 and 5)."""
    from firedrake import assemble
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
                   reason="issue 12 target not reached: at log rho = -700 the continuity "
                   "rows underflow to denormals (~1e-308) and Newton diverges")
def test_step_from_log_density_minimum_700_is_finite():
    l, res = step_from_log_minimum(-700.0)
    assert np.all(np.isfinite(res.log_rho.dat.data_ro))
