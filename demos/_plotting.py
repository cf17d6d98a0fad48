"""Small plotting helpers shared by the demos (not a demo itself).

Spatial plots read the local mesh data, so they are drawn only in serial
(``COMM_WORLD.size == 1``); time series are global numbers (``assemble``) and are
plotted by rank 0 in any run.
"""
from __future__ import annotations

import os

from firedrake import (COMM_WORLD, Function, FunctionSpace, SpatialCoordinate,
                       VectorFunctionSpace)

__all__ = ["serial", "vertex_data", "plot_surface", "plot_chart", "save"]


def serial() -> bool:
    """True when spatial (mesh-data) plots can be drawn: a one-rank run."""
    return COMM_WORLD.size == 1


def vertex_data(f):
    """Vertex coordinates, triangles and vertex values of a scalar (expression on a)
    mesh, for plotting in serial: ``(X, cells, values)``."""
    mesh = f.function_space().mesh() if hasattr(f, "function_space") else f.ufl_domain()
    V1 = FunctionSpace(mesh, "CG", 1)
    X = Function(VectorFunctionSpace(mesh, "CG", 1)).interpolate(SpatialCoordinate(mesh))
    v = Function(V1).interpolate(f)
    return X.dat.data_ro.copy(), V1.cell_node_map().values.copy(), v.dat.data_ro.copy()


def plot_surface(ax, f, *, cmap="viridis", title=None, vmin=None, vmax=None):
    """Draw a scalar on an immersed surface (3D axes), one colour per triangle."""
    import matplotlib as mpl
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    X, cells, v = vertex_data(f)
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


def plot_chart(ax, f, *, cmap="viridis", title=None, symmetric=False):
    """Draw a scalar on a flat 2D mesh (``tripcolor``, Gouraud shading); with
    ``symmetric`` the colour scale is centred at zero (for differences)."""
    X, cells, v = vertex_data(f)
    lim = {}
    if symmetric:
        a = float(abs(v).max())
        lim = {"vmin": -a, "vmax": a}
    im = ax.tripcolor(X[:, 0], X[:, 1], cells, v, shading="gouraud", cmap=cmap, **lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return im


def save(fig, path: str):
    """Save a figure (rank 0 only) and close it."""
    import matplotlib.pyplot as plt
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
