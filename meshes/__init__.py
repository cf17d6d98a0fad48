"""Geometries for jkoflow: flat 1D/2D domains, embedded surfaces and metric charts.

Every solver takes a :class:`Geometry`; build one with a constructor::

    from jkoflow.meshes import sphere, torus, poincare_disk
    geom = sphere(refinement=3)
"""
from .geometry import Geometry, GeometryError, VolumeMeasure  # noqa: F401
from .constructors import *  # noqa: F401,F403
from .constructors import __all__ as _constructors_all

__all__ = ["Geometry", "GeometryError", "VolumeMeasure", *_constructors_all]
