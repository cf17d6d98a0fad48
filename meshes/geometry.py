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
"""
from __future__ import annotations

import numpy as np
import ufl
from firedrake import (Constant, Function, FunctionSpace, SpatialCoordinate,
                       TensorFunctionSpace, assemble, dx, interpolate)
from firedrake.petsc import PETSc
from mpi4py import MPI

__all__ = ["Geometry", "VolumeMeasure", "GeometryError"]


class GeometryError(ValueError):
    """Raised for an invalid mesh or metric (bad shape, not SPD, degenerate cells)."""


class VolumeMeasure:
    r"""The Riemannian volume measure :math:`\sqrt{\det g}\,dx`.

    Behaves like a UFL measure: ``expr * geometry.dx`` is a form, and
    ``geometry.dx(degree=4)`` passes quadrature metadata on.

    Parameters
    ----------
    measure
        The underlying UFL cell measure.
    density
        :math:`\sqrt{\det g}`, or ``None`` for the identity.
    """

    def __init__(self, measure: ufl.Measure, density: ufl.core.expr.Expr | None):
        self._measure = measure
        self._density = density

    def __call__(self, *args, **kwargs) -> "VolumeMeasure":
        return VolumeMeasure(self._measure(*args, **kwargs), self._density)

    def __rmul__(self, integrand) -> ufl.Form:
        if self._density is not None:
            integrand = integrand * self._density
        return integrand * self._measure

    @property
    def measure(self) -> ufl.Measure:
        """The underlying Lebesgue measure (no metric factor)."""
        return self._measure


class Geometry:
    r"""A mesh and a metric: the object every jkoflow solver takes.

    Parameters
    ----------
    mesh
        A Firedrake mesh: an interval, a planar 2D mesh, or a surface immersed in
        :math:`\mathbb{R}^3` (cell orientations are initialised here).
    metric
        Optional metric tensor :math:`g(x)`: a UFL expression (or a callable taking
        ``SpatialCoordinate(mesh)``) of shape ``(gdim, gdim)``, symmetric positive
        definite on the mesh.  Only for charts (``gdim == tdim``).
    name
        A short label used by :meth:`describe` and output files.
    quadrature_degree
        Default quadrature degree for :attr:`dx`; ``None`` lets UFL estimate it.

    Raises
    ------
    GeometryError
        If the metric has the wrong shape, is not symmetric positive definite, is
        given on an immersed surface, or if the mesh has degenerate cells.
    """

    def __init__(self, mesh, metric=None, *, name: str = "domain",
                 quadrature_degree: int | None = None):
        self.mesh = mesh
        self.name = name
        self.comm = mesh.comm
        self.tdim = mesh.topological_dimension
        self.gdim = mesh.geometric_dimension
        self.quadrature_degree = quadrature_degree
        if callable(self.tdim):  # older Firedrake: methods rather than properties
            self.tdim, self.gdim = mesh.topological_dimension(), mesh.geometric_dimension()
        self.x = SpatialCoordinate(mesh)
        if self.gdim > self.tdim:
            mesh.init_cell_orientations(self.x)
        if metric is not None and callable(metric) and not isinstance(metric, ufl.core.expr.Expr):
            metric = metric(self.x)
        if metric is not None:
            metric = ufl.as_ufl(metric)
            self._check_metric(metric)
        self.metric = metric
        if metric is None:
            self.metric_inverse = None
            self.sqrt_det = None
        else:
            self.metric_inverse = ufl.inv(metric)
            self.sqrt_det = ufl.sqrt(ufl.det(metric))
        md = {} if quadrature_degree is None else {"quadrature_degree": quadrature_degree}
        self.dx = VolumeMeasure(dx(domain=mesh, metadata=md), self.sqrt_det)
        self._check_cells()

    # ------------------------------------------------------------------ checks
    def _check_metric(self, g):
        if self.gdim != self.tdim:
            raise GeometryError(
                f"a metric tensor can only be given on a chart (gdim == tdim); this mesh is "
                f"{self.tdim}D immersed in R^{self.gdim}, whose induced metric is used")
        if g.ufl_shape != (self.gdim, self.gdim):
            raise GeometryError(f"metric must have shape ({self.gdim}, {self.gdim}), "
                                f"got {g.ufl_shape}")
        # Sample at the vertices of every cell (DG1 nodes) and at cell midpoints (DG0).
        for degree in (0, 1):
            V = TensorFunctionSpace(self.mesh, "DG", degree)
            vals = assemble(interpolate(g, V)).dat.data_ro.reshape(-1, self.gdim, self.gdim)
            if not np.all(np.isfinite(vals)):
                raise GeometryError("metric is not finite somewhere on the mesh")
            scale = self.comm.allreduce(float(np.abs(vals).max(initial=0.0)), MPI.MAX)
            asym = self.comm.allreduce(
                float(np.abs(vals - vals.transpose(0, 2, 1)).max(initial=0.0)), MPI.MAX)
            if asym > 1e-12 * max(scale, 1.0):
                raise GeometryError(f"metric is not symmetric (max |g - g^T| = {asym:.3g})")
            lam = np.linalg.eigvalsh(0.5 * (vals + vals.transpose(0, 2, 1))) if len(vals) else \
                np.ones((1, self.gdim))
            lmin = self.comm.allreduce(float(lam.min()), MPI.MIN)
            if not lmin > 0.0:
                raise GeometryError(
                    f"metric is not positive definite: smallest eigenvalue {lmin:.3g}")

    def _check_cells(self):
        vol = self.cell_sizes(kind="volume")
        vmin = self.comm.allreduce(float(vol.min(initial=np.inf)), MPI.MIN)
        vmax = self.comm.allreduce(float(vol.max(initial=0.0)), MPI.MAX)
        if not (np.isfinite(vmin) and vmin > 1e-10 * vmax):
            raise GeometryError(
                f"mesh '{self.name}' has degenerate cells (cell volume ratio min/max = "
                f"{vmin / vmax if vmax > 0 else 0.0:.3g})")

    # --------------------------------------------------------------- calculus
    def grad(self, f):
        r"""Metric gradient :math:`\nabla_g f = g^{-1}\nabla f` (tangential on surfaces)."""
        df = ufl.grad(f)
        return df if self.metric is None else ufl.dot(self.metric_inverse, df)

    def inner(self, u, v):
        r"""Metric inner product of vectors :math:`\langle u, v\rangle_g = u^T g v`."""
        return ufl.inner(u, v) if self.metric is None else ufl.inner(u, ufl.dot(self.metric, v))

    def norm2(self, u):
        r""":math:`|u|_g^2` for a vector field :math:`u`."""
        return self.inner(u, u)

    def dot_grad(self, f, h):
        r""":math:`\langle\nabla_g f, \nabla_g h\rangle_g = \nabla f^T g^{-1}\nabla h`."""
        df, dh = ufl.grad(f), ufl.grad(h)
        return ufl.inner(df, dh) if self.metric is None else \
            ufl.inner(df, ufl.dot(self.metric_inverse, dh))

    def grad_norm2(self, f):
        r""":math:`|\nabla_g f|_g^2`."""
        return self.dot_grad(f, f)

    def div(self, v):
        r"""Metric divergence :math:`\frac{1}{\sqrt{\det g}}\partial_i(\sqrt{\det g} v^i)`."""
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
        """Total Riemannian volume (area) of the domain."""
        return self.integrate(Constant(1.0))

    def mass(self, rho) -> float:
        r"""Mass :math:`\int_M\rho\,\mathrm{dvol}` of a density."""
        return self.integrate(rho)

    def normalise(self, rho: Function, mass: float = 1.0) -> Function:
        """Scale the density ``rho`` in place to the given mass; returns it."""
        m = self.mass(rho)
        if not (np.isfinite(m) and m > 0):
            raise ValueError(f"cannot normalise a density of mass {m:.3g} (must be positive)")
        rho.assign(rho * (mass / m))
        return rho

    def cell_sizes(self, kind: str = "diameter") -> np.ndarray:
        """Local (this rank's) cell diameters or volumes as an array."""
        q = ufl.CellDiameter(self.mesh) if kind == "diameter" else ufl.CellVolume(self.mesh)
        return assemble(interpolate(q, FunctionSpace(self.mesh, "DG", 0))).dat.data_ro.copy()

    def h_range(self) -> tuple[float, float]:
        """(h_min, h_max) over the whole mesh, in the coordinate metric."""
        h = self.cell_sizes()
        return (self.comm.allreduce(float(h.min(initial=np.inf)), MPI.MIN),
                self.comm.allreduce(float(h.max(initial=0.0)), MPI.MAX))

    def describe(self) -> str:
        """One line for logs: cells, vertices, h range, volume."""
        ncells = self.mesh.cell_set.size
        ncells = self.comm.allreduce(ncells, MPI.SUM)
        nvert = FunctionSpace(self.mesh, "CG", 1).dim()
        hmin, hmax = self.h_range()
        kind = ("chart with metric" if self.metric is not None else
                f"surface in R^{self.gdim}" if self.gdim > self.tdim else f"flat {self.tdim}D")
        return (f"{self.name}: {kind}, {ncells} cells, {nvert} vertices, "
                f"h in [{hmin:.3g}, {hmax:.3g}], volume {self.volume():.6g}")

    def log(self):
        """Print :meth:`describe` once (rank 0)."""
        PETSc.Sys.Print(self.describe(), comm=self.comm)

    def check_function(self, f, what: str = "density"):
        """Raise ``ValueError`` if ``f`` does not live on this geometry's mesh."""
        if f.function_space().mesh() is not self.mesh:
            raise ValueError(f"the {what} lives on a different mesh than the geometry "
                             f"'{self.name}'")

    def __repr__(self) -> str:
        return f"Geometry(name={self.name!r}, tdim={self.tdim}, gdim={self.gdim}, " \
               f"metric={'yes' if self.metric is not None else 'no'})"
