"""Geometries: volumes, Laplace–Beltrami checks, metric charts, gmsh input, bad input.

Every check is written against the :class:`~jkoflow.meshes.Geometry` interface only
(``geom.dx``, ``geom.dot_grad``, ...), the way solvers use it.
"""
import numpy as np
import pytest
import ufl
from firedrake import (COMM_SELF, COMM_WORLD, CellNormal, Constant, DirichletBC, Function,
                       FunctionSpace, LinearVariationalProblem, LinearVariationalSolver,
                       TestFunction, TrialFunction, assemble, interpolate, solve)
from irksome import Dt, RadauIIA, TimeStepper
from scipy.special import ellipeinc, ellipkinc

from conftest import rates
from jkoflow.meshes import (BUMP_AMPLITUDE, ELLIPSOID_AXES, Geometry, GeometryError,
                            bumpy_sphere, data_file, disk, ellipsoid, from_gmsh, hierarchy,
                            interval, metric_chart, periodic_square, poincare_disk, rectangle,
                            refine, sphere, stereographic_hemisphere, torus, unit_square,
                            upper_half_plane)

MUMPS = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}


# ----------------------------------------------------------------- exact areas
def ellipsoid_area(a, b, c):
    """Surface area of the ellipsoid with semi-axes a > b > c (Legendre's formula)."""
    phi = np.arccos(c / a)
    m = a ** 2 * (b ** 2 - c ** 2) / (b ** 2 * (a ** 2 - c ** 2))
    s = np.sin(phi)
    return 2 * np.pi * c ** 2 + 2 * np.pi * a * b / s * (
        ellipeinc(phi, m) * s ** 2 + ellipkinc(phi, m) * np.cos(phi) ** 2)


def bumpy_area(eps=BUMP_AMPLITUDE, n=400):
    """Area of r(u) = 1 + eps 3 sqrt3 u1 u2 u3 by Gauss–Legendre x trapezoid quadrature."""
    t, w = np.polynomial.legendre.leggauss(n)
    th, wt = np.pi / 2 * (t + 1), np.pi / 2 * w
    ph = 2 * np.pi * np.arange(2 * n) / (2 * n)
    T, P = np.meshgrid(th, ph, indexing="ij")
    c = eps * 3 * np.sqrt(3)
    r = 1 + c * 0.5 * np.sin(T) ** 2 * np.cos(T) * np.sin(2 * P)
    r_t = c * 0.5 * np.sin(2 * P) * (2 * np.sin(T) * np.cos(T) ** 2 - np.sin(T) ** 3)
    r_p = c * np.sin(T) ** 2 * np.cos(T) * np.cos(2 * P)
    dA = r * np.sqrt(r ** 2 * np.sin(T) ** 2 + r_t ** 2 * np.sin(T) ** 2 + r_p ** 2)
    return float(np.sum(dA * wt[:, None]) * 2 * np.pi / (2 * n))


R_MAJOR, R_MINOR, R0 = 1.0, 0.4, 0.8
POINCARE_AREA = 4 * np.pi * R0 ** 2 / (1 - R0 ** 2)


def distortion(a=0.3):
    r"""Phi(y) = y + a sin(pi y1) sin(pi y2)/pi (1, 1): the unit square onto itself."""
    def Phi(y):
        b = a * ufl.sin(ufl.pi * y[0]) * ufl.sin(ufl.pi * y[1]) / ufl.pi
        return ufl.as_vector((y[0] + b, y[1] + b))

    def metric(y):
        D = ufl.grad(Phi(y))
        return D.T * D
    return Phi, metric


def distorted_square(n):
    """The unit square seen through the chart Phi: a non-conformal, non-diagonal metric."""
    return metric_chart(unit_square(n), distortion()[1], name="distorted_square")


# ------------------------------------------------------------- volume orders
VOLUME_CASES = {
    # name: (constructor, resolutions, exact volume, expected order)
    "disk": (disk, [1, 2, 3], np.pi, 2),
    "disk_p2": (lambda k: disk(k, degree=2), [1, 2, 3], np.pi, 4),
    "sphere_p1": (lambda k: sphere(k, degree=1), [1, 2, 3], 4 * np.pi, 2),
    "sphere_p2": (sphere, [1, 2, 3], 4 * np.pi, 4),
    "cubed_sphere_p2": (lambda k: sphere(k, kind="cubed"), [1, 2, 3], 4 * np.pi, 4),
    "torus_p1": (lambda n: torus(n, n // 2, R_MAJOR, R_MINOR, degree=1), [8, 16, 32],
                 4 * np.pi ** 2 * R_MAJOR * R_MINOR, 2),
    "torus_p2": (lambda n: torus(n, n // 2, R_MAJOR, R_MINOR), [8, 16, 32],
                 4 * np.pi ** 2 * R_MAJOR * R_MINOR, 4),
    "ellipsoid_gmsh": (ellipsoid, [0, 1, 2], ellipsoid_area(*ELLIPSOID_AXES), 2),
    "bumpy_sphere_gmsh": (bumpy_sphere, [0, 1, 2], bumpy_area(), 2),
    "poincare_disk": (lambda k: poincare_disk(k, R0), [2, 3, 4], POINCARE_AREA, 2),
    "stereographic": (stereographic_hemisphere, [2, 3, 4], 2 * np.pi, 2),
}


@pytest.mark.parametrize("case", VOLUME_CASES)
def test_volume_converges(case):
    constructor, resolutions, exact, order = VOLUME_CASES[case]
    errs = [abs(g.volume() - exact) / exact for g in hierarchy(constructor, resolutions)]
    r = rates(errs)
    assert np.all(r > order - 0.25), (errs, r)


def test_chart_volumes_exact():
    """Straight-sided charts: only quadrature error, for every resolution."""
    uhp = upper_half_plane(4, -0.5, 0.5, 1.0, 3.0)
    assert uhp.volume() == pytest.approx(1.0 - 1.0 / 3.0, rel=1e-8)
    assert distorted_square(4).volume() == pytest.approx(1.0, rel=1e-8)
    # refinement keeps the metric (the rectangle is exact at every level)
    for g in refine(uhp, 2):
        assert g.volume() == pytest.approx(2.0 / 3.0, rel=1e-8)


def test_chart_boundary_lengths():
    """geom.ds measures metric length: the hyperbolic circle 2 pi sinh(d), d = 2 artanh r0,
    and the equator of the stereographic hemisphere, 2 pi."""
    exact = 4 * np.pi * R0 / (1 - R0 ** 2)
    errs = np.array([[abs(assemble(1 * g.ds) - L) / L
                      for g, L in ((poincare_disk(k, R0), exact),
                                   (stereographic_hemisphere(k), 2 * np.pi))]
                     for k in (2, 3, 4)])
    r = rates(errs)
    assert np.all(r > 1.9), (errs, r)
    # straight sides, only quadrature error: 1/y0 + 1/y1 + 2 log(y1/y0)
    uhp = upper_half_plane(4, -0.5, 0.5, 1.0, 2.0)
    assert assemble(1 * uhp.ds) == pytest.approx(1.5 + 2 * np.log(2.0), rel=1e-9)


# ------------------------------------------------------ Laplace–Beltrami (heat)
def heat_mode_error(geom, mode, T=0.1, steps=4):
    r"""Heat flow d_t u = Lap_g u from an eigenfunction with eigenvalue 2 (RadauIIA(2)).

    Returns the relative L2(dvol) error against e^{-2T} mode and the observed decay
    rate -log(|u(T)| / |u(0)|)/T.
    """
    V = FunctionSpace(geom.mesh, "CG", 1)
    u = Function(V).interpolate(mode)
    v = TestFunction(V)
    F = Dt(u) * v * geom.dx + geom.dot_grad(u, v) * geom.dx
    t, dt = Constant(0.0), Constant(T / steps)
    stepper = TimeStepper(F, RadauIIA(2), t, dt, u, solver_parameters=MUMPS)
    n0 = geom.integrate(u ** 2) ** 0.5
    for _ in range(steps):
        stepper.advance()
        t.assign(float(t) + float(dt))
    exact = np.exp(-2 * T) * mode
    err = geom.integrate((u - exact) ** 2) ** 0.5 / geom.integrate(exact ** 2) ** 0.5
    return err, -np.log(geom.integrate(u ** 2) ** 0.5 / n0) / T


def sphere_heat(refinement, comm=COMM_WORLD):
    geom = sphere(refinement, comm=comm)
    return heat_mode_error(geom, geom.x[2])


def hemisphere_heat(refinement):
    geom = stereographic_hemisphere(refinement)
    u = geom.x
    return heat_mode_error(geom, 2 * u[0] / (1 + ufl.inner(u, u)))


def test_laplace_beltrami_sphere_and_hemisphere_chart():
    """x3 on the sphere and x1 = 2u1/(1+|u|^2) on the stereographic chart (Neumann at the
    equator) both decay like e^{-2t}: one geometry, two descriptions, one answer."""
    sph = np.array([sphere_heat(k) for k in (2, 3, 4)])
    hem = np.array([hemisphere_heat(k) for k in (2, 3, 4)])
    for res in (sph, hem):
        r = rates(res[:, 0])
        assert np.all(r > 1.8), (res, r)
        assert np.all(np.abs(res[:, 1] - 2.0) < 0.1)
        assert abs(res[-1, 1] - 2.0) < 5e-3, res
    assert abs(sph[-1, 1] - hem[-1, 1]) < 5e-3


# ---------------------------------------------------------- flat torus spectrum
def flat_torus_eigenvalue(n, shift, iterations=40):
    """Shift-invert iteration for the P1 Laplacian on the periodic unit square."""
    geom = periodic_square(n)
    V = FunctionSpace(geom.mesh, "CG", 1)
    x = geom.x
    u_old = Function(V).interpolate(ufl.sin(2 * ufl.pi * x[0]) + ufl.cos(2 * ufl.pi * x[1])
                                    + ufl.cos(2 * ufl.pi * (x[0] + x[1])))
    u, w = TrialFunction(V), TestFunction(V)
    a = geom.dot_grad(u, w) * geom.dx - Constant(shift) * u * w * geom.dx
    uh = Function(V)
    solver = LinearVariationalSolver(LinearVariationalProblem(a, u_old * w * geom.dx, uh),
                                     solver_parameters=MUMPS)
    for _ in range(iterations):
        solver.solve()
        u_old.assign(uh / geom.integrate(uh ** 2) ** 0.5)
    return geom.integrate(geom.grad_norm2(u_old)) / geom.integrate(u_old ** 2)


def test_flat_torus_eigenvalues():
    """(2 pi)^2 (k^2 + l^2): 4 pi^2 and 8 pi^2, with O(h^2) P1 errors."""
    for shift, exact in ((30.0, 4 * np.pi ** 2), (70.0, 8 * np.pi ** 2)):
        lam = np.array([flat_torus_eigenvalue(n, shift) for n in (8, 16, 32)])
        errs = np.abs(lam - exact) / exact
        r = rates(errs)
        assert np.all(r > 1.8), (lam, r)
        assert errs[-1] < 0.02


# ------------------------------------------------------------ metric charts
def poincare_torsion_error(refinement):
    r"""-Lap_g u = 1, u = 0 on |x| = r0: u = log((1-|x|^2)/(1-r0^2)) (hyperbolic plane)."""
    geom = poincare_disk(refinement, R0)
    x = geom.x
    exact = ufl.ln((1 - ufl.inner(x, x)) / (1 - R0 ** 2))
    V = FunctionSpace(geom.mesh, "CG", 1)
    u, v = TrialFunction(V), TestFunction(V)
    uh = Function(V)
    solve(geom.dot_grad(u, v) * geom.dx == v * geom.dx, uh,
          bcs=DirichletBC(V, exact, "on_boundary"), solver_parameters=MUMPS)
    return geom.integrate((uh - exact) ** 2) ** 0.5 / geom.integrate(exact ** 2) ** 0.5


def test_poincare_disk_torsion_function():
    errs = [poincare_torsion_error(k) for k in (3, 4, 5)]
    r = rates(errs)
    assert np.all(r > 1.85), (errs, r)


def distorted_helmholtz_error(n):
    """-Lap u + u = f on the unit square, computed in the distorted chart (Neumann)."""
    geom = distorted_square(n)
    Phi, _ = distortion()
    X = Phi(geom.x)
    exact = ufl.cos(ufl.pi * X[0]) * ufl.cos(ufl.pi * X[1])
    V = FunctionSpace(geom.mesh, "CG", 1)
    u, v = TrialFunction(V), TestFunction(V)
    uh = Function(V)
    solve(geom.dot_grad(u, v) * geom.dx + u * v * geom.dx
          == (1 + 2 * ufl.pi ** 2) * exact * v * geom.dx, uh, solver_parameters=MUMPS)
    return geom.integrate((uh - exact) ** 2) ** 0.5 / geom.integrate(exact ** 2) ** 0.5


def test_general_metric_chart_helmholtz():
    errs = [distorted_helmholtz_error(n) for n in (8, 16, 32)]
    r = rates(errs)
    assert np.all(r > 1.8), (errs, r)


# ---------------------------------------------------- surface calculus details
def test_surface_gradient_of_ambient_expression():
    """grad of x3 on the sphere is its tangential part: int |grad_S x3|^2 = 8 pi / 3."""
    geom = sphere(3)
    val = geom.integrate(geom.grad_norm2(geom.x[2]))
    assert val == pytest.approx(8 * np.pi / 3, rel=1e-4)
    # surface divergence of the position field is 2 on the unit sphere (= 2H)
    assert geom.integrate(geom.div(geom.x)) == pytest.approx(2 * geom.volume(), rel=1e-8)
    # a second Geometry on the same (already oriented) mesh
    assert Geometry(geom.mesh).volume() == pytest.approx(geom.volume(), rel=1e-14)


def test_torus_orientation_consistent():
    """Cell normals point away from the core circle everywhere (x . n changes sign)."""
    geom = torus(16, 8, R_MAJOR, R_MINOR)
    x = geom.x
    core = ufl.as_vector((x[0], x[1], 0)) * R_MAJOR / ufl.sqrt(x[0] ** 2 + x[1] ** 2)
    s = assemble(interpolate(ufl.dot(CellNormal(geom.mesh), x - core),
                             FunctionSpace(geom.mesh, "DG", 0)))
    with s.dat.vec_ro as vec:
        assert vec.min()[1] > 0.3 * R_MINOR


def test_gmsh_files_are_immersed_surfaces_and_planar_meshes():
    ell = from_gmsh("ellipsoid.msh")
    assert (ell.tdim, ell.gdim) == (2, 3) and ell.num_cells() == 1280
    ann = from_gmsh(data_file("annulus.msh"))
    assert (ann.tdim, ann.gdim) == (2, 2)
    n = 64
    polygon_area = 0.5 * n * np.sin(2 * np.pi / n) * (1.0 - 0.25)
    assert ann.volume() == pytest.approx(polygon_area, rel=1e-12)
    assert metric_chart(ann, lambda x: 2.0 * ufl.Identity(2)).volume() == \
        pytest.approx(2 * polygon_area, rel=1e-12)


# -------------------------------------------- one weak form on every geometry
EVERY = {
    "interval": lambda: interval(16, 0.0, 2.0),
    "interval_chart": lambda: metric_chart(interval(16, 0.0, 1.0),
                                           lambda x: ufl.as_matrix([[(1 + x[0]) ** 2]])),
    "rectangle": lambda: rectangle(6, 3, 0.0, 2.0, 0.0, 1.0),
    "unit_square_quads": lambda: unit_square(4, quadrilateral=True),
    "disk": lambda: disk(2),
    "flat_torus": lambda: periodic_square(6, 2.0),
    "icosahedral_sphere": lambda: sphere(2),
    "cubed_sphere": lambda: sphere(2, kind="cubed"),
    "torus": lambda: torus(12, 6, R_MAJOR, R_MINOR),
    "ellipsoid_gmsh": lambda: ellipsoid(0),
    "annulus_gmsh": lambda: from_gmsh("annulus.msh"),
    "poincare_disk": lambda: poincare_disk(2, R0),
    "upper_half_plane": lambda: upper_half_plane(4),
    "stereographic_hemisphere": lambda: stereographic_hemisphere(2),
    "user_metric_chart": lambda: distorted_square(4),
}
EVERY_VOLUME = {
    "interval": (2.0, 1e-12), "interval_chart": (1.5, 1e-12), "rectangle": (2.0, 1e-12), "unit_square_quads": (1.0, 1e-12),
    "disk": (np.pi, 0.05), "flat_torus": (4.0, 1e-12), "icosahedral_sphere": (4 * np.pi, 1e-3),
    "cubed_sphere": (4 * np.pi, 1e-3), "torus": (4 * np.pi ** 2 * R_MAJOR * R_MINOR, 5e-3),
    "ellipsoid_gmsh": (ellipsoid_area(*ELLIPSOID_AXES), 5e-3),
    "annulus_gmsh": (0.75 * np.pi, 5e-3), "poincare_disk": (POINCARE_AREA, 0.1),
    "upper_half_plane": (0.5, 1e-8), "stereographic_hemisphere": (2 * np.pi, 0.05),
    "user_metric_chart": (1.0, 1e-8),
}


def weak_form_invariants(geom):
    """Solver-style code: normalise a density, one implicit weighted-diffusion step."""
    V = FunctionSpace(geom.mesh, "CG", 1)
    x = geom.x
    rho0 = Function(V).interpolate(1.0 + 0.5 * ufl.sin(3 * x[0]) * ufl.cos(2 * x[geom.gdim - 1]))
    geom.check_function(rho0)
    geom.normalise(rho0, mass=2.0)
    mass0 = geom.mass(rho0)
    rho, v = Function(V), TestFunction(V)
    rho.assign(rho0)
    weight = 1.0 + ufl.inner(x, x)
    F = (rho - rho0) * v * geom.dx + Constant(0.05) * geom.weighted_stiffness(weight, rho, v)
    solve(F == 0, rho, solver_parameters=MUMPS)
    dirichlet = [geom.integrate(weight * geom.grad_norm2(f)) for f in (rho0, rho)]
    return mass0, geom.mass(rho), dirichlet


@pytest.mark.parametrize("case", EVERY)
def test_same_weak_form_on_every_geometry(case):
    geom = EVERY[case]()
    exact, tol = EVERY_VOLUME[case]
    assert geom.volume() == pytest.approx(exact, rel=tol)
    mass0, mass1, (e0, e1) = weak_form_invariants(geom)
    assert mass0 == pytest.approx(2.0, rel=1e-13)
    assert mass1 == pytest.approx(mass0, rel=1e-12)   # no-flux: mass to round-off
    assert e1 < e0                                    # diffusion dissipates
    line = geom.describe()
    assert f"{geom.num_cells()} cells" in line and f"{geom.volume():.8g}" in line
    hmin, hmax = geom.h_range()
    assert 0 < hmin <= hmax


# ------------------------------------------------------------------ bad input
def test_bad_metrics():
    base = unit_square(2)
    with pytest.raises(GeometryError, match="positive definite"):
        metric_chart(base, lambda x: ufl.as_matrix([[1.0, 0.0], [0.0, x[0] - 0.5]]))
    with pytest.raises(GeometryError, match="symmetric"):
        metric_chart(base, [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(GeometryError, match="shape"):
        metric_chart(base, ufl.Identity(3))
    with pytest.raises(GeometryError, match="shape"):
        metric_chart(base, lambda x: x)
    with pytest.raises(GeometryError, match="not finite"):
        metric_chart(base, lambda x: ufl.sqrt(x[0] - 0.5) * ufl.Identity(2))
    with pytest.raises(GeometryError, match="chart"):
        Geometry(sphere(0, degree=1).mesh, ufl.Identity(3))


def write_msh(path, points, triangles):
    lines = ["$MeshFormat", "2.2 0 8", "$EndMeshFormat", "$Nodes", str(len(points))]
    lines += [f"{i} {p[0]} {p[1]} {p[2]}" for i, p in enumerate(points, 1)]
    lines += ["$EndNodes", "$Elements", str(len(triangles))]
    lines += [f"{i} 2 2 1 1 {a + 1} {b + 1} {c + 1}" for i, (a, b, c) in enumerate(triangles, 1)]
    lines += ["$EndElements"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_bad_mesh_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_gmsh(str(tmp_path / "missing.msh"))
    garbage = tmp_path / "garbage.msh"
    garbage.write_text("this is not a mesh\n")
    with pytest.raises(GeometryError, match="not a gmsh"):
        from_gmsh(str(garbage))
    truncated = tmp_path / "truncated.msh"
    truncated.write_text("$MeshFormat\n2.2 0 8\n$EndMeshFormat\n$Nodes\n3\n1 0 0 0\n")
    with pytest.raises(GeometryError, match="could not read"):
        from_gmsh(str(truncated))
    with pytest.raises(GeometryError, match="extension"):
        from_gmsh(data_file("generate.py"))


def test_degenerate_surface_cells(tmp_path):
    """A closed tetrahedron surface with one vertex pushed into a face plane."""
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    tris = [(0, 2, 1), (0, 1, 3), (1, 2, 3), (0, 3, 2)]
    assert from_gmsh(write_msh(tmp_path / "tet.msh", pts, tris)).volume() > 0
    flat = pts.copy()
    flat[3] = [0.5, 0.0, 0.0]   # on the edge 0-1: face (0, 1, 3) has zero area
    with pytest.raises(GeometryError, match="degenerate"):
        from_gmsh(write_msh(tmp_path / "flat.msh", flat, tris))
    planar = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0.0]])
    with pytest.raises(GeometryError, match="degenerate"):
        from_gmsh(write_msh(tmp_path / "planar.msh", planar, [(0, 1, 2), (0, 2, 3)]))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="kind"):
        sphere(1, kind="octahedral")
    with pytest.raises(ValueError, match="minor_radius"):
        torus(8, 4, 1.0, 2.0)
    with pytest.raises(ValueError, match="refinement"):
        disk(-1)
    with pytest.raises(ValueError, match="r0"):
        poincare_disk(1, 1.0)
    with pytest.raises(ValueError, match="y0"):
        upper_half_plane(4, y0=0.0)
    geom = unit_square(2)
    with pytest.raises(ValueError, match="mass"):
        geom.normalise(Function(FunctionSpace(geom.mesh, "CG", 1)))
    other = FunctionSpace(unit_square(2).mesh, "CG", 1)
    with pytest.raises(ValueError, match="different mesh"):
        geom.check_function(Function(other))


# ------------------------------------------------------------------- parallel
def parallel_constructors(comm):
    return {
        "sphere": sphere(2, comm=comm),
        "torus": torus(12, 6, R_MAJOR, R_MINOR, comm=comm),
        "ellipsoid": from_gmsh("ellipsoid.msh", comm=comm),
        "annulus": from_gmsh("annulus.msh", comm=comm),
        "ellipsoid_refined": ellipsoid(1, comm=comm),
        "poincare": poincare_disk(2, R0, comm=comm),
        "flat_torus": periodic_square(8, comm=comm),
    }


@pytest.mark.parallel(nprocs=2)
def test_parallel_volume_mass_describe_match_serial():
    par, ser = parallel_constructors(COMM_WORLD), parallel_constructors(COMM_SELF)
    for name in par:
        gp, gs = par[name], ser[name]
        assert gp.mesh.cell_set.size < gp.num_cells(), name   # really distributed
        assert gp.volume() == pytest.approx(gs.volume(), rel=1e-12), name
        assert gp.describe() == gs.describe(), name
        masses = []
        for g in (gp, gs):
            rho = Function(FunctionSpace(g.mesh, "CG", 1)).interpolate(
                2 + ufl.sin(2 * ufl.pi * g.x[0]))  # periodic: well defined on the seam
            masses.append(g.mass(rho))
            assert g.mass(g.normalise(rho)) == pytest.approx(1.0, rel=1e-13)
        assert masses[0] == pytest.approx(masses[1], rel=1e-12), name


@pytest.mark.parallel(nprocs=2)
def test_parallel_sphere_heat_matches_serial():
    par = sphere_heat(3, COMM_WORLD)
    ser = sphere_heat(3, COMM_SELF)
    assert par == pytest.approx(ser, rel=1e-9)


@pytest.mark.parallel(nprocs=2)
def test_parallel_bad_file_raises_on_every_rank(tmp_path):
    garbage = tmp_path / "garbage.msh"
    garbage.write_text("not a mesh\n")
    with pytest.raises(GeometryError):
        from_gmsh(str(garbage))
    with pytest.raises(FileNotFoundError):
        from_gmsh(str(tmp_path / "missing.msh"))
    truncated = tmp_path / "truncated.msh"   # PETSc fails on rank 0 only: must not hang
    truncated.write_text("$MeshFormat\n2.2 0 8\n$EndMeshFormat\n$Nodes\n3\n1 0 0 0\n")
    with pytest.raises(GeometryError, match="could not read"):
        from_gmsh(str(truncated))
