"""Shared solver machinery: input checks, SNES failure reports, solver statistics.

Every jkoflow solver owns one Firedrake ``NonlinearVariationalSolver`` and solves it
through :func:`solve_or_raise`, which records the SNES residual history and turns
a divergence into a :class:`SolverDivergedError` carrying that history.
"""
from __future__ import annotations

import logging

import numpy as np
from firedrake import Function
from firedrake.exceptions import ConvergenceError
from firedrake.petsc import PETSc
from mpi4py import MPI

__all__ = ["SolverDivergedError", "check_density", "check_positive", "check_int",
           "solve_or_raise", "SolverStats", "logger", "global_min", "global_max"]

logger = logging.getLogger("jkoflow")


class SolverDivergedError(RuntimeError):
    """A nonlinear solve failed; the message carries the SNES iteration history.

    Attributes
    ----------
    history
        List of ``(iteration, residual norm)`` of the failed solve.
    reason
        PETSc's converged reason (a negative integer) or ``None``.
    """

    def __init__(self, message: str, history=(), reason=None):
        super().__init__(message)
        self.history = list(history)
        self.reason = reason


def global_min(f: Function) -> float:
    """Minimum nodal value of ``f`` over all ranks."""
    with f.dat.vec_ro as v:
        return float(v.min()[1])


def global_max(f: Function) -> float:
    """Maximum nodal value of ``f`` over all ranks."""
    with f.dat.vec_ro as v:
        return float(v.max()[1])


def check_positive(name: str, value) -> float:
    """Return ``float(value)``, raising ``ValueError`` unless it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be positive, got {name} = {value!r}")
    return v


def check_int(name: str, value, minimum: int = 1) -> int:
    """Return ``int(value)``, raising ``ValueError`` unless it is an integer >= minimum."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name} = {value!r}")
    return int(value)


def check_density(geometry, rho: Function, *, strictly_positive: bool = False,
                  what: str = "initial density") -> float:
    """Validate a density on ``geometry``; return its mass.

    Raises
    ------
    ValueError
        If ``rho`` lives on another mesh, has NaN/inf values, negative values (or
        non-positive ones when ``strictly_positive``), or zero mass.
    """
    if not isinstance(rho, Function):
        raise TypeError(f"the {what} must be a firedrake Function, got {type(rho).__name__}")
    geometry.check_function(rho, what)
    with rho.dat.vec_ro as v:
        arr = v.array_r
        bad = geometry.comm.allreduce(int(np.count_nonzero(~np.isfinite(arr))), MPI.SUM)
    if bad:
        raise ValueError(f"the {what} has {bad} NaN or infinite values")
    lo = global_min(rho)
    if strictly_positive and not lo > 0:
        raise ValueError(f"the {what} must be strictly positive with log-density "
                         f"unknowns (its minimum is {lo:.3g}): entropic energies use "
                         "log-density unknowns by default and need rho > 0; pass "
                         "variable='density' (interior point) for a density that "
                         "vanishes somewhere")
    if lo < 0:
        raise ValueError(f"the {what} is negative somewhere (minimum {lo:.3g})")
    mass = geometry.mass(rho)
    if not mass > 0:
        raise ValueError(f"the {what} has zero mass ({mass:.3g}); a density needs mass > 0")
    return mass


def _history_monitor(history: list):
    def monitor(snes, it, fnorm):
        history.append((it, float(fnorm)))
    return monitor


def solve_or_raise(solver, what: str, history: list | None = None):
    """Solve a ``NonlinearVariationalSolver``; on failure raise with the history.

    Parameters
    ----------
    solver
        The Firedrake solver (its SNES gets a history monitor on first use).
    what
        Describes the solve in the error message (e.g. ``"JKO step 3, mu=1e-4"``).
    history
        Optional list that receives ``(iteration, residual)`` pairs.

    Returns
    -------
    tuple
        ``(snes iterations, linear iterations)`` of this solve.

    Raises
    ------
    SolverDivergedError
        With the residual history, if SNES did not converge.
    """
    snes = solver.snes
    if not hasattr(solver, "_jkoflow_history"):
        solver._jkoflow_history = []
        snes.setMonitor(_history_monitor(solver._jkoflow_history))
    hist = solver._jkoflow_history
    hist.clear()
    try:
        solver.solve()
    except ConvergenceError as e:
        reason = snes.getConvergedReason()
        lines = "\n".join(f"    {it:3d} SNES residual {r:.6e}" for it, r in hist)
        raise SolverDivergedError(
            f"{what}: the nonlinear solver diverged "
            f"(SNES reason {_reason_name(reason)}) after {snes.getIterationNumber()} "
            f"iterations.\n  Residual history:\n{lines or '    (none)'}\n  ({e})",
            history=hist, reason=reason) from None
    finally:
        if history is not None:
            history.extend(hist)
    return snes.getIterationNumber(), snes.getLinearSolveIterations()


def _reason_name(reason: int) -> str:
    names = {v: k for k, v in vars(PETSc.SNES.ConvergedReason).items() if isinstance(v, int)}
    return f"{names.get(reason, '?')} ({reason})"


class SolverStats:
    """Running totals of steps and SNES/KSP iterations, as Irksome's steppers keep.

    Subclasses call :meth:`_count` after each solve; :meth:`solver_stats` returns
    ``(steps, nonlinear iterations, linear iterations)``.
    """

    def _init_stats(self):
        self.num_steps = 0
        self.num_nonlinear_iterations = 0
        self.num_linear_iterations = 0

    def _count(self, nonlinear: int, linear: int, steps: int = 1):
        self.num_steps += steps
        self.num_nonlinear_iterations += int(nonlinear)
        self.num_linear_iterations += int(linear)

    def solver_stats(self) -> tuple[int, int, int]:
        """(steps, nonlinear iterations, linear iterations) so far."""
        return self.num_steps, self.num_nonlinear_iterations, self.num_linear_iterations
