r"""Constructors for the geometries jkoflow ships: flat domains, surfaces, charts.

Each constructor returns a :class:`~jkoflow.meshes.Geometry` and takes one
resolution argument first (``n`` cells per side, or ``refinement`` levels), so that
convergence studies can build a family with :func:`hierarchy`; imported meshes are
refined with :func:`refine`.  Extra keyword arguments (``comm``,
``distribution_parameters``, ...) go to the Firedrake mesh constructor.

Surfaces in :math:`\mathbb{R}^3` (induced metric):

* :func:`sphere` (icosahedral or cubed), area :math:`4\pi R^2`;
* :func:`torus`, area :math:`4\pi^2 R r`;
* :func:`ellipsoid`, :func:`bumpy_sphere` and any :func:`from_gmsh` file.

Metric charts carry a metric tensor :math:`g(x)`:

* :func:`poincare_disk`: the hyperbolic plane, :math:`g = 4|dx|^2/(1-|x|^2)^2`, on a
  Euclidean disk of radius ``r0 < 1`` (hyperbolic area :math:`4\pi r_0^2/(1-r_0^2)`,
  curvature -1);
* :func:`upper_half_plane`: the hyperbolic plane, :math:`g = |dx|^2/y^2`, on a rectangle;
* :func:`stereographic_hemisphere`: the upper unit hemisphere seen through
  stereographic projection, :math:`g = 4|du|^2/(1+|u|^2)^2` on the unit disk;
* :func:`metric_chart`: any user-supplied :math:`g(x)` on any planar mesh.
"""
from __future__ import annotations

import os
from typing import Callable

import firedrake as fd
import numpy as np
import ufl
from firedrake.petsc import PETSc
from mpi4py import MPI

from .geometry import Geometry, GeometryError

__all__ = ["interval", "rectangle", "unit_square", "disk", "periodic_square",
           "sphere", "torus", "from_gmsh", "ellipsoid", "bumpy_sphere", "metric_chart",
           "poincare_disk", "upper_half_plane", "stereographic_hemisphere", "hierarchy",
           "refine", "DATA_DIR", "data_file", "ELLIPSOID_AXES", "BUMP_AMPLITUDE"]

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
#: Semi-axes of the shipped ``ellipsoid.msh`` (see ``data/generate.py``).
ELLIPSOID_AXES = (1.5, 1.0, 0.75)
#: ``bumpy_sphere.msh`` is :math:`r = 1 + \epsilon\,3\sqrt3\,u_1u_2u_3` on unit vectors u.
BUMP_AMPLITUDE = 0.15


def _check_resolution(name: str, value, minimum: int = 1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_degree(degree):
    _check_resolution("degree", degree, 1)


def _reposition(mesh, expr, degree: int):
    """A mesh with the topology of ``mesh`` and degree-``degree`` coordinates ``expr(x)``."""
    X = expr(fd.SpatialCoordinate(mesh))
    V = fd.VectorFunctionSpace(mesh, "CG", degree, dim=X.ufl_shape[0])
    return fd.Mesh(fd.Function(V).interpolate(X))


# ------------------------------------------------------------------ flat domains
def interval(n: int = 64, a: float = -6.0, b: float = 6.0, *,
             quadrature_degree: int | None = None, **kwargs) -> Geometry:
    """The interval ``[a, b]`` with ``n`` equal cells (the paper's 1D experiments)."""
    _check_resolution("n", n)
    if not b > a:
        raise ValueError(f"interval needs b > a, got [{a}, {b}]")
    return Geometry(fd.IntervalMesh(n, a, b, **kwargs), name="interval",
                    quadrature_degree=quadrature_degree)


def rectangle(nx: int = 32, ny: int | None = None, x0: float = 0.0, x1: float = 1.0,
              y0: float = 0.0, y1: float = 1.0, *, diagonal: str = "crossed",
              quadrilateral: bool = False, quadrature_degree: int | None = None,
              **kwargs) -> Geometry:
    """The rectangle ``[x0, x1] x [y0, y1]`` with ``nx x ny`` squares.

    ``diagonal="crossed"`` (the default) splits each square into four triangles, which
    keeps the reflection symmetries of the domain exactly; ``"left"``/``"right"`` cut
    each square along one diagonal; ``quadrilateral=True`` keeps the squares.

    For JKO steps with density unknowns prefer one diagonal or quadrilaterals: on the
    crossed mesh the :math:`P_1` stiffness matrix does not couple the squares' corners
    with each other, the discrete divergence of a smooth potential alternates between
    corner and centre vertices, and the step's density carries that alternation (L1
    error not falling under refinement; see :mod:`jkoflow.solvers.benamou_brenier`).
    The geometry records the choice as ``geometry.crossed``, and the transport solvers
    log a warning for that combination.
    """
    ny = nx if ny is None else ny
    _check_resolution("nx", nx)
    _check_resolution("ny", ny)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty rectangle [{x0}, {x1}] x [{y0}, {y1}]")
    extra = {} if quadrilateral else {"diagonal": diagonal}
    mesh = fd.RectangleMesh(nx, ny, x1, y1, originX=x0, originY=y0,
                            quadrilateral=quadrilateral, **extra, **kwargs)
    geom = Geometry(mesh, name="rectangle", quadrature_degree=quadrature_degree)
    geom.crossed = not quadrilateral and diagonal == "crossed"
    return geom


def unit_square(n: int = 32, **kwargs) -> Geometry:
    """The unit square with ``n x n`` squares (see :func:`rectangle`)."""
    geom = rectangle(n, n, **kwargs)
    geom.name = "unit_square"
    return geom


def disk(refinement: int = 3, radius: float = 1.0, *, degree: int = 1,
         quadrature_degree: int | None = None, **kwargs) -> Geometry:
    r"""The disk :math:`|x| < R`, from Firedrake's ``UnitDiskMesh`` (a square mapped radially).

    Every boundary vertex lies on the circle, so the polygon's area error is
    :math:`O(h^2)`; with ``degree=2`` the boundary edges are curved (boundary nodes
    snapped onto the circle).  ``refinement`` k gives :math:`8\cdot 4^k` cells.
    """
    _check_resolution("refinement", refinement, 0)
    _check_degree(degree)
    if not radius > 0:
        raise ValueError(f"disk radius must be positive, got {radius}")
    base = fd.UnitDiskMesh(refinement, **kwargs)
    V = fd.VectorFunctionSpace(base, "CG", degree)
    X = fd.Function(V).interpolate(radius * fd.SpatialCoordinate(base))
    if degree > 1:
        nodes = fd.DirichletBC(V, 0, "on_boundary").nodes
        pts = X.dat.data_with_halos[nodes]
        X.dat.data_with_halos[nodes] = radius * pts / np.linalg.norm(pts, axis=1)[:, None]
    return Geometry(fd.Mesh(X), name="disk", quadrature_degree=quadrature_degree)


def periodic_square(n: int = 32, length: float = 1.0, *,
                    quadrature_degree: int | None = None, **kwargs) -> Geometry:
    r"""The flat torus: a square of side ``length`` with periodic sides (eigenvalues
    :math:`(2\pi/L)^2(k^2+l^2)`)."""
    _check_resolution("n", n, 3)
    if not length > 0:
        raise ValueError(f"periodic_square length must be positive, got {length}")
    return Geometry(fd.PeriodicSquareMesh(n, n, length, **kwargs), name="flat_torus",
                    quadrature_degree=quadrature_degree)


# ----------------------------------------------------------------------- surfaces
def sphere(refinement: int = 3, radius: float = 1.0, *, kind: str = "icosahedral",
           degree: int = 2, quadrature_degree: int | None = None, **kwargs) -> Geometry:
    r"""A sphere of the given radius immersed in :math:`\mathbb{R}^3`.

    Parameters
    ----------
    refinement
        Refinement level of the base icosahedron (:math:`20\cdot 4^k` triangles) or
        cube (:math:`6\cdot 4^k` quadrilaterals).
    kind
        ``"icosahedral"`` (triangles) or ``"cubed"`` (quadrilaterals).
    degree
        Polynomial degree of the coordinate field (2 = curved cells: area error
        :math:`O(h^4)` instead of :math:`O(h^2)`).
    """
    _check_resolution("refinement", refinement, 0)
    _check_degree(degree)
    if not radius > 0:
        raise ValueError(f"sphere radius must be positive, got {radius}")
    builders = {"icosahedral": fd.IcosahedralSphereMesh, "cubed": fd.CubedSphereMesh}
    if kind not in builders:
        raise ValueError(f"unknown sphere kind {kind!r}; valid: {', '.join(map(repr, builders))}")
    mesh = builders[kind](radius, refinement_level=refinement, degree=degree, **kwargs)
    return Geometry(mesh, name=f"{kind}_sphere", quadrature_degree=quadrature_degree)


def _torus_core(x, R):
    """The point of the core circle (radius R in the x1x2-plane) nearest to x."""
    rho = ufl.sqrt(x[0] ** 2 + x[1] ** 2)
    return ufl.as_vector((R * x[0] / rho, R * x[1] / rho, 0.0))


def torus(n_major: int = 32, n_minor: int = 16, major_radius: float = 1.0,
          minor_radius: float = 0.4, *, degree: int = 2, quadrilateral: bool = False,
          quadrature_degree: int | None = None, **kwargs) -> Geometry:
    r"""The torus of revolution in :math:`\mathbb{R}^3` with radii :math:`R > r`.

    Area :math:`4\pi^2 R r`.  ``n_major x n_minor`` squares (each split into two
    triangles unless ``quadrilateral``).  With ``degree=2`` the nodes of the curved
    cells are projected onto the exact torus.  Cell normals point away from the core
    circle (the default orientation :math:`x` would flip them on the inner side).
    ``quadrature_degree`` is the geometry's default for :attr:`Geometry.dx` and every
    solver on it (see :meth:`Geometry.quadrature_degree_for`).
    """
    _check_resolution("n_major", n_major, 3)
    _check_resolution("n_minor", n_minor, 3)
    _check_degree(degree)
    R, r = major_radius, minor_radius
    if not 0 < r < R:
        raise ValueError(f"torus needs 0 < minor_radius < major_radius, got {r}, {R}")
    mesh = fd.TorusMesh(n_major, n_minor, R, r, quadrilateral=quadrilateral, **kwargs)
    if degree > 1:
        def project(x):
            c = _torus_core(x, R)
            return c + r * (x - c) / ufl.sqrt(ufl.inner(x - c, x - c))
        mesh = _reposition(mesh, project, degree)
    return Geometry(mesh, name="torus", orientation=lambda x: x - _torus_core(x, R),
                    quadrature_degree=quadrature_degree)


# -------------------------------------------------------------------- gmsh files
def data_file(name: str) -> str:
    """Path of a mesh file shipped in ``jkoflow/meshes/data`` (e.g. ``"ellipsoid.msh"``)."""
    return os.path.join(DATA_DIR, name)


def _check_gmsh_header(path: str):
    try:
        with open(path, "rb") as fh:
            head = fh.read(64).lstrip()
    except OSError as e:
        raise GeometryError(f"cannot read mesh file {path!r}: {e}") from e
    if not head.startswith(b"$MeshFormat"):
        raise GeometryError(f"mesh file {path!r} is not a gmsh .msh file (no $MeshFormat "
                            f"header)")


def _check_readable_in_parallel(path: str, comm):
    """In parallel PETSc reads gmsh files on rank 0 only, and an error there would leave
    the other ranks waiting: rank 0 first reads the file alone and shares the verdict."""
    if comm.size == 1:
        return
    error = None
    if comm.rank == 0:
        try:
            PETSc.DMPlex().createFromFile(path, comm=PETSc.COMM_SELF).destroy()
        except Exception as e:
            error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    error = comm.bcast(error, root=0)
    if error is not None:
        raise GeometryError(f"could not read mesh file {path!r}: {error}")


def from_gmsh(path: str, metric=None, *, name: str | None = None, dim: int | None = None,
              orientation=None, quadrature_degree: int | None = None,
              **kwargs) -> Geometry:
    r"""A planar or surface mesh read from a gmsh ``.msh`` file.

    ``path`` may also be the name of a file shipped with jkoflow (see
    :func:`data_file`).  The file is read with 3D coordinates, and trailing
    coordinates that vanish everywhere are dropped: a 2D mesh with z = 0 becomes a
    flat planar mesh, otherwise an immersed surface with its induced metric.  Planar meshes may be given a
    ``metric`` as for :func:`metric_chart`.

    Parameters
    ----------
    dim
        Force the geometric dimension instead of detecting it.
    orientation
        For surfaces: a vector field (callable of x) pointing to the chosen side; the
        default :math:`x` suits surfaces star-shaped about the origin.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    GeometryError
        If the file cannot be read as a mesh, or has degenerate cells.
    """
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(data_file(path)):
        path = data_file(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mesh file {path!r} does not exist")
    if os.path.splitext(path)[1].lower() != ".msh":
        raise GeometryError(f"mesh file {path!r}: expected a gmsh file with extension .msh")
    _check_gmsh_header(path)
    _check_readable_in_parallel(path, kwargs.get("comm", fd.COMM_WORLD))
    try:
        mesh = fd.Mesh(path, dim=dim or 3, **kwargs)
    except Exception as e:  # PETSc raises generic errors for unreadable files
        raise GeometryError(f"could not read mesh file {path!r}: {e}") from e
    tdim = mesh.topological_dimension
    if dim is None and tdim < 3:  # drop trailing coordinates that vanish everywhere
        local = np.abs(mesh.coordinates.dat.data_ro).max(axis=0, initial=0.0)
        extent = np.empty_like(local)
        mesh.comm.Allreduce(local, extent, MPI.MAX)
        gdim = max(tdim, 1 + int(np.flatnonzero(extent > 0).max(initial=-1)))
        if gdim < 3:
            mesh = _reposition(mesh, lambda x: ufl.as_vector([x[i] for i in range(gdim)]), 1)
    name = name or os.path.splitext(os.path.basename(path))[0]
    return Geometry(mesh, metric, name=name, orientation=orientation,
                    quadrature_degree=quadrature_degree)


def _snap_ellipsoid(X):
    a = np.asarray(ELLIPSOID_AXES)
    return X / np.sqrt(((X / a) ** 2).sum(axis=1))[:, None]


def _snap_bumpy(X):
    u = X / np.linalg.norm(X, axis=1)[:, None]
    r = 1.0 + BUMP_AMPLITUDE * 3.0 * np.sqrt(3.0) * u[:, 0] * u[:, 1] * u[:, 2]
    return u * r[:, None]


def ellipsoid(refinement: int = 0, **kwargs) -> Geometry:
    r"""The ellipsoid :math:`\sum_i x_i^2/a_i^2 = 1`, :math:`a = (1.5, 1, 0.75)`, read from
    the shipped ``ellipsoid.msh`` (1280 triangles) and refined ``refinement`` times with
    new vertices put back on the ellipsoid."""
    _check_resolution("refinement", refinement, 0)
    geom = from_gmsh(data_file("ellipsoid.msh"), **kwargs)
    return refine(geom, refinement, snap=_snap_ellipsoid)[-1] if refinement else geom


def bumpy_sphere(refinement: int = 0, **kwargs) -> Geometry:
    r"""The star-shaped surface :math:`r(u) = 1 + 0.15\cdot 3\sqrt3\,u_1u_2u_3` read from
    the shipped ``bumpy_sphere.msh`` and refined ``refinement`` times (snapped)."""
    _check_resolution("refinement", refinement, 0)
    geom = from_gmsh(data_file("bumpy_sphere.msh"), **kwargs)
    return refine(geom, refinement, snap=_snap_bumpy)[-1] if refinement else geom


# -------------------------------------------------------------------- charts
def metric_chart(mesh_or_geometry, metric: Callable | ufl.core.expr.Expr, *,
                 name: str = "chart", quadrature_degree: int | None = 6) -> Geometry:
    r"""A flat mesh carrying a user metric ``g(x)``.

    Parameters
    ----------
    mesh_or_geometry
        A flat (``gdim == tdim``) Firedrake mesh or :class:`Geometry`.
    metric
        :math:`g(x)`: a callable of ``SpatialCoordinate(mesh)`` returning a
        ``(gdim, gdim)`` UFL expression (preferred), such an expression, or a
        constant array.  Checked finite, symmetric and positive definite.
    quadrature_degree
        Metric factors are usually not polynomials; integrals use this degree.

    Raises
    ------
    GeometryError
        For a metric of the wrong shape, not SPD, or on an immersed surface.
    """
    mesh = getattr(mesh_or_geometry, "mesh", mesh_or_geometry)
    return Geometry(mesh, metric, name=name, quadrature_degree=quadrature_degree)


def _conformal(factor: Callable) -> Callable:
    return lambda x: factor(x) * ufl.Identity(2)


def poincare_disk(refinement: int = 3, r0: float = 0.8, *, degree: int = 1,
                  quadrature_degree: int = 6, **kwargs) -> Geometry:
    r"""The Poincaré disk model of the hyperbolic plane (curvature -1) on :math:`|x| < r_0`.

    Metric :math:`4/(1-|x|^2)^2\,I`; the hyperbolic area is :math:`4\pi r_0^2/(1-r_0^2)`,
    the chart is a geodesic disk of hyperbolic radius :math:`2\,\mathrm{artanh}\,r_0`.
    """
    if not 0 < r0 < 1:
        raise ValueError(f"Poincaré chart needs 0 < r0 < 1, got {r0}")
    base = disk(refinement, radius=r0, degree=degree, **kwargs)
    return metric_chart(base, _conformal(lambda x: 4.0 / (1.0 - ufl.inner(x, x)) ** 2),
                        name="poincare_disk", quadrature_degree=quadrature_degree)


def upper_half_plane(n: int = 16, x0: float = -0.5, x1: float = 0.5, y0: float = 1.0,
                     y1: float = 2.0, *, quadrature_degree: int = 6, **kwargs) -> Geometry:
    r"""A patch :math:`[x_0,x_1]\times[y_0,y_1]` of the hyperbolic upper half-plane,
    metric :math:`|dx|^2/y^2`; area :math:`(x_1-x_0)(1/y_0 - 1/y_1)`."""
    if not y0 > 0:
        raise ValueError(f"the upper half-plane patch needs y0 > 0, got {y0}")
    base = rectangle(n, n, x0, x1, y0, y1, **kwargs)
    return metric_chart(base, _conformal(lambda x: 1.0 / x[1] ** 2),
                        name="upper_half_plane", quadrature_degree=quadrature_degree)


def stereographic_hemisphere(refinement: int = 3, *, degree: int = 1,
                             quadrature_degree: int = 6, **kwargs) -> Geometry:
    r"""The upper unit hemisphere in stereographic coordinates :math:`u` on the unit disk.

    Metric :math:`4/(1+|u|^2)^2\,I`, area :math:`2\pi`; :math:`u \mapsto
    (2u, 1-|u|^2)/(1+|u|^2)` maps the chart onto the hemisphere, the boundary circle
    onto the equator.
    """
    base = disk(refinement, radius=1.0, degree=degree, **kwargs)
    return metric_chart(base, _conformal(lambda u: 4.0 / (1.0 + ufl.inner(u, u)) ** 2),
                        name="stereographic_hemisphere", quadrature_degree=quadrature_degree)


# ----------------------------------------------------------------- hierarchies
def hierarchy(constructor: Callable[..., Geometry], resolutions, **kwargs) -> list[Geometry]:
    """The same geometry at several resolutions, for convergence studies.

    ``hierarchy(sphere, [1, 2, 3])`` calls ``sphere(1)``, ``sphere(2)``, ... Each
    constructor interprets its first argument as its resolution parameter.
    """
    return [constructor(r, **kwargs) for r in resolutions]


def refine(geometry: Geometry, levels: int, *, snap: Callable | None = None) -> list[Geometry]:
    r"""Nested uniform refinements of a geometry (Firedrake ``MeshHierarchy``).

    Returns ``levels + 1`` geometries, coarsest first, with the metric and
    orientation of ``geometry`` re-applied.  New vertices are edge midpoints, so a
    curved surface or boundary only converges if ``snap`` puts them back on it.

    Parameters
    ----------
    snap
        ``snap(X) -> X``: maps an ``(n, gdim)`` array of vertex coordinates onto the
        exact surface (applied to every refined level).  Refined meshes have
        piecewise-linear coordinates.
    """
    _check_resolution("levels", levels, 0)
    if levels == 0:
        return [geometry]
    meshes = fd.MeshHierarchy(geometry.mesh, levels)
    out = [geometry]
    for mesh in list(meshes)[1:]:
        if snap is not None:
            X = mesh.coordinates.dat.data_with_halos
            X[:] = snap(np.array(X))
        out.append(geometry.on_mesh(mesh))
    return out
