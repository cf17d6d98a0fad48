"""Observers for :class:`~jkoflow.solvers.timestepping.TimeIntegrator`: time series,
VTK output and checkpoints.

An observer is any callable ``obs(solver)``; ``solver.add_observer(obs)`` calls it at
once (the current state) and after every accepted step.  Those here use only the
integrator's public interface: ``t``, ``dt``, ``u``, ``energy_value()``, ``mass()`` and
``output_functions()``.
"""
from __future__ import annotations

import numpy as np
from firedrake import CheckpointFile, VTKFile

from .common import check_int

__all__ = ["TimeSeries", "VTKOutput", "Checkpointer", "load_checkpoint_mesh"]


class TimeSeries:
    """Observer recording ``t`` and named scalar quantities after every step.

    Parameters
    ----------
    quantities
        ``{name: f(solver) -> float}``; default ``energy`` and ``mass`` from the
        solver's :meth:`~jkoflow.solvers.timestepping.TimeIntegrator.energy_value` and :meth:`~jkoflow.solvers.timestepping.TimeIntegrator.mass`.
    every
        Record every ``every``-th call.

    ``series["t"]``, ``series["energy"]`` return numpy arrays.
    """

    def __init__(self, quantities: dict | None = None, every: int = 1):
        if quantities is None:
            quantities = {"energy": lambda s: s.energy_value(), "mass": lambda s: s.mass()}
        self.quantities = dict(quantities)
        self.every = check_int("every", every)
        self.data: dict[str, list] = {"t": [], **{k: [] for k in self.quantities}}
        self._calls = 0

    def __call__(self, solver):
        self._calls += 1
        if (self._calls - 1) % self.every:
            return
        self.data["t"].append(solver.t)
        for k, f in self.quantities.items():
            self.data[k].append(float(f(solver)))

    def __getitem__(self, key: str) -> np.ndarray:
        return np.asarray(self.data[key])

    def __len__(self) -> int:
        return len(self.data["t"])


class VTKOutput:
    """Observer writing :meth:`~jkoflow.solvers.timestepping.TimeIntegrator.output_functions` to a ``.pvd`` series."""

    def __init__(self, path: str, every: int = 1):
        self.path = path
        self.every = check_int("every", every)
        self._file = None
        self._calls = 0

    def __call__(self, solver):
        self._calls += 1
        if (self._calls - 1) % self.every:
            return
        fields = solver.output_functions()
        if self._file is None:
            self._file = VTKFile(self.path, comm=fields[0].function_space().mesh().comm)
        self._file.write(*fields, time=solver.t)


class Checkpointer:
    """Observer saving the state to a ``CheckpointFile`` (mesh once, then snapshots).

    Each snapshot is ``save_function(u, idx=k, timestepping_info={"time": t, "dt": dt})``;
    restart with :func:`load_checkpoint_mesh` and :meth:`~jkoflow.solvers.timestepping.TimeIntegrator.load_checkpoint`.
    """

    def __init__(self, path: str, every: int = 1):
        self.path = path
        self.every = check_int("every", every)
        self._calls = 0
        self.index = 0

    def __call__(self, solver):
        self._calls += 1
        if (self._calls - 1) % self.every:
            return
        u = solver.u
        mesh = u.function_space().mesh()
        mode = "w" if self.index == 0 else "a"
        with CheckpointFile(self.path, mode, comm=mesh.comm) as f:
            if self.index == 0:
                f.save_mesh(mesh)
            f.save_function(u, idx=self.index,
                            timestepping_info={"time": solver.t, "dt": solver.dt})
        self.index += 1


def load_checkpoint_mesh(path: str, name: str | None = None, comm=None):
    """Load the mesh saved by a :class:`Checkpointer` (wrap it in a ``Geometry``)."""
    from firedrake.mesh import DEFAULT_MESH_NAME
    kwargs = {} if comm is None else {"comm": comm}
    with CheckpointFile(path, "r", **kwargs) as f:
        return f.load_mesh(name or DEFAULT_MESH_NAME)
