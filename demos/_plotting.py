"""Small plotting helpers shared by the demos (not a demo itself).

Spatial plots need the whole mesh on one process.  :func:`vertex_data` is
collective: every rank interpolates the field to P1, numbers its owned vertices
and cells globally (PETSc's local-to-global map of the P1 space) and rank 0
assembles the whole triangulation, so figures drawn under ``mpiexec -n 2`` show
the same panels as serial ones.  The plotting functions take either a
:class:`VertexData` (gathered beforehand by every rank) or, in serial, a field.
Figures are drawn and saved by rank 0 only (:func:`save`).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
from firedrake import (COMM_WORLD, Function, FunctionSpace, SpatialCoordinate,
                       VectorFunctionSpace)

__all__ = ["VertexData", "vertex_data", "plot_surface", "plot_chart", "colorbar", "save",
           "on_root", "nodal_profile"]


class VertexData(NamedTuple):
    """A P1 field on the whole mesh: vertex coordinates ``X`` (n x gdim), triangles
    (or intervals) ``cells`` as vertex indices, and vertex ``values``."""
    X: np.ndarray
    cells: np.ndarray
    values: np.ndarray


def on_root() -> bool:
    """True on the rank that draws and saves figures."""
    return COMM_WORLD.rank == 0


def vertex_data(f, comm=COMM_WORLD) -> VertexData | None:
    """Gather a scalar field (or UFL expression on a mesh) as P1 vertex data on rank 0.

    Collective: call it on every rank.  Returns the :class:`VertexData` of the whole
    mesh on rank 0 and ``None`` on the other ranks.
    """
    mesh = f.function_space().mesh() if hasattr(f, "function_space") else f.ufl_domain()
    V1 = FunctionSpace(mesh, "CG", 1)
    X = Function(VectorFunctionSpace(mesh, "CG", 1)).interpolate(SpatialCoordinate(mesh))
    v = Function(V1).interpolate(f)
    # Owned vertices and owned cells, in the global vertex numbering.
    lgmap = V1.dof_dset.lgmap.indices
    owned = V1.dof_dset.size
    local = (lgmap[:owned], X.dat.data_ro[:owned], v.dat.data_ro[:owned],
             lgmap[V1.cell_node_map().values])
    parts = mesh.comm.gather(local, root=0)
    if mesh.comm.rank != 0:
        return None
    n = sum(len(p[0]) for p in parts)
    gdim = X.dat.data_ro.reshape(owned, -1).shape[1]
    Xg, vg = np.empty((n, gdim)), np.empty(n)
    for gid, x, val, _ in parts:
        Xg[gid] = np.asarray(x).reshape(len(gid), gdim)
        vg[gid] = val
    cells = np.concatenate([p[3] for p in parts])
    return VertexData(Xg, cells, vg)


def nodal_profile(f, comm=COMM_WORLD):
    """Node coordinates and values of a scalar field on an interval mesh, gathered on
    rank 0 and sorted by coordinate (``None`` on the other ranks).  Collective."""
    space = f.function_space()
    x = Function(space).interpolate(SpatialCoordinate(space.mesh())[0])
    owned = space.dof_dset.size
    parts = space.mesh().comm.gather((x.dat.data_ro[:owned], f.dat.data_ro[:owned]), root=0)
    if space.mesh().comm.rank != 0:
        return None
    xs = np.concatenate([p[0] for p in parts])
    vs = np.concatenate([p[1] for p in parts])
    order = np.argsort(xs)
    return xs[order], vs[order]


def _data(f) -> VertexData:
    if isinstance(f, VertexData):
        return f
    if COMM_WORLD.size > 1:
        raise RuntimeError("in parallel, gather the field with vertex_data() on every rank "
                           "first and pass the VertexData to the plotting function")
    return vertex_data(f)


def plot_surface(ax, f, *, cmap="viridis", title=None, vmin=None, vmax=None):
    """Draw a scalar on an immersed surface (3D axes), one colour per triangle.

    Returns a mappable for :func:`colorbar`.
    """
    import matplotlib as mpl
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    X, cells, v = _data(f)
    face = v[cells].mean(axis=1)
    norm = mpl.colors.Normalize(vmin=face.min() if vmin is None else vmin,
                                vmax=face.max() if vmax is None else vmax)
    colormap = mpl.colormaps[cmap]
    ax.add_collection3d(Poly3DCollection(X[cells], facecolors=colormap(norm(face)),
                                         edgecolors="none"))
    lo, hi = X.min(axis=0), X.max(axis=0)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(hi - lo)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return mpl.cm.ScalarMappable(norm=norm, cmap=colormap)


def plot_chart(ax, f, *, cmap="viridis", title=None, symmetric=False, vmin=None, vmax=None):
    """Draw a scalar on a flat 2D mesh (``tripcolor``, Gouraud shading); with
    ``symmetric`` the colour scale is centred at zero (for differences)."""
    X, cells, v = _data(f)
    if symmetric and vmin is None and vmax is None:
        a = float(abs(v).max())
        vmin, vmax = -a, a
    im = ax.tripcolor(X[:, 0], X[:, 1], cells, v, shading="gouraud", cmap=cmap,
                      vmin=vmin, vmax=vmax)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return im


def colorbar(fig, mappable, ax, **kw):
    """A colour bar in its own slot to the right of ``ax`` (a list of axes shares one),
    so that panels with and without colour bars keep equal sizes."""
    from mpl_toolkits.axes_grid1.inset_locator import inset_axes
    axes = ax if isinstance(ax, (list, tuple)) else [ax]
    # room between panels for the bar and its tick labels (subplots without an
    # explicit GridSpec spacing follow the figure's subplot parameters)
    fig.subplots_adjust(wspace=max(fig.subplotpars.wspace, 0.45))
    cax = inset_axes(axes[-1], width="4%", height="80%", loc="center left",
                     bbox_to_anchor=(1.02, 0.0, 1, 1), bbox_transform=axes[-1].transAxes,
                     borderpad=0)
    return fig.colorbar(mappable, cax=cax, **kw)


def save(fig, path: str):
    """Save a figure (call on rank 0 only) and close it."""
    import matplotlib.pyplot as plt
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
