"""Observers of the time-stepping protocol (:class:`~jkoflow.solvers.protocol.Stepper`):
time series and VTK output (checkpoints: :mod:`jkoflow.solvers.checkpointing`).

An observer is any callable ``obs(solver)``, for every solver alike (JKO scheme,
WGF, JKO-Flow); ``solver.add_observer(obs)`` calls it at once (the current state) and
after every accepted step.  Those here use only the protocol's public interface:
``t``, ``dt``, ``step_number``, ``energy_value()``, ``mass()`` and
``output_functions()``.
"""
from __future__ import annotations

import numpy as np
from firedrake import VTKFile

from .common import check_int

__all__ = ["TimeSeries", "VTKOutput", "load_checkpoint_mesh"]


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
    """Observer writing the solver's ``output_functions()`` to a ``.pvd`` series (the
    same field names for every solver: ``density``, ``log_density``, ...)."""

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


def load_checkpoint_mesh(path: str, name: str | None = None, comm=None):
    """Deprecated: use :func:`jkoflow.solvers.restart` (or
    :func:`~jkoflow.solvers.read_checkpoint` ``(path).mesh``).  Returns the mesh of a
    :class:`~jkoflow.solvers.Checkpointer` file."""
    import warnings
    from .checkpointing import read_checkpoint
    warnings.warn("load_checkpoint_mesh is deprecated; use jkoflow.solvers.restart(path, build)",
                  DeprecationWarning, stacklevel=2)
    return read_checkpoint(path, comm=comm).mesh
