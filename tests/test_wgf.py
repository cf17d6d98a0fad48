"""The Wasserstein gradient flow solver against exact solutions (docs/maths/reference_solutions.rst).

Ornstein--Uhlenbeck Gaussians (1D and 2D, orders in h and dt), heat flow on the sphere,
linear Fokker--Planck on the unit square, the Barenblatt profile of the porous medium,
Fokker--Planck on the sphere relaxing to von Mises--Fisher; mass to round-off,
positivity, monotone energy; bad input; SNES failure and retries; observers, VTK,
checkpoint/restart; 2 ranks reproduce the serial answers.
"""
import math
import os

import numpy as np
import pytest
import ufl
from firedrake import Function, FunctionSpace, TestFunctions, assemble, split
from irksome import Dt
from mpi4py import MPI

from jkoflow.meshes import Geometry, interval, rectangle, sphere, unit_square
from jkoflow.solvers import (Checkpointer, SolverDivergedError, TimeIntegrator, TimeSeries,
                             VTKOutput, WassersteinGradientFlow, entropy, kl, porous_medium,
                             restart, time_constants)

from conftest import rates

# 1D OU: V = a x^2/2, m0 = 2, S0 = 0.25 (docs/maths/reference_solutions.rst); box of half-width >= 6 std on [0, 1]
A, M0, S0 = 1.0, 2.0, 0.25
BOX = (-6.0, 8.0)


def ou_moments(t, a=A, m0=M0, S0=S0):
    """Mean and variance of the OU Gaussian: m' = -a m, S' = 2 - 2 a S."""
    return m0 * math.exp(-a * t), 1 / a + (S0 - 1 / a) * math.exp(-2 * a * t)


def gaussian(x, m, S):
    return ufl.exp(-(x - m) ** 2 / (2 * S)) / ufl.sqrt(2 * ufl.pi * S)


def ou_1d(n, degree, dt, form="log", T=1.0, stages=3, comm=MPI.COMM_WORLD,
          moments=(M0, S0), box=BOX, checkpoint=None, **kw):
    """Run the 1D OU flow; return (solver, L2 error at T, series)."""
    geom = interval(n, *box, comm=comm)
    x = geom.x[0]

    def exact(t):
        return gaussian(x, *ou_moments(t, A, *moments))

    rho0 = Function(FunctionSpace(geom.mesh, "CG", degree)).interpolate(exact(0))
    flow = WassersteinGradientFlow(kl(geom, A * x ** 2 / 2), rho0, dt, form=form,
                                   stages=stages, **kw)
    if checkpoint:
        flow.add_observer(Checkpointer(checkpoint))
    series = flow.add_observer(TimeSeries())
    flow.advance_to(T)
    err = math.sqrt(geom.integrate((flow.rho_expr - exact(T)) ** 2, degree=3 * degree + 6))
    return flow, err, series


def check_invariants(series, mass_tol=1e-11, energy_slack=1e-12):
    mass = series["mass"]
    assert np.max(np.abs(mass - mass[0])) < mass_tol * abs(mass[0]), mass - mass[0]
    energy = series["energy"]
    assert np.all(np.diff(energy) <= energy_slack * max(1.0, np.max(np.abs(energy)))), energy


# ----------------------------------------------------------------- OU 1D
def test_ou_1d_reference_accuracy_log_p2():
    """The reference configuration: error at T = 1 far below 1e-4, cheaply."""
    flow, err, series = ou_1d(56, 2, 0.1)
    assert err < 1e-6, err
    check_invariants(series)
    # (the first step, where the far tails rise by e^50, may be retried with dt/2)
    steps, its, _ = flow.solver_stats()
    assert steps <= 11 and flow.num_retries <= 1 and its <= 6 * (steps + flow.num_retries)


def test_ou_1d_time_orders():
    """Radau IIA with 1 and 2 stages: orders 1 and 3 in dt.

    log P2 represents the Gaussian's log-density exactly, so only the time error is
    left (a Gaussian whose variance changes less, to keep the log-density range moderate).
    """
    for stages, order in ((1, 1), (2, 3)):
        errs = [ou_1d(20, 2, dt, stages=stages, moments=(1.0, 0.7), box=(-6.0, 7.0))[1]
                for dt in (0.2, 0.1, 0.05)]
        r = rates(errs)
        assert abs(r[-1] - order) < 0.3, (stages, errs, r)


def test_ou_1d_space_orders_density_form():
    """Density form (exactly conservative, linear for Fokker-Planck): orders k+1 in h."""
    for degree, order in ((1, 2), (2, 3)):
        errs = []
        for n in (28, 56, 112):
            _, err, series = ou_1d(n, degree, 0.05, form="density", T=0.5)
            check_invariants(series)
            errs.append(err)
        r = rates(errs)
        assert abs(r[-1] - order) < 0.3, (degree, errs, r)


def test_ou_1d_adaptive():
    """Step-doubling control: the step grows as the flow slows, error ~ tol * T."""
    flow, err, series = ou_1d(56, 2, 0.01, tol=1e-5, adaptive=True)
    assert err < 2e-5, err
    check_invariants(series)
    dts = np.diff(series["t"])
    assert dts.max() > 5 * dts[0], dts
    assert flow.t == 1.0


# ----------------------------------------------------------------- OU 2D
def ou_2d(n, degree, form, T=0.5, dt=0.05, comm=MPI.COMM_WORLD):
    """Diagonal covariance on a large square: axes decouple (a = 1, 2)."""
    a, m0, S0 = (1.0, 2.0), (1.0, -0.5), (0.5, 0.4)
    geom = rectangle(n, n, -5.0, 5.0, -5.0, 5.0, comm=comm)
    x = geom.x

    def exact(t):
        r = 1
        for i in range(2):
            m, S = ou_moments(t, a[i], m0[i], S0[i])
            r = r * gaussian(x[i], m, S)
        return r

    rho0 = Function(FunctionSpace(geom.mesh, "CG", degree)).interpolate(exact(0))
    V = a[0] * x[0] ** 2 / 2 + a[1] * x[1] ** 2 / 2
    flow = WassersteinGradientFlow(kl(geom, V), rho0, dt, form=form, stages=2)
    series = flow.add_observer(TimeSeries())
    flow.advance_to(T)
    err = math.sqrt(geom.integrate((flow.rho_expr - exact(T)) ** 2, degree=8))
    return flow, err, series


def test_ou_2d_square():
    """Density form on a large square: order 2 for P1; the log form with P2."""
    errs = []
    for n in (16, 32):
        flow, err, series = ou_2d(n, 1, "density")
        check_invariants(series)
        errs.append(err)
    assert rates(errs)[-1] > 1.8, errs
    # the log form: P2 holds the quadratic log-density exactly (density P2: 1e-3)
    flow, err, series = ou_2d(16, 2, "log")
    check_invariants(series)
    assert err < 2e-5, err
    assert max(map(abs, flow.mass_corrections)) < 1e-10


# -------------------------------------------------------------- sphere heat
def test_heat_on_sphere_x3_mode_decays_like_exp_minus_2t():
    geom = sphere(2, degree=2)
    x3 = geom.x[2]
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate((1 + 0.5 * x3) / (4 * math.pi))
    flow = WassersteinGradientFlow(entropy(geom), rho0, 0.1, stages=2)
    norm = geom.integrate(x3 * x3)
    series = flow.add_observer(TimeSeries({"c": lambda s: geom.integrate(s.rho_expr * x3) / norm,
                                           "energy": lambda s: s.energy_value(),
                                           "mass": lambda s: s.mass()}))
    flow.advance_to(0.5)
    check_invariants(series)
    rate = -np.polyfit(series["t"], np.log(series["c"]), 1)[0]
    assert abs(rate - 2.0) < 0.02, rate


# ------------------------------------------------ Fokker-Planck, unit square
def fp_square_exact(x, t, g=1.0):
    a = math.pi ** 2 + g ** 2 / 4
    return (ufl.exp(-a * t + g * x / 2) * (ufl.pi * ufl.cos(ufl.pi * x) + g / 2 * ufl.sin(ufl.pi * x))
            + ufl.pi * ufl.exp(g * (x - 0.5)))


def test_linear_fokker_planck_unit_square():
    errs = []
    for n in (4, 8):
        geom = unit_square(n)
        x = geom.x[0]
        # (the exact density vanishes at x = 1 for t = 0: clip the round-off)
        rho0 = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate(
            ufl.max_value(fp_square_exact(x, 0.0), 0.0))
        flow = WassersteinGradientFlow(kl(geom, -1.0 * x), rho0, 0.02, form="density", stages=3)
        series = flow.add_observer(TimeSeries())
        flow.advance_to(0.2)
        check_invariants(series)
        errs.append(math.sqrt(geom.integrate((flow.rho - fp_square_exact(x, 0.2)) ** 2, degree=8)))
    assert rates(errs)[-1] > 2.7, errs


# ---------------------------------------------------------- porous medium
def barenblatt(x, t, C=0.05, m=2, d=2):
    alpha = d / (d * (m - 1) + 2)
    k = alpha * (m - 1) / (2 * m * d)
    r2 = ufl.inner(x, x)
    return t ** (-alpha) * ufl.max_value(C - k * r2 * t ** (-2 * alpha / d), 0) ** (1 / (m - 1))


def test_porous_medium_barenblatt_2d():
    errs = []
    for n in (12, 24):
        geom = rectangle(n, n, -1.5, 1.5, -1.5, 1.5)
        x = geom.x
        rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate(barenblatt(x, 1.0))
        flow = WassersteinGradientFlow(porous_medium(geom, 2.0), rho0, 0.05, t0=1.0,
                                       form="bounded", stages=2)
        assert flow.form == "bounded"
        series = flow.add_observer(TimeSeries())
        flow.advance_to(1.5)
        check_invariants(series)
        assert flow.min_density >= 0.0
        errs.append(math.sqrt(geom.integrate((flow.rho - barenblatt(x, 1.5)) ** 2, degree=6)))
    assert errs[-1] < 2e-3 and rates(errs)[-1] > 1.2, errs


# --------------------------------------------- Fokker-Planck on the sphere
def test_fokker_planck_sphere_converges_to_von_mises_fisher():
    """V = -kappa x3: the log form relaxes to exp(kappa x3)/Z; the distance to it
    converges with the mesh (P2 on the curved sphere)."""
    kappa, errs = 2.0, []
    for ref in (2, 3):
        geom = sphere(ref, degree=2)
        x = geom.x
        rho0 = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate(
            (1 + 0.3 * x[0]) / (4 * math.pi))
        flow = WassersteinGradientFlow(kl(geom, -kappa * x[2]), rho0, 0.5, stages=2)
        assert flow.form == "log"
        series = flow.add_observer(TimeSeries())
        flow.advance_to(6.0)
        check_invariants(series)
        vmf = ufl.exp(kappa * x[2])
        vmf = vmf / geom.integrate(vmf)
        errs.append(math.sqrt(geom.integrate((flow.rho_expr - vmf) ** 2)
                              / geom.integrate(vmf ** 2)))
        # equilibrium: the dissipation (relative Fisher information) has vanished
        assert flow.dissipation() < 1e-8 * flow.energy.curvature(rho0)
    assert errs[-1] < 2e-5 and rates(errs)[-1] > 2.5, errs


# ------------------------------------------------------------- bad input
def test_bad_input():
    geom = interval(8, -3, 3)
    V = FunctionSpace(geom.mesh, "CG", 1)
    e = kl(geom, geom.x[0] ** 2 / 2)
    good = Function(V).assign(1.0)
    with pytest.raises(ValueError, match="negative"):
        WassersteinGradientFlow(e, Function(V).interpolate(geom.x[0]), 0.1, form="density")
    with pytest.raises(ValueError, match="strictly positive"):
        WassersteinGradientFlow(e, Function(V), 0.1)
    with pytest.raises(ValueError, match="zero mass"):
        WassersteinGradientFlow(e, Function(V), 0.1, form="density")
    nan = Function(V).assign(1.0)
    nan.dat.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        WassersteinGradientFlow(e, nan, 0.1)
    other = interval(8, -3, 3)
    with pytest.raises(ValueError, match="different mesh"):
        WassersteinGradientFlow(e, Function(FunctionSpace(other.mesh, "CG", 1)).assign(1.0), 0.1)
    for dt in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="dt"):
            WassersteinGradientFlow(e, good, dt)
    with pytest.raises(ValueError, match="valid: .*'log'"):
        WassersteinGradientFlow(e, good, 0.1, form="mixed")
    with pytest.raises(ValueError, match="valid"):
        WassersteinGradientFlow(e, good, 0.1, method="rk4")


def test_snes_failure_retry_and_error():
    """A step that SNES cannot do is retried with half the step; without retries it
    raises SolverDivergedError carrying the residual history."""
    geom = interval(20, -6.0, 7.0)
    x = geom.x[0]
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate(gaussian(x, 2.0, 0.5))
    params = {"snes_max_it": 3, "snes_rtol": 1e-8}
    flow = WassersteinGradientFlow(kl(geom, x ** 2 / 2), rho0, 1.0,
                                   solver_parameters_extra=params, stages=1)
    flow.advance_to(1.0)
    assert flow.num_retries >= 1 and flow.t == 1.0
    assert flow.statistics()["retries"] == flow.num_retries
    flow = WassersteinGradientFlow(kl(geom, x ** 2 / 2), rho0, 1.0,
                                   solver_parameters_extra=params, stages=1, max_retries=0)
    with pytest.raises(SolverDivergedError, match="DIVERGED_MAX_IT") as info:
        flow.step()
    assert "SNES residual" in str(info.value) and len(info.value.history) == 4
    assert flow.t == 0.0 and abs(flow.mass() - flow.initial_mass) < 1e-14


# ------------------------------------------------- observers, output, restart
def test_observers_vtk_checkpoint_restart(tmp_path):
    geom = interval(20, -6.0, 7.0)
    x = geom.x[0]
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate(gaussian(x, 1.0, 0.7))
    flow = WassersteinGradientFlow(kl(geom, x ** 2 / 2), rho0, 0.1, stages=2)
    chk = str(tmp_path / "wgf.h5")
    flow.add_observer(Checkpointer(chk))
    series = flow.add_observer(TimeSeries())
    flow.advance_to(0.4)
    assert len(series) == 5 and np.allclose(series["t"], [0, 0.1, 0.2, 0.3, 0.4])

    def moments(f, x):
        return np.array([f.mass(), f.geometry.integrate(f.rho_expr * x),
                         f.geometry.integrate(f.rho_expr * x ** 2), f.energy_value()])

    final = moments(flow, x)

    def build(mesh, rho):
        geom2 = Geometry(mesh, name="restart")
        return WassersteinGradientFlow(kl(geom2, geom2.x[0] ** 2 / 2), rho, 0.1, stages=2)

    flow2 = restart(chk, build, step=2)
    assert abs(flow2.t - 0.2) < 1e-14 and flow2.step_number == 2
    x2 = flow2.geometry.x[0]
    flow2.advance_to(0.4)
    # (the reloaded mesh numbers its dofs differently: compare moments)
    assert np.allclose(moments(flow2, x2), final, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------- parallel
@pytest.mark.parallel(nprocs=2)
def test_parallel_reproduces_serial():
    """2 ranks give the serial answer (computed on COMM_SELF on each rank)."""
    res = []
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        flow, err, series = ou_2d(16, 2, "log", T=0.2, comm=comm)
        check_invariants(series)
        res.append(np.array([err, series["energy"][-1], series["mass"][-1]]))
    assert np.allclose(res[0], res[1], rtol=1e-9), res


@pytest.mark.parallel(nprocs=2)
def test_parallel_1d_reference_and_checkpoint(tmp_path_factory):
    """The 1D reference on 2 ranks equals the serial run; checkpoint/restart on 2 ranks."""
    comm = MPI.COMM_WORLD
    chk = comm.bcast(str(tmp_path_factory.mktemp("chk") / "wgf.h5") if comm.rank == 0
                     else None)
    flow, err, series = ou_1d(56, 2, 0.1, T=0.3, checkpoint=chk)
    flow_s, err_s, _ = ou_1d(56, 2, 0.1, T=0.3, comm=MPI.COMM_SELF)
    assert abs(err - err_s) < 1e-12 and err < 1e-5, (err, err_s)
    check_invariants(series)

    def build(mesh, rho):
        geom = Geometry(mesh, name="restart")
        return WassersteinGradientFlow(kl(geom, A * geom.x[0] ** 2 / 2), rho, 0.1)

    flow2 = restart(chk, build, step=1)
    assert abs(flow2.t - 0.1) < 1e-14
    geom, x = flow2.geometry, flow2.geometry.x[0]
    flow2.advance_to(0.3)
    exact = gaussian(x, *ou_moments(0.3))
    err2 = math.sqrt(geom.integrate((flow2.rho_expr - exact) ** 2, degree=12))
    assert abs(err2 - err) < 1e-10 * max(err, 1e-16) + 1e-14, (err, err2)


def test_vtk_output(tmp_path):
    pytest.importorskip("vtkmodules", reason="VTK output needs the vtk package")
    geom = interval(10, -3.0, 3.0)
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate(gaussian(geom.x[0], 0, 1))
    flow = WassersteinGradientFlow(kl(geom, geom.x[0] ** 2 / 2), rho0, 0.1, stages=1)
    flow.add_observer(VTKOutput(str(tmp_path / "wgf.pvd")))
    flow.advance_to(0.2)
    assert os.path.exists(tmp_path / "wgf.pvd")
    assert len(list(tmp_path.glob("wgf*/*.vtu")) + list(tmp_path.glob("wgf_*.vtu"))) == 3


def test_time_integrator_base_mixed_state():
    """The generic base on a mixed (l, mu) DAE: the log-field mask of the stage vector
    selects exactly the l entries; bad options are rejected."""
    geom = unit_square(3)
    W = FunctionSpace(geom.mesh, "CG", 2) * FunctionSpace(geom.mesh, "CG", 1)
    w = Function(W)
    w.subfunctions[0].interpolate(0.1 * geom.x[0])
    l, mu = split(w)
    v, q = TestFunctions(W)
    t, dt = time_constants(0.0, 0.1)
    F = (Dt(ufl.exp(l)) * v * ufl.dx + ufl.exp(l) * ufl.inner(ufl.grad(mu), ufl.grad(v)) * ufl.dx
         + (mu - l) * q * ufl.dx)
    ti = TimeIntegrator(F, w, t, dt, stages=2, log_fields=(0,))
    for j, sub in enumerate(ti.stepper.stages.subfunctions):
        sub.assign(float(j % 2 == 0))
    with ti.stepper.stages.dat.vec_ro as vec:
        assert np.array_equal(vec.array_r == 1.0, ti._log_mask)
    mass0 = float(assemble(ufl.exp(l) * ufl.dx(degree=6)))
    ti.advance_to(0.3)
    assert ti.t == 0.3 and ti.num_steps == 3
    assert abs(float(assemble(ufl.exp(l) * ufl.dx(degree=6))) - mass0) < 1e-12
    with pytest.raises(ValueError, match="out of range"):
        TimeIntegrator(F, w, t, dt, stages=1, log_fields=(2,))
    with pytest.raises(ValueError, match="stage_type"):
        TimeIntegrator(F, w, t, dt, stage_type="explicit")
