"""Slice assembly (jkoflow.solvers.slice_assembly): the field-by-field residual and
Jacobian equal those of the monolithic UFL form, on one rank and on two, for every
dynamic-transport variant; the compiled forms do not depend on the number of slices."""
import numpy as np
import pytest
import ufl
from firedrake import Function, FunctionSpace, TestFunction, assemble, derivative
from firedrake.petsc import PETSc

from jkoflow.meshes import interval, unit_square
from jkoflow.solvers import JKOStep, W2Geodesic, gaussian_jko_step, kl, porous_medium
from jkoflow.solvers.slice_assembly import SliceAssembledSolver


def variant(name: str, geom, N: int):
    """A dynamic-transport solver of the named variant, with a state far from trivial
    (every slice, potential and dual different) and non-zero barrier parameters."""
    x = geom.x[0]
    if name == "log":
        solver = JKOStep(kl(geom, x ** 2 / 2), 0.1, N)
    elif name == "corrected":
        solver = JKOStep(kl(geom, x ** 2 / 2), 0.1, N, correction="implicit-bias")
    elif name == "density":
        solver = JKOStep(porous_medium(geom, 2.0), 0.05, N, variable="density")
    elif name == "geodesic-log":
        solver = W2Geodesic(geom, N, variable="log")
    else:
        solver = W2Geodesic(geom, N, variable="density")
    log = solver.variable == "log"
    bump = lambda k: ufl.exp(-(x - 0.1 * k) ** 2) + 0.2          # noqa: E731
    solver.start.interpolate(ufl.ln(bump(0)) if log else bump(0))
    if solver.end is not None:
        solver.end.interpolate(ufl.ln(bump(N)) if log else bump(N))
    us, phis = solver.unknown_slices()
    for k, u in enumerate(us, start=1):
        u.interpolate(ufl.ln(bump(k)) if log else bump(k))
    for k, p in enumerate(phis, start=1):
        p.interpolate(0.1 * k * x ** 2 - 0.05 * x)
    for k, z in enumerate(solver.duals(), start=1):
        z.interpolate(0.3 + 0.1 * k + 0.05 * x ** 2)
    solver.mu.assign(1e-2)
    solver.barrier_weight.assign(0.7)
    solver.gauge.assign(1e-3)
    return solver


def relative_differences(solver):
    """(residual, Jacobian) relative differences between slice assembly and the
    monolithic form (assembled by Firedrake from one mixed form)."""
    s = solver.solver
    mono = s.monolithic_residual()
    with solver.w.dat.vec_ro as x:
        X = x.copy()
    F = X.duplicate()
    s.form_function(s.snes, X, F)
    with assemble(mono).dat.vec_ro as f:
        Fm = f.copy()
    res = (F - Fm).norm() / Fm.norm()
    J = s.jacobian()
    Jm = assemble(derivative(mono, solver.w), mat_type="aij").petscmat
    D = J.copy()
    D.axpy(-1.0, Jm, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
    return res, D.norm() / Jm.norm()


VARIANTS = ["log", "corrected", "density", "geodesic-log", "geodesic-density"]


@pytest.mark.parametrize("name", VARIANTS)
def test_slice_assembly_equals_the_monolithic_form(name):
    res, jac = relative_differences(variant(name, interval(12, -2.0, 2.0), 3))
    assert res < 1e-13 and jac < 1e-13, (res, jac)


@pytest.mark.parallel(nprocs=2)
@pytest.mark.parametrize("name", ["log", "density"])
def test_slice_assembly_equals_the_monolithic_form_on_two_ranks(name):
    geom = unit_square(6, diagonal="left")
    res, jac = relative_differences(variant(name, geom, 3))
    assert res < 1e-13 and jac < 1e-13, (res, jac)


@pytest.mark.parametrize("name", VARIANTS)
def test_compiled_forms_do_not_depend_on_the_number_of_slices(name):
    """The distinct forms (UFL signatures, which key Firedrake's kernel caches) of the
    rows and Jacobian blocks are the same few for 4 and 8 slices: interior slices
    share them, and the slice length is a Constant, so a new N compiles nothing."""
    geom = interval(8, -2.0, 2.0)
    sigs = []
    for N in (4, 8):
        s = variant(name, geom, N).solver
        sigs.append({f.signature() for f in [*s.rows, *s.blocks.values()]})
        assert len(s.rows) > len(sigs[-1]) / 4
    assert sigs[0] == sigs[1]


def test_slice_assembly_rejects_what_it_cannot_assemble():
    geom = interval(4)
    step = JKOStep(kl(geom, geom.x[0] ** 2), 0.1, 2)
    rows = step.solver.rows
    with pytest.raises(ValueError, match="one residual row per field"):
        SliceAssembledSolver(step.w, rows[:-1])
    with pytest.raises(ValueError, match="mat_type 'nest' is not supported"):
        SliceAssembledSolver(step.w, rows, solver_parameters={"mat_type": "nest"})
    V2 = FunctionSpace(geom.mesh, "CG", 2)
    other = [TestFunction(V2) * ufl.dx] * len(rows)
    with pytest.raises(ValueError, match="tested in"):
        SliceAssembledSolver(step.w, other)


def test_steps_solve_with_many_slices():
    """N = 24 slices (about 170 s of compilation per step before slice assembly): a
    KL step from a Gaussian matches the exact Gaussian step as well as N = 4 does.
    With V = x^2/2, N(m, s0^2) goes to N(m/(1 + eta), s^2), (1 + eta)s^2 - s0 s - eta = 0."""
    geom = interval(120, -4.0, 4.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 1)
    eta, m, s0 = 0.2, 0.5, 0.5
    m1, s = gaussian_jko_step(m, s0, eta)
    gauss = lambda c, sd: ufl.exp(-(x - c) ** 2 / (2 * sd ** 2)) / (sd * np.sqrt(2 * np.pi))  # noqa: E731,E501
    rho0 = Function(V).interpolate(gauss(m, s0))
    errors = []
    for N in (4, 24):
        res = JKOStep(kl(geom, x ** 2 / 2), eta, N, options_prefix=f"many{N}").solve(rho0)
        errors.append(geom.integrate(abs(res.rho - gauss(m1, s))))
    exact = Function(V).interpolate(gauss(m1, s))
    interp = geom.integrate(abs(exact - gauss(m1, s)))
    PETSc.Sys.Print(f"KL Gaussian step, L1 errors N = 4, 24: {errors}, interpolant {interp}")
    assert max(errors) < 3 * interp
