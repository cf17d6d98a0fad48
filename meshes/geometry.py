r"""The geometry interface: a mesh plus (optionally) a Riemannian metric.

Every weak form in :mod:`jkoflow.solvers` is written against a :class:`Geometry`,
never against a bare mesh, so the same solver code runs on a flat domain, on an
embedded surface and on a 2D chart carrying a metric tensor :math:`g(x)`.

With coordinates :math:`x` and metric :math:`g` (the identity on flat domains and,
on embedded surfaces, the induced metric handled by Firedrake's tangential
calculus), the operators are

.. math::

    \mathrm{dvol} = \sqrt{\det g}\,dx, \qquad
    \nabla_g f = g^{-1}\nabla f, \qquad
    \langle u, v\rangle_g = u^T g\, v, \qquad
    \operatorname{div}_g v = \frac{1}{\sqrt{\det g}}\,\partial_i(\sqrt{\det g}\, v^i),

so that :math:`\langle\nabla_g f,\nabla_g h\rangle_g = \nabla f^T g^{-1}\nabla h`.
On a surface immersed in :math:`\mathbb{R}^3` gradients are tangential,
:math:`\nabla_\Gamma f = P\nabla f` with the tangent projector
:math:`P = J(J^TJ)^{-1}J^T` (:math:`J` the cell Jacobian), so that a potential
given as an ambient expression such as :math:`V = -\kappa\,x\cdot e` has the
right surface gradient :math:`-\kappa P e`.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import ufl
import ufl.algorithms
import ufl.domain
import ufl.geometry
from firedrake import (Constant, Function, FunctionSpace, SpatialCoordinate,
                       TensorFunctionSpace, TestFunction, assemble, dx, ds, interpolate)
from firedrake.petsc import PETSc
from mpi4py import MPI

__all__ = ["Geometry", "VolumeMeasure", "GeometryError"]

#: Cells whose volume is below this multiple of diameter**tdim count as degenerate.
DEGENERATE_SHAPE_TOL = 1e-10


class GeometryError(ValueError):
    """Raised for an invalid mesh or metric (bad shape, not SPD, degenerate cells)."""


class VolumeMeasure:
    r"""The Riemannian volume measure :math:`\sqrt{\det g}\,dx` (or its boundary analogue).

    Behaves like a UFL measure: ``expr * geometry.dx`` is a form, and
    ``geometry.dx(degree=4)``, ``geometry.dx(degree=1, scheme="vertex")`` or
    ``geometry.ds(1)`` pass their arguments on to the underlying UFL measure.

    Parameters
    ----------
    measure
        The underlying UFL measure.
    density
        The metric factor (:math:`\sqrt{\det g}` for cells), or ``None`` for 1.
    """

    def __init__(self, measure: ufl.Measure, density: ufl.core.expr.Expr | None):
        self._measure = measure
        self._density = density

    def __call__(self, *args, **kwargs) -> "VolumeMeasure":
        return VolumeMeasure(self._measure(*args, **kwargs), self._density)

    def __rmul__(self, integrand) -> ufl.Form:
        integrand = ufl.as_ufl(integrand)
        if self._density is not None:
            integrand = integrand * self._density
        return integrand * self._measure

    @property
    def measure(self) -> ufl.Measure:
        """The underlying Lebesgue measure (no metric factor)."""
        return self._measure

    @property
    def density(self) -> ufl.core.expr.Expr | None:
        """The metric factor multiplying the integrand (``None`` on flat domains)."""
        return self._density

    def __repr__(self) -> str:
        return f"VolumeMeasure({self._measure!r}, density={self._density!r})"


def _as_metric(metric, x, gdim: int):
    """Turn a user metric (callable, UFL, array, nested list) into a UFL matrix."""
    if callable(metric) and not isinstance(metric, ufl.core.expr.Expr):
        metric = metric(x)
    if isinstance(metric, (list, tuple, np.ndarray)):
        arr = np.asarray(metric, dtype=object)
        if arr.ndim != 2:
            raise GeometryError(f"metric must have shape ({gdim}, {gdim}), got an array of "
                                f"shape {arr.shape}")
        metric = ufl.as_matrix([[ufl.as_ufl(v) for v in row] for row in arr.tolist()])
    try:
        return ufl.as_ufl(metric)
    except Exception:
        raise GeometryError(f"metric must be a UFL expression, an array or a callable of x; "
                            f"got {type(metric).__name__}") from None


class Geometry:
    r"""A mesh and a metric: the object every jkoflow solver takes.

    Parameters
    ----------
    mesh
        A Firedrake mesh: an interval, a planar 2D mesh, or a surface immersed in
        :math:`\mathbb{R}^3` (its cell orientations are initialised here).
    metric
        Optional metric tensor :math:`g(x)`: a callable taking
        ``SpatialCoordinate(mesh)`` (preferred: it can be re-applied on refined
        meshes), a UFL expression or a constant array, of shape ``(gdim, gdim)``,
        symmetric positive definite on the mesh.  Only for charts (``gdim == tdim``).
    name
        A short label used by :meth:`describe` and output files.
    quadrature_degree
        Default quadrature degree for :attr:`dx` and for every solver on this geometry
        (:meth:`quadrature_degree_for`); ``None``: UFL's estimate for :attr:`dx`,
        :math:`2k+2` in the solvers.
    orientation
        Immersed surfaces only: a vector field :math:`w(x)` (callable of ``x`` or UFL)
        with :math:`w\cdot n > 0` for the chosen normal :math:`n`; defaults to
        :math:`x` (outward on surfaces star-shaped about the origin).

    Raises
    ------
    GeometryError
        If the metric has the wrong shape, is not finite, symmetric and positive
        definite at the sampled points, is given on an immersed surface, or if the
        mesh has degenerate (zero-volume) cells.

    Notes
    -----
    Attributes: ``mesh``, ``x`` (:class:`~ufl.SpatialCoordinate`), ``dx``/``ds``
    (:class:`VolumeMeasure`), ``metric``, ``metric_inverse``, ``sqrt_det`` (``None``
    without a metric), ``tangent_projector`` (``None`` unless immersed), ``tdim``,
    ``gdim``, ``comm``.
    """

    #: ``True`` for a rectangle triangulated with crossed diagonals (set by
    #: :func:`~jkoflow.meshes.rectangle`), which density-unknown JKO steps warn about.
    crossed: bool = False

    def __init__(self, mesh, metric=None, *, name: str = "domain",
                 quadrature_degree: int | None = None, orientation=None):
        self.mesh = mesh
        self.name = name
        self.comm = mesh.comm
        tdim, gdim = mesh.topological_dimension, mesh.geometric_dimension
        if callable(tdim):  # older Firedrake: methods rather than properties
            tdim, gdim = tdim(), gdim()
        self.tdim, self.gdim = tdim, gdim
        if quadrature_degree is not None and (isinstance(quadrature_degree, bool)
                                              or int(quadrature_degree) != quadrature_degree
                                              or quadrature_degree < 1):
            raise GeometryError(f"quadrature_degree must be an integer >= 1, got "
                                f"{quadrature_degree!r}")
        self.quadrature_degree = quadrature_degree
        self.x = SpatialCoordinate(mesh)
        self._metric_spec = metric
        self._orientation_spec = orientation
        self._check_cells()
        if self.immersed:
            self._init_orientation(orientation)
            J = ufl.Jacobian(mesh)
            self.tangent_projector = ufl.dot(J, ufl.JacobianInverse(mesh))
        else:
            if orientation is not None:
                raise GeometryError("an orientation is only meaningful for immersed surfaces")
            self.tangent_projector = None
        if metric is not None:
            if self.immersed:
                raise GeometryError(
                    f"a metric tensor can only be given on a chart (gdim == tdim); this mesh is "
                    f"{tdim}D immersed in R^{gdim}, whose induced metric is used")
            metric = _as_metric(metric, self.x, gdim)
            self._check_metric(metric)
        self.metric = metric
        if metric is None:
            self.metric_inverse = self.sqrt_det = None
            ds_density = None
        else:
            self.metric_inverse = ufl.inv(metric)
            self.sqrt_det = ufl.sqrt(ufl.det(metric))
            ds_density = self._boundary_density(metric)
        md = {} if quadrature_degree is None else {"quadrature_degree": quadrature_degree}
        self.dx = VolumeMeasure(dx(domain=mesh, metadata=md), self.sqrt_det)
        self.ds = VolumeMeasure(ds(domain=mesh, metadata=md), ds_density)

    def quadrature_degree_for(self, degree: int, quadrature_degree: int | None = None) -> int:
        r"""The quadrature degree of every integral of a jkoflow solver with :math:`P_k`
        unknowns, ``degree`` = :math:`k`: the one policy shared by all solvers.

        The solver's own ``quadrature_degree`` if given, else this geometry's
        :attr:`quadrature_degree`, else :math:`2k+2` (exact for the :math:`P_k` mass
        matrix on affine cells with two orders to spare for smooth weights).  UFL's
        estimate is never used: for non-polynomial potentials or curved cells it can
        be huge (degree 88 for a potential on a degree-2 torus) and it differs between
        terms, so two solvers would discretise the same energy differently.

        Raises
        ------
        ValueError
            If ``degree`` or the resulting quadrature degree is not a positive integer.
        """
        if isinstance(degree, bool) or int(degree) != degree or degree < 0:
            raise ValueError(f"the polynomial degree must be an integer >= 0, got {degree!r}")
        qd = quadrature_degree if quadrature_degree is not None else self.quadrature_degree
        if qd is None:
            return 2 * int(degree) + 2
        if isinstance(qd, bool) or int(qd) != qd or qd < 1:
            raise ValueError(f"quadrature_degree must be an integer >= 1, got {qd!r}")
        return int(qd)

    @property
    def immersed(self) -> bool:
        """True for a manifold immersed in a higher-dimensional space (gdim > tdim)."""
        return self.gdim > self.tdim

    # ------------------------------------------------------------------ checks
    def _init_orientation(self, orientation):
        if hasattr(self.mesh, "_cell_orientations"):
            return  # already initialised (e.g. a second Geometry on the same mesh)
        w = self.x if orientation is None else orientation
        if callable(w) and not isinstance(w, ufl.core.expr.Expr):
            w = w(self.x)
        w = ufl.as_ufl(w)
        if w.ufl_shape != (self.gdim,):
            raise GeometryError(f"orientation must be a vector field of shape ({self.gdim},), "
                                f"got {w.ufl_shape}")
        self.mesh.init_cell_orientations(w)

    def _check_metric(self, g):
        gdim = self.gdim
        if g.ufl_shape != (gdim, gdim):
            raise GeometryError(f"metric must have shape ({gdim}, {gdim}), got {g.ufl_shape}")
        if any(d is not self.mesh for d in ufl.domain.extract_domains(g)):
            raise GeometryError("the metric is an expression on a different mesh; pass a "
                                "callable of x (or build it from this mesh's coordinates)")
        # Sample at the vertices of every cell (DG1 nodes) and at cell midpoints (DG0).
        for degree in (0, 1):
            V = TensorFunctionSpace(self.mesh, "DG", degree, shape=(gdim, gdim))
            vals = assemble(interpolate(g, V)).dat.data_ro.reshape(-1, gdim, gdim)
            bad = self.comm.allreduce(int(np.count_nonzero(~np.isfinite(vals))), MPI.SUM)
            if bad:
                raise GeometryError(f"metric is not finite at {bad} sampled entries on the mesh")
            scale = self.comm.allreduce(float(np.abs(vals).max(initial=0.0)), MPI.MAX)
            asym = self.comm.allreduce(
                float(np.abs(vals - vals.transpose(0, 2, 1)).max(initial=0.0)), MPI.MAX)
            if asym > 1e-12 * max(scale, 1.0):
                raise GeometryError(f"metric is not symmetric (max |g - g^T| = {asym:.3g})")
            lam = np.linalg.eigvalsh(vals) if len(vals) else np.full((1, gdim), np.inf)
            lmin = self.comm.allreduce(float(lam.min()), MPI.MIN)
            if not lmin > 0.0:
                raise GeometryError(
                    f"metric is not positive definite: smallest eigenvalue {lmin:.3g} "
                    f"at a sampled point")

    def _check_cells(self):
        vol = self.cell_sizes(kind="volume")
        h = self.cell_sizes(kind="diameter")
        with np.errstate(divide="ignore", invalid="ignore"):
            shape = np.where(h > 0, vol / h ** self.tdim, 0.0)
        shape[~np.isfinite(shape)] = 0.0
        qmin = self.comm.allreduce(float(shape.min(initial=np.inf)), MPI.MIN)
        nbad = self.comm.allreduce(int(np.count_nonzero(shape <= DEGENERATE_SHAPE_TOL)), MPI.SUM)
        if nbad:
            raise GeometryError(
                f"mesh '{self.name}' has {nbad} degenerate cell(s) (zero or near-zero volume: "
                f"min volume/diameter^{self.tdim} = {qmin:.3g})")

    def _boundary_density(self, g):
        r"""Facet area element :math:`\sqrt{\det g\; n^T g^{-1} n}` (n the Euclidean unit
        normal); in 2D this is the length element :math:`\sqrt{t^T g\,t}`."""
        if self.tdim == 1:
            return None  # boundary points are counted
        n = ufl.FacetNormal(self.mesh)
        return ufl.sqrt(ufl.det(g) * ufl.inner(n, ufl.dot(ufl.inv(g), n)))

    # --------------------------------------------------------------- calculus
    def _tangential(self, df):
        P = self.tangent_projector
        if P is None:
            return df
        return ufl.dot(P, df) if len(df.ufl_shape) == 1 else ufl.dot(df, P)

    def grad(self, f):
        r"""Metric gradient :math:`\nabla_g f = g^{-1}\nabla f` (tangential on surfaces)."""
        df = self._tangential(ufl.grad(f))
        return df if self.metric is None else ufl.dot(self.metric_inverse, df)

    def inner(self, u, v):
        r"""Metric inner product of vectors :math:`\langle u, v\rangle_g = u^T g v`."""
        return ufl.inner(u, v) if self.metric is None else ufl.inner(u, ufl.dot(self.metric, v))

    def norm2(self, u):
        r""":math:`|u|_g^2` for a vector field :math:`u`."""
        return self.inner(u, u)

    def dot_grad(self, f, h):
        r""":math:`\langle\nabla_g f, \nabla_g h\rangle_g = \nabla f^T g^{-1}\nabla h`."""
        df, dh = self._tangential(ufl.grad(f)), self._tangential(ufl.grad(h))
        return ufl.inner(df, dh) if self.metric is None else \
            ufl.inner(df, ufl.dot(self.metric_inverse, dh))

    def grad_norm2(self, f):
        r""":math:`|\nabla_g f|_g^2`."""
        return self.dot_grad(f, f)

    def div(self, v):
        r"""Metric divergence :math:`\frac{1}{\sqrt{\det g}}\partial_i(\sqrt{\det g} v^i)`.

        On immersed surfaces the surface divergence :math:`\operatorname{tr}(P\nabla v)`.
        """
        if self.tangent_projector is not None:
            return ufl.inner(ufl.grad(v), self.tangent_projector)
        return ufl.div(v) if self.metric is None else ufl.div(self.sqrt_det * v) / self.sqrt_det

    def weighted_stiffness(self, rho, phi, psi, measure: VolumeMeasure | None = None):
        r"""The form :math:`\int \rho\,\langle\nabla_g\phi, \nabla_g\psi\rangle_g\,\mathrm{dvol}`."""
        return rho * self.dot_grad(phi, psi) * (measure or self.dx)

    # ------------------------------------------------------------ quantities
    def integrate(self, expr, degree: int | None = None) -> float:
        r""":math:`\int_M \mathrm{expr}\,\mathrm{dvol}` (collective)."""
        meas = self.dx if degree is None else self.dx(degree=degree)
        return float(assemble(expr * meas))

    def volume(self) -> float:
        """Total Riemannian volume (length, area) of the domain (collective)."""
        return self.integrate(Constant(1.0))

    def mass(self, rho) -> float:
        r"""Mass :math:`\int_M\rho\,\mathrm{dvol}` of a density (collective)."""
        return self.integrate(rho)

    def normalise(self, rho: Function, mass: float = 1.0) -> Function:
        r"""Scale the density ``rho`` in place to :math:`\int\rho\,\mathrm{dvol} = ` ``mass``.

        Raises
        ------
        ValueError
            If the current mass is not a positive finite number.
        """
        m = self.mass(rho)
        if not (np.isfinite(m) and m > 0):
            raise ValueError(f"cannot normalise a density of mass {m:.3g} (must be positive)")
        rho.assign(rho * (mass / m))
        return rho

    def cell_sizes(self, kind: str = "diameter") -> np.ndarray:
        """This rank's cell diameters (largest vertex distance) or (Lebesgue) cell volumes,
        in coordinate units."""
        V = FunctionSpace(self.mesh, "DG", 0)
        if kind == "volume":
            out = assemble(TestFunction(V) * dx(domain=self.mesh))
        elif kind == "diameter":
            # max vertex distance (ufl.CellDiameter is not lowered for curved cells)
            verts = ufl.geometry.CellVertices(self.mesh)
            nv = verts.ufl_shape[0]
            d2 = [ufl.inner(verts[i, :] - verts[j, :], verts[i, :] - verts[j, :])
                  for i in range(nv) for j in range(i + 1, nv)]
            out = assemble(interpolate(ufl.sqrt(functools.reduce(ufl.max_value, d2)), V))
        else:
            raise ValueError(f"unknown kind {kind!r}; valid: 'diameter', 'volume'")
        return out.dat.data_ro.copy()

    def h_range(self) -> tuple[float, float]:
        """(h_min, h_max): smallest and largest cell diameter, in coordinate units."""
        h = self.cell_sizes()
        return (self.comm.allreduce(float(h.min(initial=np.inf)), MPI.MIN),
                self.comm.allreduce(float(h.max(initial=0.0)), MPI.MAX))

    def num_cells(self) -> int:
        """Global number of cells (collective)."""
        return self.comm.allreduce(int(self.mesh.cell_set.size), MPI.SUM)

    def describe(self, V=None) -> str:
        """One line for logs: kind, cells, dofs (of ``V``, default P1), h range, volume."""
        if V is None:
            V = FunctionSpace(self.mesh, "CG", 1)
        elem = V.ufl_element()
        family = {"Lagrange": "P", "Discontinuous Lagrange": "DP"}.get(elem.family(),
                                                                       elem.family())
        space = f"{family}{elem.embedded_superdegree}"
        hmin, hmax = self.h_range()
        kind = ("chart with metric" if self.metric is not None else
                f"{self.tdim}D surface in R^{self.gdim}" if self.immersed else f"flat {self.tdim}D")
        return (f"{self.name}: {kind}, {self.num_cells()} cells, {V.dim()} dofs ({space}), "
                f"h in [{hmin:.3g}, {hmax:.3g}], volume {self.volume():.8g}")

    def log(self, V=None):
        """Print :meth:`describe` once (rank 0)."""
        PETSc.Sys.Print(self.describe(V), comm=self.comm)

    def check_function(self, f, what: str = "density"):
        """Raise ``ValueError`` if ``f`` does not live on this geometry's mesh."""
        if f.function_space().mesh() is not self.mesh:
            raise ValueError(f"the {what} lives on a different mesh than the geometry "
                             f"'{self.name}'")

    # ------------------------------------------------------------- transfer
    def on_mesh(self, mesh, name: str | None = None) -> "Geometry":
        """The same geometry (metric, orientation, options) on another mesh of the domain.

        Used for refinement hierarchies.  A metric or orientation given as a callable of
        ``x`` is re-applied; one given as a UFL expression is transferred by substituting
        the new spatial coordinate, which fails if it involves mesh-bound functions.
        """
        return Geometry(mesh, self._transfer(self._metric_spec, mesh, "metric"),
                        name=name or self.name, quadrature_degree=self.quadrature_degree,
                        orientation=self._transfer(self._orientation_spec, mesh, "orientation"))

    def _transfer(self, spec, mesh, what: str) -> Callable | None:
        if spec is None or callable(spec) and not isinstance(spec, ufl.core.expr.Expr):
            return spec
        expr = ufl.as_ufl(spec) if not isinstance(spec, (list, tuple, np.ndarray)) else \
            _as_metric(spec, self.x, self.gdim)
        if ufl.algorithms.extract_coefficients(expr):
            raise GeometryError(f"cannot transfer a {what} that depends on Functions of the "
                                f"old mesh; pass it as a callable of x instead")
        return lambda x: ufl.replace(expr, {self.x: x})

    def __repr__(self) -> str:
        return f"Geometry(name={self.name!r}, tdim={self.tdim}, gdim={self.gdim}, " \
               f"metric={'yes' if self.metric is not None else 'no'})"
