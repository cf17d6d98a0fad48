r"""Constructors for the geometries jkoflow ships: flat domains, surfaces, charts.

Each constructor returns a :class:`~jkoflow.meshes.Geometry` and takes one
resolution argument (``n`` cells per unit length or edge, or ``refinement`` levels),
so that convergence studies can build a family with :func:`hierarchy`.

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
import ufl

from .geometry import Geometry, GeometryError

__all__ = ["interval", "rectangle", "unit_square", "disk", "periodic_square",
           "sphere", "torus", "from_gmsh", "metric_chart", "poincare_disk",
           "upper_half_plane", "stereographic_hemisphere", "hierarchy", "DATA_DIR",
           "data_file"]

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _check_resolution(name: str, value: int, minimum: int = 1):
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def interval(n: int = 64, a: float = -6.0, b: float = 6.0, **kwargs) -> Geometry:
    """The interval ``[a, b]`` with ``n`` equal cells (the paper's 1D experiments)."""
    _check_resolution("n", n)
    if not b > a:
        raise ValueError(f"interval needs b > a, got [{a}, {b}]")
    mesh = fd.IntervalMesh(n, a, b, **kwargs)
    return Geometry(mesh, name="interval")


def rectangle(nx: int = 32, ny: int | None = None, x0: float = 0.0, x1: float = 1.0,
              y0: float = 0.0, y1: float = 1.0, *, diagonal: str = "crossed",
              quadrilateral: bool = False, **kwargs) -> Geometry:
    """The rectangle ``[x0, x1] x [y0, y1]`` with ``nx x ny`` cells.

    ``diagonal="crossed"`` (the default) splits each square into four triangles, which
    keeps reflection symmetries of the domain exactly.
    """
    ny = nx if ny is None else ny
    _check_resolution("nx", nx)
    _check_resolution("ny", ny)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty rectangle [{x0}, {x1}] x [{y0}, {y1}]")
    extra = {} if quadrilateral else {"diagonal": diagonal}
    mesh = fd.RectangleMesh(nx, ny, x1, y1, originX=x0, originY=y0,
                            quadrilateral=quadrilateral, **extra, **kwargs)
    return Geometry(mesh, name="rectangle")


def unit_square(n: int = 32, **kwargs) -> Geometry:
    """The unit square with ``n x n`` cells."""
    geom = rectangle(n, n, **kwargs)
    geom.name = "unit_square"
    return geom


def disk(refinement: int = 3, radius: float = 1.0, **kwargs) -> Geometry:
    """A polygonal disk of the given radius (Firedrake's ``UnitDiskMesh``, scaled)."""
    _check_resolution("refinement", refinement, 0)
    mesh = fd.UnitDiskMesh(refinement, **kwargs)
    if radius != 1.0:
        mesh.coordinates.dat.data[:] *= radius
    return Geometry(mesh, name="disk")


def periodic_square(n: int = 32, length: float = 1.0, **kwargs) -> Geometry:
    """The flat torus: a periodic square of side ``length``."""
    _check_resolution("n", n, 3)
    mesh = fd.PeriodicSquareMesh(n, n, length, **kwargs)
    return Geometry(mesh, name="flat_torus")


def sphere(refinement: int = 3, radius: float = 1.0, *, kind: str = "icosahedral",
           degree: int = 2, **kwargs) -> Geometry:
    """A sphere surface in R^3.

    Parameters
    ----------
    refinement
        Refinement level of the base icosahedron or cube.
    kind
        ``"icosahedral"`` (triangles) or ``"cubed"`` (quadrilaterals).
    degree
        Polynomial degree of the coordinate field (2 = curved cells, better volume).
    """
    _check_resolution("refinement", refinement, 0)
    if kind == "icosahedral":
        mesh = fd.IcosahedralSphereMesh(radius, refinement_level=refinement, degree=degree,
                                        **kwargs)
    elif kind == "cubed":
        mesh = fd.CubedSphereMesh(radius, refinement_level=refinement, degree=degree, **kwargs)
    else:
        raise ValueError(f"unknown sphere kind {kind!r}; valid: 'icosahedral', 'cubed'")
    return Geometry(mesh, name=f"{kind}_sphere")


def torus(n_major: int = 32, n_minor: int = 16, major_radius: float = 1.0,
          minor_radius: float = 0.4, **kwargs) -> Geometry:
    """The torus of revolution in R^3 with radii ``R > r`` (area :math:`4\\pi^2 R r`)."""
    _check_resolution("n_major", n_major, 3)
    _check_resolution("n_minor", n_minor, 3)
    if not 0 < minor_radius < major_radius:
        raise ValueError(f"torus needs 0 < minor_radius < major_radius, got "
                         f"{minor_radius}, {major_radius}")
    mesh = fd.TorusMesh(n_major, n_minor, major_radius, minor_radius, **kwargs)
    return Geometry(mesh, name="torus")


def data_file(name: str) -> str:
    """Path of a mesh file shipped in ``jkoflow/meshes/data`` (e.g. ``"ellipsoid.msh"``)."""
    return os.path.join(DATA_DIR, name)


def from_gmsh(path: str, metric=None, *, name: str | None = None, **kwargs) -> Geometry:
    """A planar or surface mesh read from a gmsh ``.msh`` file.

    ``path`` may also be the name of a file shipped with jkoflow (see
    :func:`data_file`).  Surfaces in R^3 get their induced metric; planar meshes may
    be given a ``metric`` as for :func:`metric_chart`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    GeometryError
        If the file cannot be read as a mesh.
    """
    if not os.path.exists(path) and os.path.exists(data_file(path)):
        path = data_file(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mesh file {path!r} does not exist")
    try:
        mesh = fd.Mesh(path, **kwargs)
    except Exception as e:  # PETSc raises generic errors for unreadable files
        raise GeometryError(f"could not read mesh file {path!r}: {e}") from e
    name = name or os.path.splitext(os.path.basename(path))[0]
    return Geometry(mesh, metric, name=name)


def metric_chart(mesh_or_geometry, metric: Callable | ufl.core.expr.Expr, *,
                 name: str = "chart", quadrature_degree: int | None = 6) -> Geometry:
    """A planar mesh carrying a user metric ``g(x)``.

    Parameters
    ----------
    mesh_or_geometry
        A planar Firedrake mesh or :class:`Geometry`.
    metric
        ``g(x)``: a callable of ``SpatialCoordinate(mesh)`` returning a 2x2 UFL
        expression, or such an expression.  Checked symmetric positive definite.
    quadrature_degree
        Metric factors are not polynomials; integrals use this degree by default.
    """
    mesh = getattr(mesh_or_geometry, "mesh", mesh_or_geometry)
    return Geometry(mesh, metric, name=name, quadrature_degree=quadrature_degree)


def _conformal(factor: Callable) -> Callable:
    return lambda x: factor(x) * ufl.Identity(2)


def poincare_disk(refinement: int = 3, r0: float = 0.8, **kwargs) -> Geometry:
    r"""The Poincaré disk model of the hyperbolic plane on :math:`|x| < r_0`.

    Metric :math:`4/(1-|x|^2)^2\,I`; the hyperbolic area is
    :math:`4\pi r_0^2/(1-r_0^2)`.
    """
    if not 0 < r0 < 1:
        raise ValueError(f"Poincaré chart needs 0 < r0 < 1, got {r0}")
    base = disk(refinement, radius=r0)
    return metric_chart(base, _conformal(lambda x: 4.0 / (1.0 - ufl.inner(x, x)) ** 2),
                        name="poincare_disk", **kwargs)


def upper_half_plane(n: int = 16, x0: float = -0.5, x1: float = 0.5, y0: float = 1.0,
                     y1: float = 2.0, **kwargs) -> Geometry:
    r"""A patch of the hyperbolic upper half-plane, metric :math:`|dx|^2/y^2`.

    Area :math:`(x_1-x_0)(1/y_0 - 1/y_1)`.
    """
    if not y0 > 0:
        raise ValueError(f"the upper half-plane patch needs y0 > 0, got {y0}")
    base = rectangle(n, n, x0, x1, y0, y1)
    return metric_chart(base, _conformal(lambda x: 1.0 / x[1] ** 2),
                        name="upper_half_plane", **kwargs)


def stereographic_hemisphere(refinement: int = 3, **kwargs) -> Geometry:
    r"""The upper unit hemisphere in stereographic coordinates :math:`u` on the unit disk.

    Metric :math:`4/(1+|u|^2)^2\,I`, area :math:`2\pi`; :math:`u \mapsto
    (2u, 1-|u|^2)/(1+|u|^2)` maps the chart onto the hemisphere.
    """
    base = disk(refinement, radius=1.0)
    return metric_chart(base, _conformal(lambda u: 4.0 / (1.0 + ufl.inner(u, u)) ** 2),
                        name="stereographic_hemisphere", **kwargs)


def hierarchy(constructor: Callable[..., Geometry], resolutions, **kwargs) -> list[Geometry]:
    """The same geometry at several resolutions, for convergence studies.

    ``hierarchy(sphere, [1, 2, 3])`` calls ``sphere(1)``, ``sphere(2)``, ... Each
    constructor interprets its first argument as its resolution parameter.
    """
    return [constructor(r, **kwargs) for r in resolutions]
