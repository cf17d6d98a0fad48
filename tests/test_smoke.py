"""Environment smoke test: Poisson/Helmholtz converge at the expected order.

Kept from the set-up issue: it checks that Firedrake, PETSc, MUMPS and MPI work
together, on the unit square and on the icosahedral sphere, serially and on 2 ranks.
"""
import numpy as np
import pytest
import ufl
from firedrake import (Function, FunctionSpace, IcosahedralSphereMesh, SpatialCoordinate,
                       TestFunction, TrialFunction, UnitSquareMesh, assemble, dx, errornorm,
                       grad, inner, solve)

from conftest import rates

MUMPS = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}


def helmholtz_square_error(n, degree=1):
    """-Lap u + u = f with u = cos(pi x) cos(pi y) (natural Neumann BCs)."""
    mesh = UnitSquareMesh(n, n)
    x, y = SpatialCoordinate(mesh)
    exact = ufl.cos(ufl.pi * x) * ufl.cos(ufl.pi * y)
    f = (1 + 2 * ufl.pi ** 2) * exact
    V = FunctionSpace(mesh, "CG", degree)
    u, v = TrialFunction(V), TestFunction(V)
    uh = Function(V)
    solve((inner(grad(u), grad(v)) + u * v) * dx == f * v * dx, uh, solver_parameters=MUMPS)
    return errornorm(exact, uh, "L2")


def helmholtz_sphere_error(refinement, degree=2):
    """-Lap_S u + u = 7 x3 on the unit sphere (x3 has eigenvalue 2: u = 7/3 x3)."""
    mesh = IcosahedralSphereMesh(1.0, refinement_level=refinement, degree=degree)
    mesh.init_cell_orientations(SpatialCoordinate(mesh))
    x = SpatialCoordinate(mesh)
    exact = 7.0 / 3.0 * x[2]
    V = FunctionSpace(mesh, "CG", degree)
    u, v = TrialFunction(V), TestFunction(V)
    uh = Function(V)
    solve((inner(grad(u), grad(v)) + u * v) * dx == 7.0 * x[2] * v * dx, uh,
          solver_parameters=MUMPS)
    return float(assemble((uh - exact) ** 2 * dx)) ** 0.5


def check_square():
    errs = [helmholtz_square_error(n) for n in (8, 16, 32)]
    r = rates(errs)
    assert np.all(r > 1.9), (errs, r)


def check_sphere():
    errs = [helmholtz_sphere_error(k) for k in (1, 2, 3)]
    r = rates(errs)
    assert np.all(r > 2.7), (errs, r)   # P2 on a P2 (curved) sphere: order 3


def test_square_p1_order2():
    check_square()


def test_sphere_p2_order3():
    check_sphere()


@pytest.mark.parallel(nprocs=2)
def test_square_p1_order2_parallel():
    check_square()


@pytest.mark.parallel(nprocs=2)
def test_sphere_p2_order3_parallel():
    check_sphere()
