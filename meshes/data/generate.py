"""Regenerate the small gmsh surface meshes shipped with jkoflow.

Run ``python meshes/data/generate.py``: it is deterministic (pure NumPy, no gmsh
needed) and rewrites ``ellipsoid.msh`` and ``bumpy_sphere.msh`` (MSH 2.2 ASCII):
icosahedral subdivisions of the unit sphere mapped to

* an ellipsoid with semi-axes (1.5, 1.0, 0.75);
* a "bumpy sphere" r(x) = 1 + 0.15 * 3 sqrt(3) x1 x2 x3 (a smooth bump with
  tetrahedral symmetry; the radius stays between 0.85 and 1.15);

and the planar ``annulus.msh`` (z = 0): the annulus 0.5 < |x| < 1 as a polar grid of
64 x 8 quadrilaterals, each cut into two triangles (area 3 pi / 4 in the limit).
"""
import os

import numpy as np


def icosphere(levels: int):
    t = (1.0 + 5 ** 0.5) / 2.0
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
         (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
         (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
         (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(p, float) / np.linalg.norm(p) for p in v]
    faces = list(f)
    for _ in range(levels):
        cache = {}

        def mid(i, j):
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = verts[i] + verts[j]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]
        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(verts), np.array(faces)


def annulus(n_theta: int, n_r: int, r_in: float = 0.5, r_out: float = 1.0):
    theta = 2 * np.pi * np.arange(n_theta) / n_theta
    radii = np.linspace(r_in, r_out, n_r + 1)
    pts = np.array([(r * np.cos(t), r * np.sin(t), 0.0) for r in radii for t in theta])
    tri = []
    for j in range(n_r):
        for i in range(n_theta):
            a, b = j * n_theta + i, j * n_theta + (i + 1) % n_theta
            c, d = a + n_theta, b + n_theta
            tri += [(a, b, d), (a, d, c)]
    return pts, np.array(tri)


def write_msh(path, points, triangles):
    with open(path, "w") as fh:
        fh.write("$MeshFormat\n2.2 0 8\n$EndMeshFormat\n$Nodes\n%d\n" % len(points))
        for i, p in enumerate(points, 1):
            fh.write("%d %.16g %.16g %.16g\n" % (i, *p))
        fh.write("$EndNodes\n$Elements\n%d\n" % len(triangles))
        for i, t in enumerate(triangles, 1):
            fh.write("%d 2 2 1 1 %d %d %d\n" % (i, *(t + 1)))
        fh.write("$EndElements\n")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    x, tri = icosphere(3)
    write_msh(os.path.join(here, "ellipsoid.msh"), x * np.array([1.5, 1.0, 0.75]), tri)
    r = 1.0 + 0.15 * 3 * np.sqrt(3) * x[:, 0] * x[:, 1] * x[:, 2]
    write_msh(os.path.join(here, "bumpy_sphere.msh"), x * r[:, None], tri)
    write_msh(os.path.join(here, "annulus.msh"), *annulus(64, 8))
