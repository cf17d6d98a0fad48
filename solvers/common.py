"""Shared solver machinery: input checks, SNES failure reports, solver statistics, logging.

Every jkoflow solver owns one Firedrake ``NonlinearVariationalSolver`` (the
dynamic-transport solvers its field-by-field counterpart,
:class:`~jkoflow.solvers.slice_assembly.SliceAssembledSolver`) and solves it
through :func:`solve_or_raise`, which records the SNES residual history and turns
a divergence into a :class:`SolverDivergedError` carrying that history.

Logging
-------
All solvers report through the standard :mod:`logging` logger ``"jkoflow"``
(:data:`logger`).  It has one handler, :data:`log_handler`, writing to standard error
on rank 0 only; by default it shows ``INFO`` messages: progress of long runs (at most
every :data:`PROGRESS_INTERVAL` seconds) and every fallback (step retries,
continuation, mass corrections out of the ordinary) as a ``WARNING``.  Switch with
:func:`set_log_level` (``set_log_level("WARNING")`` silences progress) or replace the
handler by the standard means (``logger.removeHandler(log_handler)``).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import ufl
from firedrake import Function
from firedrake.assemble import get_assembler
from firedrake.exceptions import ConvergenceError
from firedrake.petsc import PETSc
from mpi4py import MPI

from .presets import preset

__all__ = ["SolverDivergedError", "check_density", "check_positive", "check_int",
           "check_potential", "solve_or_raise", "SolverStats", "logger", "log_handler",
           "set_log_level", "Progress", "PROGRESS_INTERVAL", "global_min", "global_max",
           "nodal_exp", "FormValue"]

logger = logging.getLogger("jkoflow")


class _RankZero(logging.Filter):
    """Let records through on rank 0 of COMM_WORLD only (messages are collective)."""

    def filter(self, record) -> bool:
        return MPI.COMM_WORLD.rank == 0


#: The package's handler (standard error, rank 0); remove or replace it at will.
log_handler = logging.StreamHandler()
log_handler.setFormatter(logging.Formatter("jkoflow %(levelname)s: %(message)s"))
log_handler.addFilter(_RankZero())
logger.addHandler(log_handler)
logger.setLevel(logging.INFO)
logger.propagate = False

#: Seconds between two progress reports of a long run (``advance_to``/``run``).
PROGRESS_INTERVAL = 10.0


def set_log_level(level) -> None:
    """Set the level of the ``jkoflow`` logger: ``"DEBUG"`` (every step), ``"INFO"``
    (default: progress of long runs and warnings), ``"WARNING"`` (fallbacks only),
    ``"ERROR"``; a name or a :mod:`logging` constant."""
    if isinstance(level, str):
        name = level.upper()
        if name not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown log level {level!r}; valid: 'DEBUG', 'INFO', "
                             "'WARNING', 'ERROR', 'CRITICAL'")
        level = getattr(logging, name)
    logger.setLevel(level)


class Progress:
    """Progress of a long run, reported through :data:`logger` at ``INFO``.

    ``update(text)`` logs ``"<label>: <text>"`` when :data:`PROGRESS_INTERVAL` seconds
    have passed since the start or the last report; ``done(text)`` logs a final line
    if anything was reported (short runs stay silent).  Only rank 0 prints, and no
    collective operation is involved, so ranks may decide differently without harm.
    """

    def __init__(self, label: str, interval: float | None = None):
        self.label = label
        self.interval = PROGRESS_INTERVAL if interval is None else float(interval)
        self.start = self._last = time.perf_counter()
        self.reported = False

    def update(self, text: str):
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self.reported = True
            logger.info("%s: %s (%.0f s)", self.label, text, now - self.start)

    def done(self, text: str):
        if self.reported:
            logger.info("%s: %s, done in %.1f s", self.label, text,
                        time.perf_counter() - self.start)


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


def nodal_exp(u: Function, out: Function) -> Function:
    r"""``out`` set to the nodal interpolant of :math:`e^u`, for ``u`` and ``out`` in one
    Lagrange space: the degrees of freedom are point values, so this is the
    exponential of the dof vector (each rank its owned dofs), without the symbolic
    interpolation machinery (which costs milliseconds of Python per call in a time
    loop).  Other spaces fall back to ``out.interpolate(exp(u))``."""
    space = out.function_space()
    if u.function_space() == space and space.ufl_element().family() in ("Lagrange", "Q"):
        out.dat.data_wo[:] = np.exp(u.dat.data_ro)
    else:
        out.interpolate(ufl.exp(u))
    return out


class FormValue:
    """A functional (0-form) evaluated again and again, e.g. once per time step.

    ``assemble(form)`` preprocesses the form (derivative expansion, form data) at every
    call, milliseconds of Python per scalar; the assembler built here does that once
    and then only runs the compiled kernel on the current coefficient values.
    Calling the object is collective.
    """

    def __init__(self, form: ufl.Form):
        self.form = form
        self._assembler = get_assembler(form)

    def __call__(self) -> float:
        return float(self._assembler.assemble())


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
                         f"unknowns (its minimum is {lo:.3g}): log-density unknowns "
                         "need rho > 0; pass variable='density' (interior point) for "
                         "a density that vanishes somewhere (JKOScheme and "
                         "wasserstein_distance choose it by themselves when no "
                         "variable is given)")
    if lo < 0:
        raise ValueError(f"the {what} is negative somewhere (minimum {lo:.3g})")
    mass = geometry.mass(rho)
    if not mass > 0:
        raise ValueError(f"the {what} has zero mass ({mass:.3g}); a density needs mass > 0")
    return mass


def check_potential(geometry, V, what: str = "potential V"):
    """Raise ``ValueError`` if the UFL expression ``V`` lives on another mesh than
    ``geometry`` or is not finite at the vertices and cell midpoints of the mesh."""
    from firedrake import FunctionSpace, assemble, interpolate
    if any(d is not geometry.mesh for d in ufl.domain.extract_domains(V)):
        raise ValueError(f"the {what} is an expression on a different mesh than the "
                         f"geometry '{geometry.name}'; build it from this geometry "
                         "(e.g. a callable of geometry.x)")
    if V.ufl_shape != ():
        raise ValueError(f"the {what} must be a scalar, got shape {V.ufl_shape}")
    bad = 0
    for family, degree in (("DG", 0), ("CG", 1)):   # cell midpoints, vertices
        vals = assemble(interpolate(V, FunctionSpace(geometry.mesh, family, degree)))
        with np.errstate(invalid="ignore"):
            bad += int(np.count_nonzero(~np.isfinite(vals.dat.data_ro)))
    bad = geometry.comm.allreduce(bad, MPI.SUM)
    if bad:
        raise ValueError(f"the {what} has {bad} NaN or infinite values at the vertices "
                         f"or cell midpoints of '{geometry.name}'")


def _history_monitor(history: list):
    def monitor(snes, it, fnorm):
        history.append((it, float(fnorm)))
    return monitor


#: How often one solve may enlarge MUMPS's workspace (ICNTL(14), 4x each time), and
#: the largest allowance (percent of the analysis's estimate) it sets.
MUMPS_WORKSPACE_RETRIES = 3
MUMPS_MAX_WORKSPACE = 10000


def _enlarge_mumps_workspace(solver, what: str, its: int) -> bool:
    """If ``solver``'s last MUMPS factorisation ran out of workspace and the allowance
    ``ICNTL(14)`` is below :data:`MUMPS_MAX_WORKSPACE`, raise it fourfold (logged) and
    return True: the next solve refactorises from the analysis."""
    pc = solver.snes.getKSP().getPC()
    if (pc.getType() != "lu" or pc.getFactorSolverType() != "mumps"
            or pc.getFailedReason() != PETSc.PC.FailedReason.FACTOR_OUTMEMORY):
        return False
    old = pc.getFactorMatrix().getMumpsIcntl(14)
    if not 0 <= old < MUMPS_MAX_WORKSPACE:
        return False
    # MUMPS keeps its failed state (PETSc skips a refactorisation after it), so the
    # factorisation is rebuilt from the analysis with the new allowance.
    new = min(4 * max(old, 25), MUMPS_MAX_WORKSPACE)
    solver.parameters["mat_mumps_icntl_14"] = new
    pc.reset()
    logger.warning("%s: MUMPS ran out of workspace (delayed pivots) at Newton iteration "
                   "%d; workspace allowance ICNTL(14) %d%% -> %d%%, continuing from that "
                   "iterate", what, its, old, new)
    return True


#: Newton iterations taken with a direct solve after the iterative KKT solve failed
#: (:func:`solve_or_raise`), and after how many such failures in one solve the rest
#: of it is solved directly.
DIRECT_RESCUE_ITERATIONS = 2
DIRECT_RESCUE_RETRIES = 3


class _DirectRescue:
    """Newton steps with a direct solve (MUMPS LU) where a KKT preconditioner failed.

    A preconditioner opts in with a true class attribute ``rescue_with_direct_solve``
    (:class:`~jkoflow.solvers.preconditioners.KKTPreconditioner`).  :meth:`start`
    swaps the preconditioner of the SNES's KSP for an LU, whose Krylov method then
    converges in one iteration; after :data:`DIRECT_RESCUE_ITERATIONS` Newton steps
    (counted by a SNES monitor) or at the end of the solve, :meth:`restore` puts the
    *same* preconditioner object back (it keeps its state and refreshes its blocks from
    the next Jacobian).  The Krylov method itself is never touched, so every option of
    it (type, tolerances, restart, orthogonalisation, norm) survives a rescue."""

    def __init__(self, solver) -> None:
        self.solver, self.saved, self.left = solver, None, 0
        solver.snes.setMonitor(self._monitor)

    @staticmethod
    def applies(solver) -> bool:
        """Whether ``solver``'s preconditioner asks to be rescued."""
        pc = solver.snes.getKSP().getPC()
        return pc.getType() == "python" and getattr(
            pc.getPythonContext(), "rescue_with_direct_solve", False)

    def start(self, iterations: int | None) -> None:
        """Direct solves for the next ``iterations`` Newton steps (``None``: the rest
        of the solve), with the ``"direct"`` preset's MUMPS options unless set (as the
        solver's defaults: they leave PETSc's options database with its others)."""
        pc = self.solver.snes.getKSP().getPC()
        self.saved = pc.getPythonContext()
        for key, value in preset("direct").items():
            if key.startswith("mat_mumps"):
                self.solver.set_default_parameter(key, value)
        pc.setType("lu")
        pc.setFactorSolverType("mumps")
        self.left = iterations if iterations is not None else -1

    def _monitor(self, snes, it: int, fnorm: float) -> None:
        if self.saved is None or it == 0:
            return
        if self.left > 0:
            self.left -= 1
            if self.left == 0:
                self.restore()

    def restore(self) -> None:
        """Put the saved preconditioner back; nothing if no rescue is active."""
        if self.saved is None:
            return
        pc = self.solver.snes.getKSP().getPC()
        pc.setType("python")
        pc.setPythonContext(self.saved)
        self.saved = None


def solve_or_raise(solver, what: str, history: list | None = None):
    """Solve a ``NonlinearVariationalSolver`` (or a
    :class:`~jkoflow.solvers.slice_assembly.SliceAssembledSolver`); on failure raise
    with the history.

    Two linear-solver failures are repaired, not raised, and Newton goes on from the
    iterate where the linear solve failed:

    * MUMPS running out of the workspace it reserved at the analysis
      (``FACTOR_OUTMEMORY``).  That happens when numerical pivoting delays many
      pivots, as in KKT systems whose entries span hundreds of orders of magnitude
      (densities near :math:`10^{-300}`).  The workspace allowance ``ICNTL(14)`` is
      raised fourfold (at most :data:`MUMPS_WORKSPACE_RETRIES` times per solve, with
      a warning).
    * An iterative KKT solve that failed (a preconditioner with
      ``rescue_with_direct_solve``, e.g. the ``"sweep"`` preset): far from the
      solution a few Newton iterates can defeat the preconditioner (strongly
      indefinite transport blocks).  The next :data:`DIRECT_RESCUE_ITERATIONS`
      Newton steps are solved by MUMPS, then the preconditioner takes over again;
      after :data:`DIRECT_RESCUE_RETRIES` such failures in one solve, MUMPS solves
      the rest of it (each with a warning).  The next solve starts with the
      preconditioner again.

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
        ``(snes iterations, linear iterations)`` of this solve (all attempts).

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
    rescue = getattr(solver, "_jkoflow_rescue", None)
    if rescue is None and _DirectRescue.applies(solver):
        rescue = solver._jkoflow_rescue = _DirectRescue(solver)
    its = lits = retries = rescues = 0
    try:
        while True:
            try:
                solver.solve()
            except ConvergenceError as e:
                reason = snes.getConvergedReason()
                its += snes.getIterationNumber()
                lits += snes.getLinearSolveIterations()
                linear = reason == PETSc.SNES.ConvergedReason.DIVERGED_LINEAR_SOLVE
                if (linear and retries < MUMPS_WORKSPACE_RETRIES
                        and _enlarge_mumps_workspace(solver, what, its)):
                    retries += 1
                    continue
                if linear and rescue is not None and rescue.saved is None:
                    ksp = snes.getKSP()
                    rescues += 1
                    last = rescues >= DIRECT_RESCUE_RETRIES
                    logger.warning(
                        "%s: the iterative KKT solve failed at Newton iteration %d (KSP "
                        "reason %s after %d iterations, failure %d of this solve); %s",
                        what, its, ksp.getConvergedReason(), ksp.getIterationNumber(),
                        rescues, "the rest of the solve uses a direct solve (MUMPS)" if last
                        else f"the next {DIRECT_RESCUE_ITERATIONS} Newton steps use a direct "
                        "solve (MUMPS), then the preconditioner again")
                    rescue.start(None if last else DIRECT_RESCUE_ITERATIONS)
                    continue
                lines = "\n".join(f"    {it:3d} SNES residual {r:.6e}" for it, r in hist)
                raise SolverDivergedError(
                    f"{what}: the nonlinear solver diverged "
                    f"(SNES reason {_reason_name(reason)}) after {its} "
                    f"iterations.\n  Residual history:\n{lines or '    (none)'}\n  ({e})",
                    history=hist, reason=reason) from None
            its += snes.getIterationNumber()
            lits += snes.getLinearSolveIterations()
            return its, lits
    finally:
        if rescue is not None:
            rescue.restore()
        if history is not None:
            history.extend(hist)


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
