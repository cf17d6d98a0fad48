r"""Generic implicit time integration for jkoflow's evolution problems.

:class:`TimeIntegrator` advances a semi-discrete system written in UFL with
Irksome's ``Dt``,

.. math:: F(t, u, \partial_t u; v) = 0 \quad\text{for all test functions } v,

for an unknown :class:`~firedrake.Function` ``u`` (scalar or mixed), with a fully
implicit Runge--Kutta method (Radau IIA by default).  Subclasses build the residual
and call ``TimeIntegrator.__init__``; the Wasserstein gradient flow
(:class:`jkoflow.solvers.WassersteinGradientFlow`) and the JKO-Flow subclass it
(through :class:`~jkoflow.solvers.density_flow.DensityFlow`).  It implements the
time-stepping protocol :class:`~jkoflow.solvers.protocol.Stepper` shared with the JKO
scheme (observers, checkpoints and restart, progress).

Public interface (stable)
-------------------------
``TimeIntegrator(F, u, t, dt, *, method, stages, stage_type, adaptive, tol, ...)``
    ``t`` and ``dt`` are :class:`~firedrake.Constant` objects used in ``F``
    (make them with :func:`time_constants`); ``F`` contains ``Dt(...)`` terms.
``step()``, ``advance_to(T)``, ``run(steps)``
    One accepted step (returns its size) / step until ``t == T`` exactly / n steps.
``t``, ``dt``, ``u`` (= ``state``), ``step_number``
    Current time (float), nominal/proposed step (float, settable), the state, the
    number of accepted steps (kept across restarts).
``add_observer(obs)``
    ``obs(solver)`` is called now and after every accepted step.
:class:`TimeSeries`, :class:`VTKOutput`, :class:`Checkpointer`
    Ready-made observers (:mod:`jkoflow.solvers.observers`,
    :mod:`jkoflow.solvers.checkpointing`); restart with
    :func:`~jkoflow.solvers.restart`.
``log_fields=(i, ...)``
    Fields of ``u`` that are log-densities: Newton steps taken in density variables.
``solver_stats()``, ``statistics()``
    ``(accepted steps, SNES iterations, KSP iterations)``; a dict with rejections
    and retries too.
Hooks for subclasses
    ``energy_value()``, ``mass()``, ``output_functions()``, ``error_norm(a, b)``
    (the step-size controller's error measure), ``check_state()`` (return a
    message to reject a computed step, e.g. on lost positivity; may also project
    the state, e.g. restore mass) and ``failure_hint()`` (advice for the error).

Time integration
----------------
Irksome's *stage-value* formulation is the default (``stage_type="value"``): it
discretises :math:`\partial_t g(u)` as :math:`g(U_i) - g(u_n)`, so with a stiffly
accurate method (Radau IIA: :math:`u_{n+1} = U_s`) every invariant
:math:`\int g(u)` that the residual conserves is conserved *exactly* by the
discrete step, also for nonlinear :math:`g` (e.g. :math:`\rho = e^l`); it also
handles index-1 DAEs (algebraic fields without ``Dt``) and bound constraints
(``bounds=``, variational-inequality SNES).

Error control (``adaptive=True``) is by **step doubling**: a step of size
:math:`h` and two steps of size :math:`h/2` from the same state; the accepted
state is the two-half-step one and the estimate
:math:`e = \|u_{h/2,h/2} - u_h\| / \|u_{h/2,h/2}\|` (relative, via
:meth:`TimeIntegrator.error_norm`) must satisfy :math:`e \le \mathrm{tol}\cdot h`
(error per unit step, so the global error is about :math:`\mathrm{tol}\cdot T`).
The new step is :math:`h\min(f_{\max}, \max(f_{\min}, 0.9(\mathrm{tol}\,h/e)^{1/p}))`.
We do not use Irksome's ``AdaptiveTimeStepper``: it exists only for the
stage-derivative formulation (so neither exact conservation of nonlinear
:math:`\int g(u)` nor bounds), measures the error of all fields of a mixed system
alike (including algebraic multipliers), and leaves SNES failures to the caller.
Step doubling is method-agnostic and, unlike an unfiltered embedded estimate, is
not fooled by stiff (fast-decaying) modes.

A failed nonlinear solve (or a state rejected by :meth:`~TimeIntegrator.check_state`)
is retried from the same state with a step halved up to ``max_retries`` times (each
retry is logged as a warning); then :class:`~jkoflow.solvers.common.SolverDivergedError`
is raised with the SNES residual history of every attempt.
"""
from __future__ import annotations

import math
import numpy as np
import ufl
from firedrake import Constant, Function, assemble
from firedrake.exceptions import ConvergenceError
from firedrake.petsc import PETSc
from mpi4py import MPI

from .checkpointing import Checkpointer
from .common import SolverDivergedError, _reason_name, check_int, check_positive, logger
from .observers import TimeSeries, VTKOutput, load_checkpoint_mesh
from .presets import resolve_parameters
from .protocol import Stepper

__all__ = ["TimeIntegrator", "TimeSeries", "VTKOutput", "Checkpointer", "time_constants",
           "make_tableau", "load_checkpoint_mesh", "METHODS"]

#: Names accepted by ``method=`` (an Irksome ``ButcherTableau`` is accepted too).
METHODS = ("radauIIA", "backward_euler", "gauss_legendre", "lobattoIIIC")


def make_tableau(method="radauIIA", stages: int = 3):
    """An Irksome Butcher tableau from a name (see :data:`METHODS`) or a tableau.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).
    """
    import irksome
    if not isinstance(method, str):
        return method
    stages = check_int("stages", stages)
    makers = {"radauIIA": lambda: irksome.RadauIIA(stages),
              "backward_euler": irksome.BackwardEuler,
              "gauss_legendre": lambda: irksome.GaussLegendre(stages),
              "lobattoIIIC": lambda: irksome.LobattoIIIC(max(stages, 2))}
    if method not in makers:
        raise ValueError(f"unknown time integration method {method!r}; valid: {list(METHODS)} "
                         "or an irksome ButcherTableau")
    return makers[method]()


def time_constants(t0: float = 0.0, dt: float = 0.1) -> tuple[Constant, Constant]:
    """``(t, dt)`` as Firedrake ``Constant`` objects for use in a residual.

    Raises
    ------
    ValueError
        If ``dt <= 0`` or either value is not finite.
    """
    if not np.isfinite(float(t0)):
        raise ValueError(f"initial time must be finite, got t0 = {t0!r}")
    return Constant(float(t0)), Constant(check_positive("dt", dt))


def _all_finite(u: Function) -> bool:
    with u.dat.vec_ro as v:
        bad = int(np.count_nonzero(~np.isfinite(v.array_r)))
    return u.function_space().mesh().comm.allreduce(bad, MPI.SUM) == 0


class _StepFailure(Exception):
    """Internal: an attempted step failed (SNES divergence or rejected state)."""


class TimeIntegrator(Stepper):
    r"""Implicit Runge--Kutta integration of ``F(t, u, Dt(u); v) = 0`` with retries.

    Parameters
    ----------
    F
        The semi-discrete residual (a UFL form, nonlinear in ``u``, with ``Dt`` terms).
    u
        The state, a :class:`~firedrake.Function` (possibly on a mixed space); it is
        updated in place.
    t, dt
        The ``Constant`` objects that ``F`` uses for time and step size.
    method
        ``"radauIIA"`` (default), ``"backward_euler"``, ``"gauss_legendre"``,
        ``"lobattoIIIC"`` or an Irksome ``ButcherTableau``.
    stages
        Number of stages (Radau IIA with ``s`` stages has order :math:`2s-1`).
    stage_type
        Irksome formulation: ``"value"`` (default, see the module notes) or ``"deriv"``.
    bounds
        Irksome bounds ``("stage" | "last_stage", lower, upper)`` (stage-value only;
        needs a variational-inequality SNES such as ``vinewtonrsls``).
    bcs
        Strong boundary conditions (passed to Irksome).
    adaptive
        Step-doubling error control (see the module notes).
    tol
        Relative error per unit step for ``adaptive=True``.
    dt_min, dt_max
        Limits of the step size (retries below ``dt_min`` give up).
    max_retries
        How many times a failed step is retried with half the step.
    order
        Order used by the step-size controller (default: the tableau's order).
    log_fields
        Indices of the fields of ``u`` that are log-densities :math:`l = \log\rho`:
        their Newton updates are taken in density variables, see :meth:`_log_update`
        (needed when :math:`\rho` spans many orders of magnitude).
    log_floor
        :math:`c` in :meth:`_log_update`: a Newton step divides a density by at most
        :math:`e^c`.
    log_min
        Lower bound kept by the Newton updates of log fields (``e^-500`` is ~1e-217).
    solver_parameters, solver_parameters_extra
        PETSc options for the stage system by the rule of
        :func:`~jkoflow.solvers.presets.resolve_parameters`: a preset name (default
        ``"direct"``) or a full dict, updated by the extra dict.
    options_prefix
        PETSc options prefix (e.g. ``-jkoflow_ts_snes_monitor``).
    appctx
        Application context passed to the solver.
    stepper_kwargs
        Extra keyword arguments for ``irksome.TimeStepper`` (e.g. ``nullspace``).

    Raises
    ------
    ValueError
        For ``dt <= 0``, a bad ``stages``/``tol``/``method`` or an unknown stage type.
    """

    def __init__(self, F: ufl.Form, u: Function, t: Constant, dt: Constant, *,
                 method="radauIIA", stages: int = 3, stage_type: str = "value",
                 bounds=None, bcs=None, adaptive: bool = False, tol: float = 1e-6,
                 dt_min: float = 1e-12, dt_max: float = math.inf, max_retries: int = 6,
                 order: int | None = None, log_fields=(), log_floor: float = 1.0,
                 log_min: float = -500.0,
                 solver_parameters: dict | str | None = None,
                 solver_parameters_extra: dict | None = None,
                 options_prefix: str = "jkoflow_ts", appctx: dict | None = None,
                 stepper_kwargs: dict | None = None, tune_parameters=None):
        import irksome
        if stage_type not in ("value", "deriv"):
            raise ValueError(f"unknown stage_type {stage_type!r}; valid: ['value', 'deriv']")
        self.u = u
        self._t_const, self._dt_const = t, dt
        self._t = float(t)
        self._dt = check_positive("dt", float(dt))
        self.dt_nominal = self._dt
        self.tableau = make_tableau(method, stages)
        self.adaptive = bool(adaptive)
        self.tol = check_positive("tol", tol)
        self.dt_min = check_positive("dt_min", dt_min)
        self.dt_max = math.inf if dt_max == math.inf else check_positive("dt_max", dt_max)
        self.max_retries = check_int("max_retries", max_retries, 0)
        self.order = int(order or self.tableau.order)
        self.fac_min, self.fac_max, self.safety = 0.2, 3.0, 0.9
        params = resolve_parameters(solver_parameters, solver_parameters_extra, "direct",
                                    tune_parameters)
        self.solver_parameters = params
        self.options_prefix = options_prefix
        self.method = method if isinstance(method, str) else str(self.tableau)
        kwargs = dict(stepper_kwargs or {})
        kwargs.update(stage_type=stage_type, solver_parameters=params,
                      options_prefix=options_prefix, appctx=appctx)
        if bcs is not None:
            kwargs["bcs"] = bcs
        if bounds is not None:
            kwargs["bounds"] = bounds
        self.stepper = irksome.TimeStepper(F, self.tableau, t, dt, u, **kwargs)
        self.solver = self.stepper.solver
        self._snes_history: list = []
        self.solver.snes.setMonitor(
            lambda snes, it, fnorm: self._snes_history.append((it, float(fnorm))))
        self.log_fields = tuple(log_fields)
        if self.log_fields:
            self._log_mask = self._stage_mask(self.log_fields)
            self._log_floor = check_positive("log_floor", log_floor)
            self.log_min = float(log_min)
            self.solver.snes.setLineSearchPreCheck(self._log_update)
        V = u.function_space()
        self._u_start, self._u_full = Function(V), Function(V)
        self._init_protocol()
        self._init_stats()
        self.num_rejected = 0
        self.num_retries = 0
        self.last_error_estimate = None

    # -------------------------------------------------- log-density updates
    def _stage_mask(self, fields) -> np.ndarray:
        """Boolean mask of the local stage-vector entries belonging to ``fields``."""
        nf = len(self.u.function_space())
        for i in fields:
            if not 0 <= i < nf:
                raise ValueError(f"log_fields: field index {i} out of range for a state "
                                 f"with {nf} fields")
        parts = []
        for j, sub in enumerate(self.stepper.stages.subfunctions):
            with sub.dat.vec_ro as v:
                parts.append(np.full(v.getLocalSize(), j % nf in fields))
        return np.concatenate(parts)

    def _log_update(self, x, y):
        r"""Line-search pre-check: Newton in density variables for log fields.

        The Newton direction :math:`\delta l` of :math:`\rho = e^l` is the linearised
        density update :math:`\rho \to \rho(1 + \delta l)`; we take exactly that nodal
        update, :math:`l \to l + \log(1 + \delta l)`, and divide the density by
        :math:`e^{c}` where :math:`1 + \delta l \le e^{-c}` (``c = log_floor``), and
        multiply it by at most :math:`e^{4c}` (no overflow of :math:`e^l`); :math:`l`
        stays above ``log_min`` (no underflow to a zero density).  Near
        convergence this differs from Newton by :math:`O(\delta l^2)`, so quadratic
        convergence is kept, while the huge steps of :math:`l` in the far tails of a
        density (which overflow :math:`e^l`) become moderate.  PETSc updates
        :math:`x \leftarrow x - \lambda y`.
        """
        arr = y.array
        m = self._log_mask
        c = self._log_floor
        d = -arr[m]
        step = np.minimum(np.log1p(np.maximum(d, math.expm1(-c))), 4 * c)
        arr[m] = -np.maximum(step, self.log_min - x.array_r[m])

    # ------------------------------------------------------------ properties
    @property
    def t(self) -> float:
        """Current time."""
        return self._t

    @property
    def dt(self) -> float:
        """The step size the next :meth:`step` will try (nominal, or the controller's)."""
        return self._dt

    @dt.setter
    def dt(self, value: float):
        self._dt = check_positive("dt", value)

    @property
    def state(self) -> Function:
        """The state that checkpoints store (``u``)."""
        return self.u

    # ------------------------------------------------------------- hooks
    def energy_value(self) -> float:
        """The energy of the current state (subclasses override)."""
        raise NotImplementedError(f"{type(self).__name__} does not define energy_value()")

    def mass(self) -> float:
        """The mass of the current state (subclasses override)."""
        raise NotImplementedError(f"{type(self).__name__} does not define mass()")

    def output_functions(self) -> list[Function]:
        """Named Functions written by :class:`VTKOutput` (default: the state's parts)."""
        return list(self.u.subfunctions)

    def error_norm(self, a: Function, b: Function) -> float:
        r"""Relative difference :math:`\|a - b\|_{L^2}/\|a\|_{L^2}` used by the controller."""
        num = sum(assemble(ufl.inner(x - y, x - y) * ufl.dx) for x, y in
                  zip(a.subfunctions, b.subfunctions))
        den = sum(assemble(ufl.inner(x, x) * ufl.dx) for x in a.subfunctions)
        return math.sqrt(num / den) if den > 0 else math.sqrt(num)

    def failure_hint(self) -> str | None:
        """Advice appended to the :class:`SolverDivergedError` message (subclasses)."""
        return None

    def check_state(self) -> str | None:
        """Return a message to reject the just-computed state (default: non-finite values)."""
        return None if _all_finite(self.u) else "the new state has NaN or infinite values"

    def checkpoint_metadata(self) -> dict:
        """The protocol's record plus the time integration (method, stages, nominal dt,
        adaptivity)."""
        meta = super().checkpoint_metadata()
        meta.update(method=self.method, stages=int(self.tableau.num_stages),
                    dt=self.dt_nominal, adaptive=self.adaptive,
                    tol=self.tol if self.adaptive else None)
        return meta

    def _restore_state(self, state: Function, info: dict):
        self.u.assign(state)
        self._t = float(info["time"])
        self._t_const.assign(self._t)
        self._dt = check_positive("dt", info["dt"])

    # --------------------------------------------------------------- stepping
    def _reset_stages(self):
        """Start Newton from the current state (Irksome's constant-in-time guess)."""
        stepper = self.stepper
        if hasattr(stepper, "set_initial_guess"):
            stepper.set_initial_guess()
        elif hasattr(stepper, "stages"):
            stepper.stages.assign(0)

    def _attempt(self, t0: float, h: float, log: list):
        """One Irksome step of size ``h`` from the current ``u`` at time ``t0``."""
        self._t_const.assign(t0)
        self._dt_const.assign(h)
        self._reset_stages()
        self._snes_history.clear()
        snes = self.solver.snes
        try:
            self.stepper.advance()
        except (ConvergenceError, PETSc.Error) as e:
            why = (f"SNES diverged ({_reason_name(snes.getConvergedReason())})"
                   if isinstance(e, ConvergenceError) else f"PETSc error {e}")
            log.append((t0, h, why, list(self._snes_history)))
            self._count(snes.getIterationNumber(), snes.getLinearSolveIterations(), steps=0)
            raise _StepFailure() from None
        self._count(snes.getIterationNumber(), snes.getLinearSolveIterations(), steps=0)
        msg = self.check_state()
        if msg is not None:
            log.append((t0, h, msg, list(self._snes_history)))
            raise _StepFailure()

    def _try_step(self, h: float, log: list) -> float | None:
        """Compute a step of size ``h``; return the error estimate (adaptive) or None."""
        t0 = self._t
        self._attempt(t0, h, log)
        if not self.adaptive:
            return None
        self._u_full.assign(self.u)
        self.u.assign(self._u_start)
        self._attempt(t0, 0.5 * h, log)
        self._attempt(t0 + 0.5 * h, 0.5 * h, log)
        return self.error_norm(self.u, self._u_full)

    def step(self, dt_limit: float | None = None) -> float:
        """Take one accepted step (retrying/shrinking as needed); return its size.

        Parameters
        ----------
        dt_limit
            Do not step further than this (used by :meth:`advance_to`).

        Raises
        ------
        SolverDivergedError
            If the step still fails after ``max_retries`` halvings (or below
            ``dt_min``); the message lists the SNES history of every attempt.
        """
        return self._advance(dt_limit)

    def _advance(self, dt_limit: float | None) -> float:
        h = min(self._dt, self.dt_max)
        clipped = dt_limit is not None and dt_limit <= h * (1 + 1e-10)
        if clipped:
            h = dt_limit
        self._u_start.assign(self.u)
        log: list = []
        failures = 0
        while True:
            try:
                err = self._try_step(h, log)
            except _StepFailure:
                self.u.assign(self._u_start)
                failures += 1
                self.num_retries += 1
                if failures > self.max_retries or 0.5 * h < self.dt_min:
                    self._raise_diverged(log)
                logger.warning("%s: step at t = %.6g failed with dt = %.3g (%s); retrying "
                               "with dt = %.3g", self.label, self._t, h, log[-1][2], 0.5 * h)
                h, clipped = 0.5 * h, False
                continue
            if err is None:
                break
            self.last_error_estimate = err
            fac = self.safety * (self.tol * h / err) ** (1.0 / self.order) if err > 0 \
                else self.fac_max
            if err <= self.tol * h:
                if not clipped:
                    self._dt = min(max(h * min(self.fac_max, max(self.fac_min, fac)),
                                       self.dt_min), self.dt_max)
                break
            self.num_rejected += 1
            self.u.assign(self._u_start)
            h = max(h * min(0.9, max(self.fac_min, fac)), self.dt_min)
            clipped = False
            # error control is the adaptive method at work, not a fallback
            logger.debug("%s: step at t = %g rejected (error %.3g > %.3g); retrying with "
                         "dt = %g", self.label, self._t, err, self.tol * h, h)
            if h <= self.dt_min:
                self._raise_diverged(log + [(self._t, h, "step size fell below dt_min", [])])
        self._t += h
        self._t_const.assign(self._t)
        self._dt_const.assign(h)
        self._count(0, 0, steps=1)
        self._accepted(h)
        return h

    def _set_time(self, T: float):
        self._t = T
        self._t_const.assign(T)

    def _raise_diverged(self, log: list):
        lines = []
        for k, (t0, h, why, hist) in enumerate(log):
            lines.append(f"  attempt {k + 1}: t = {t0:.6g}, dt = {h:.3g}: {why}")
            lines.extend(f"      {it:3d} SNES residual {r:.6e}" for it, r in hist)
        history = log[-1][3] if log else []
        hint = self.failure_hint()
        raise SolverDivergedError(
            f"{type(self).__name__}: time step at t = {self._t:.6g} failed after "
            f"{len(log)} attempts (dt halved each time).\n" + "\n".join(lines)
            + (f"\n  Hint: {hint}" if hint else ""), history=history)

    # ------------------------------------------------------------ statistics
    def statistics(self) -> dict:
        """Accepted steps, rejected steps, retries, SNES and KSP iterations."""
        return {"steps": self.num_steps, "rejected": self.num_rejected,
                "retries": self.num_retries,
                "nonlinear_iterations": self.num_nonlinear_iterations,
                "linear_iterations": self.num_linear_iterations}

    # ------------------------------------------------------------ checkpoint
    def load_checkpoint(self, path: str, idx: int = -1) -> float:
        """Deprecated: use :func:`jkoflow.solvers.restart`.

        Restores the snapshot of step ``idx`` (default: the last) of a
        :class:`Checkpointer` file into this solver, after checking that the solver
        matches the checkpoint's record (as :func:`~jkoflow.solvers.restart` does);
        returns the restored time.
        """
        import warnings
        from .checkpointing import CheckpointError, _differences, _metadata, read_checkpoint
        warnings.warn("TimeIntegrator.load_checkpoint is deprecated; use "
                      "jkoflow.solvers.restart(path, build)", DeprecationWarning, stacklevel=2)
        mesh = ufl.domain.extract_unique_domain(self.u)
        snap = read_checkpoint(path, None if idx == -1 else idx, comm=mesh.comm, mesh=mesh)
        diff = _differences(snap.metadata, _metadata(self))
        if diff:
            raise CheckpointError(f"cannot load {path!r} into this solver:\n  "
                                  + "\n  ".join(diff))
        self.restore(snap._state, snap.info)
        return self._t
