r"""The time-stepping protocol shared by every jkoflow evolution solver.

:class:`Stepper` is the one interface of the JKO scheme
(:class:`~jkoflow.solvers.JKOScheme`), the Wasserstein gradient flow
(:class:`~jkoflow.solvers.WassersteinGradientFlow`) and the JKO-Flow
(:class:`~jkoflow.solvers.JKOFlow`), in the manner of Irksome's ``BaseTimeStepper``:
the *equation* is an :class:`~jkoflow.solvers.Energy` (and a formulation), the
*integrator* is the subclass (implicit Runge--Kutta or iterated JKO steps), and the
*solver* is the one Firedrake ``NonlinearVariationalSolver`` each of them builds once.

Stepping
    ``step()`` takes one accepted step and returns its size; ``advance_to(T)`` steps
    until ``t == T`` exactly (the last step shortened); ``run(steps)`` takes a number
    of steps.  ``t``, ``dt`` (the step size the next step tries: :math:`\eta` for the
    JKO scheme), ``step_number`` (accepted steps since the start of the run, kept
    across restarts).
The state, as densities
    ``rho`` (the density as a named ``Function``), ``rho_expr`` (exact UFL
    expression of it), ``mass()``, ``energy_value()``, ``variable`` (``"log"`` or
    ``"density"``: how the state represents the density), ``state`` (the Function
    that a checkpoint stores: never hand it to a constructor as a density).
Observers
    ``add_observer(obs)``: ``obs(solver)`` is called at once and after every accepted
    step (:class:`~jkoflow.solvers.TimeSeries`, :class:`~jkoflow.solvers.VTKOutput`,
    :class:`~jkoflow.solvers.Checkpointer` or any callable).
Output
    ``output_functions()``: the fields written by :class:`~jkoflow.solvers.VTKOutput`,
    named the same way by every solver: ``"density"``, then ``"log_density"`` for the
    log variable (and a JKO scheme that may change to it), then the solver's potential (``"chemical_potential"`` for the
    JKO-Flow, ``"transport_potential"`` for the JKO scheme).
Checkpoints
    ``checkpoint_metadata()`` (what a restart must match), ``restore(...)`` (used by
    :func:`~jkoflow.solvers.restart`, the one restart entry point).
Statistics and progress
    ``solver_stats()``, ``statistics()``; long ``advance_to``/``run`` calls report
    progress through the ``jkoflow`` logger (:class:`~jkoflow.solvers.common.Progress`).
"""
from __future__ import annotations

from typing import Callable

from firedrake import Function

from .common import Progress, SolverStats, check_int, logger

__all__ = ["Stepper"]


class Stepper(SolverStats):
    """Base class of the evolution solvers (see the module notes for the protocol).

    Subclasses call :meth:`_init_protocol` in their constructor and implement
    :meth:`_advance` (one accepted step of at most a given size), ``t``, ``dt``,
    ``rho``, ``rho_expr``, ``state``, ``variable``, :meth:`energy_value`,
    :meth:`mass`, :meth:`output_functions`, :meth:`checkpoint_metadata` and
    :meth:`_restore_state`.
    """

    #: Short name used in log messages.
    label = "solver"

    def _init_protocol(self, step0: int = 0):
        self.observers: list[Callable] = []
        self.step_number = check_int("step number", step0, 0)

    # ----------------------------------------------------------- interface
    def energy_value(self) -> float:
        """:math:`J(\\rho)` of the current density (collective)."""
        raise NotImplementedError

    def mass(self) -> float:
        """:math:`\\int\\rho` of the current density (collective)."""
        raise NotImplementedError

    def output_functions(self) -> list[Function]:
        """The named Functions written by :class:`~jkoflow.solvers.VTKOutput`."""
        raise NotImplementedError

    def checkpoint_metadata(self) -> dict:
        """What a restart from this solver's checkpoints must match (JSON-serialisable):
        solver class, representation, energy, space, step parameters."""
        en = self.energy
        return {"solver": type(self).__name__, "representation": self.variable,
                "energy": en.name, "entropic": bool(en.entropic),
                "has_internal_energy": en.U is not None, "has_potential": en.V is not None,
                "space": _element_label(self.state_space_element()),
                "fields": len(self.state.function_space())}

    def state_space_element(self):
        """The UFL element of the checkpointed state's (first) field."""
        V = self.state.function_space()
        return (V[0] if len(V) > 1 else V).ufl_element()

    def snapshot_info(self) -> dict:
        """Per-snapshot numbers stored with every checkpointed state (floats)."""
        return {"time": float(self.t), "dt": float(self.dt), "step": float(self.step_number),
                "energy": self.energy_value(), "mass": self.mass(),
                "reference_mass": float(getattr(self, "initial_mass", self.mass()))}

    def restore(self, state: Function, info: dict):
        """Put a checkpointed ``state`` (same space) and its ``info`` back: the state, the
        time, the step number, the step size and the conserved mass.  Used by
        :func:`~jkoflow.solvers.restart`; not for densities."""
        self._restore_state(state, info)
        self.step_number = int(round(info["step"]))

    def _restore_state(self, state: Function, info: dict):
        raise NotImplementedError

    def _advance(self, limit: float | None) -> float:
        """One accepted step of size at most ``limit``; return its size."""
        raise NotImplementedError

    # ------------------------------------------------------------ observers
    def add_observer(self, obs: Callable, *, call_now: bool = True) -> Callable:
        """Register ``obs(solver)``, called after every accepted step (and now).

        Returns ``obs`` (so ``series = solver.add_observer(TimeSeries())`` works).
        """
        if not callable(obs):
            raise TypeError(f"an observer must be callable, got {type(obs).__name__}")
        self.observers.append(obs)
        if call_now:
            obs(self)
        return obs

    def _notify(self):
        for obs in self.observers:
            obs(self)

    # -------------------------------------------------------------- stepping
    def advance_to(self, T: float) -> float:
        """Step until the time is exactly ``T`` (the last step shortened); return ``T``.

        Raises
        ------
        ValueError
            If ``T`` is before the current time.
        """
        T = float(T)
        tol = 1e-12 * max(1.0, abs(T))
        if T < self.t - tol:
            raise ValueError(f"cannot advance backwards: t = {self.t:g} > T = {T:g}")
        progress = Progress(self.label)
        t_start = self.t
        while T - self.t > tol:
            self._advance(T - self.t)
            progress.update(f"t = {self.t:.6g} of {T:.6g} "
                            f"({100 * (self.t - t_start) / (T - t_start):.0f}%), "
                            f"step {self.step_number}")
        self._set_time(T)
        progress.done(f"t = {T:.6g}, step {self.step_number}")
        return T

    def run(self, steps: int):
        """Take ``steps`` steps of the current size; return the density ``rho``."""
        steps = check_int("steps", steps, 0)
        progress = Progress(self.label)
        for i in range(steps):
            self._advance(None)
            progress.update(f"step {i + 1} of {steps}, t = {self.t:.6g}")
        progress.done(f"{steps} steps, t = {self.t:.6g}")
        return self.rho

    def _set_time(self, T: float):
        """Snap the time to ``T`` at the end of :meth:`advance_to` (round-off)."""

    def _accepted(self, h: float):
        """Book-keeping after an accepted step of size ``h``: count, log, observers."""
        self.step_number += 1
        logger.debug("%s: step %d, t = %.8g, dt = %.4g", self.label, self.step_number,
                     self.t, h)
        self._notify()

    def statistics(self) -> dict:
        """Accepted steps and SNES/KSP iterations so far (subclasses add more)."""
        steps, nonlinear, linear = self.solver_stats()
        return {"steps": steps, "nonlinear_iterations": nonlinear,
                "linear_iterations": linear}


def _element_label(element) -> str:
    """``"P2"``-style label of a Lagrange element (else its string)."""
    family = element.family()
    degree = element.embedded_superdegree
    short = {"Lagrange": "P", "Q": "Q", "Discontinuous Lagrange": "DP"}.get(family)
    return f"{short}{degree}" if short else str(element)
