r"""The JKO scheme: iterated JKO steps with observers, VTK output and restart.

.. math::

    \rho_{k+1} = \operatorname*{argmin}_\rho\ \frac{W_2^2(\rho_k,\rho)}{2\eta_k} + J(\rho),
    \qquad t_{k+1} = t_k + \eta_k .

Each step is a :class:`~jkoflow.solvers.jko.JKOStep` solve (built once, reused).
After every step the scheme records energy, mass, transport cost, iteration counts
and barrier levels in :attr:`JKOScheme.history`, calls the observers, writes VTK and
saves a checkpoint; a killed run is resumed with :func:`load_checkpoint`.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable

from firedrake import CheckpointFile, Function, VTKFile, assemble
from firedrake.petsc import PETSc

from .common import check_int, check_positive, global_min
from .jko import JKOStep

__all__ = ["JKOScheme", "load_checkpoint"]


class JKOScheme:
    r"""Iterate JKO steps :math:`\rho_0 \mapsto \rho_1 \mapsto \dots`.

    Parameters
    ----------
    energy
        The energy :math:`J`.
    rho0
        Initial density (strictly positive for entropic energies), or ``None`` when
        ``log_rho0`` is given.
    log_rho0
        Initial log-density (log representation; exact for Gaussians with P2).
    eta
        Default step size.
    N, degree, barrier, solver_parameters, options_prefix, appctx
        Passed to :class:`~jkoflow.solvers.jko.JKOStep`.
    observers
        Callables ``obs(scheme, result)`` called after each step.
    vtk
        Path of a ``.pvd`` file to write :math:`\rho_k` (and the potential) into.
    checkpoint
        Path of an HDF5 ``CheckpointFile`` receiving :math:`\rho_k` at every step.
    k0, t0
        Index and time of ``rho0`` (non-zero when resuming).
    """

    def __init__(self, energy, rho0: Function | None, eta: float, N: int = 4, *,
                 log_rho0: Function | None = None, degree: int = 1,
                 variable: str | None = None, barrier: dict | None = None, solver_parameters: dict | None = None,
                 options_prefix: str = "jko", appctx: dict | None = None,
                 observers: Iterable[Callable] = (), vtk: str | None = None,
                 checkpoint: str | None = None, k0: int = 0, t0: float = 0.0,
                 verbose: bool = False):
        self.energy = energy
        self.geometry = energy.geometry
        self.eta = check_positive("eta (the JKO step size)", eta)
        self.jko = JKOStep(energy, self.eta, N, degree=degree, variable=variable,
                           barrier=barrier,
                           solver_parameters=solver_parameters, options_prefix=options_prefix,
                           appctx=appctx)
        # The exact state is kept in the solver's representation (log-density for
        # entropic energies), so that chained steps conserve mass to round-off;
        # ``rho`` is its nodal density for output.
        self.state = Function(self.jko.V, name="state")
        if rho0 is not None:
            self.jko.set_start(rho0)
        else:
            self.jko.set_start(log_rho_k=log_rho0)
        self.state.assign(self.jko.start)
        self.rho = Function(self.jko.V, name="rho")
        self.phi = Function(self.jko.V, name="phi")
        self._update_rho()
        self.k = check_int("k0", k0, 0)
        self.t = float(t0)
        self.observers = list(observers)
        self.verbose = verbose
        self.history: list[dict] = []
        self._vtk = VTKFile(vtk) if vtk else None
        self._checkpoint_path = checkpoint
        self._record(None)
        if checkpoint and not (k0 > 0 and os.path.exists(checkpoint)):
            with CheckpointFile(checkpoint, "w", comm=self.geometry.comm) as f:
                f.save_mesh(self.geometry.mesh)
            self._save_checkpoint(self.eta)
        if self._vtk:
            self._vtk.write(self.rho, self.phi, time=self.t)

    def _update_rho(self):
        self.rho.interpolate(self.jko.density(self.state))

    def _save_checkpoint(self, eta):
        with CheckpointFile(self._checkpoint_path, "a", comm=self.geometry.comm) as f:
            f.save_function(self.state, idx=self.k,
                            timestepping_info={"time": self.t, "eta": eta})

    def energy_value(self) -> float:
        """:math:`J(\\rho_k)`, with the step solver's quadrature."""
        return float(assemble(self.energy.integrand(self.jko.density(self.state)) * self.jko.dx))

    def mass(self) -> float:
        """:math:`\\int\\rho_k` with the step solver's quadrature (conserved exactly)."""
        return self.jko.mass(self.state)

    def _record(self, result):
        entry = {"k": self.k, "t": self.t, "energy": self.energy_value(),
                 "mass": self.mass(), "min_rho": global_min(self.rho)}
        if result is not None:
            entry.update(eta=float(self.jko.eta), cost=result.cost,
                         snes_iterations=result.snes_iterations,
                         linear_iterations=result.linear_iterations,
                         barrier_levels=result.barrier_levels)
        self.history.append(entry)
        return entry

    def step(self, eta: float | None = None):
        """One JKO step (of size ``eta`` or the default); returns the step's result."""
        eta = self.eta if eta is None else check_positive("eta (the JKO step size)", eta)
        if self.jko.variable == "log":
            result = self.jko.solve(eta=eta, log_rho_k=self.state, label=f"JKO step {self.k + 1}")
            self.state.assign(result.log_rho)
        else:
            result = self.jko.solve(self.state, eta, label=f"JKO step {self.k + 1}")
            self.state.assign(result.rho)
        self._update_rho()
        self.phi.assign(result.phi)
        self.k += 1
        self.t += eta
        entry = self._record(result)
        if self.verbose:
            PETSc.Sys.Print(f"JKO step {self.k:4d}  t = {self.t:.4f}  J = {entry['energy']:.8g}  "
                            f"W2^2 = {entry['cost']:.3e}  Newton its = "
                            f"{entry['snes_iterations']}", comm=self.geometry.comm)
        for obs in self.observers:
            obs(self, result)
        if self._vtk:
            self._vtk.write(self.rho, self.phi, time=self.t)
        if self._checkpoint_path:
            self._save_checkpoint(eta)
        return result

    def run(self, steps: int):
        """Take ``steps`` steps of the default size; returns ``self.rho``."""
        for _ in range(check_int("steps", steps, 0)):
            self.step()
        return self.rho

    def advance_to(self, T: float):
        """Step with the default ``eta`` until :math:`t \\ge T` (last step shortened)."""
        while self.t < T - 1e-12 * max(1.0, abs(T)):
            self.step(min(self.eta, T - self.t))
        return self.rho

    def solver_stats(self) -> tuple[int, int, int]:
        """(steps, Newton iterations, linear iterations) so far."""
        return self.jko.solver_stats()


def load_checkpoint(path: str, comm=None):
    """Load the last saved state of a :class:`JKOScheme` checkpoint.

    Returns
    -------
    tuple
        ``(mesh, state, k, t, eta)``: build the geometry on ``mesh`` and pass
        ``log_rho0=state`` (log representation) or ``rho0=state``, with ``k0=k, t0=t``
        and the same ``checkpoint=path``, to a new scheme.
    """
    from firedrake import COMM_WORLD
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    with CheckpointFile(path, "r", comm=comm or COMM_WORLD) as f:
        mesh = f.load_mesh()
        info = f.get_timestepping_history(mesh, "state")
        k = int(info["index"][-1])
        state = f.load_function(mesh, "state", idx=k)
    return mesh, state, k, float(info["time"][-1]), float(info["eta"][-1])
