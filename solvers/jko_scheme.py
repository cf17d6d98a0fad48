r"""The JKO scheme: iterated JKO steps on the time-stepping protocol.

.. math::

    \rho_{k+1} = \operatorname*{argmin}_\rho\ \frac{W_2^2(\rho_k,\rho)}{2\eta_k} + J(\rho),
    \qquad t_{k+1} = t_k + \eta_k .

Each step is a :class:`~jkoflow.solvers.jko.JKOStep` solve (built once, reused).  The
scheme is a :class:`~jkoflow.solvers.protocol.Stepper`, like the WGF and the JKO-Flow:
the same ``step()``/``advance_to(T)``/``run(n)``, observers ``obs(scheme)``, VTK
output with the same field names, checkpoints (:class:`~jkoflow.solvers.Checkpointer`)
and restart (:func:`~jkoflow.solvers.restart`).  After every step it also records
energy, mass, transport cost, iteration counts and barrier levels in
:attr:`JKOScheme.history` (with the unknowns each step used); the last step's
:class:`~jkoflow.solvers.benamou_brenier.TransportResult` is :attr:`JKOScheme.last_result`.
A step that needed continuation in :math:`\eta` is reported as a warning.

With ``correction="implicit-bias"`` each step is a JKO step on the corrected energy
:math:`F_\eta = J + (\eta/4) I_J`.  A JKO step of size :math:`\eta` tracks, to
:math:`O(\eta^2)`, the WGF of its energy minus :math:`(\eta/4)` times that energy's
curvature term (the implicit bias of Halmos & Hanin); applied to :math:`F_\eta` the
two :math:`\eta/4` terms cancel to first order, so the iterates follow the WGF of
:math:`J` itself to second order in :math:`\eta`.  The scheme stays variational:
:math:`F_\eta` decreases along the iterates (:meth:`JKOScheme.stepped_energy`, the
``stepped_energy`` history entry), mass is conserved exactly and positivity holds as
for plain JKO.  (With log unknowns the correction is built on the projected potential
:math:`\Pi_h V`, with density unknowns on :math:`V`: a scheme that changes its unknowns
changes :math:`F_\eta` by :math:`O(\eta h^{k+1})` at that step, and the recorded
``stepped_energy`` decreases from there on.)
"""
from __future__ import annotations

from functools import cached_property
from typing import Callable, Iterable

import ufl
from firedrake import Function

from .checkpointing import Checkpointer
from .common import FormValue, check_positive, global_min, logger, nodal_exp
from .jko import JKOStep
from .observers import VTKOutput
from .presets import resolve_parameters
from .protocol import Stepper
from .benamou_brenier import density_unknowns_supported
from .representation import choose_variable

__all__ = ["JKOScheme"]

#: Floor of the densities whose logarithm is output after a change to density unknowns.
_TINY = 1e-300


class JKOScheme(Stepper):
    r"""Iterate JKO steps :math:`\rho_0 \mapsto \rho_1 \mapsto \dots`.

    Parameters
    ----------
    energy
        The energy :math:`J`.
    rho0
        Initial density (non-negative; strictly positive for log unknowns), or ``None`` when
        ``log_rho0`` is given.
    eta
        Default step size.
    N, degree, barrier, correction, quadrature_degree, quadrature, solver_parameters, solver_parameters_extra, options_prefix, appctx
        Passed to :class:`~jkoflow.solvers.jko.JKOStep` (options prefix ``"jko"``).
    variable
        ``"log"`` or ``"density"`` unknowns (:class:`~jkoflow.solvers.jko.JKOStep`),
        or ``None`` (default) to choose from the data with
        :func:`~jkoflow.solvers.representation.choose_variable`: density unknowns for
        non-entropic energies, data that vanish somewhere, and steep tails (a
        predicted change of the log-density by more than 100 in one step); log
        unknowns otherwise.  Log unknowns chosen so are judged again before every
        step, at the current iterate and step size, and give way to density
        unknowns for the rest of the run when the tails have steepened past the
        limit (logged; the mass is carried over exactly and the new solver is
        warm-started from the last step).  The current choice is :attr:`variable`;
        each checkpointed snapshot records its own, and
        :func:`~jkoflow.solvers.restart` continues in it.
    log_rho0
        Initial log-density (exact for Gaussians with P2 in the log representation;
        with density unknowns its exponential is interpolated).
    observers
        Callables ``obs(scheme)`` called now and after each step (the protocol's one
        observer signature; the step's result is ``scheme.last_result``).
    vtk
        Path of a ``.pvd`` file to write the density (and log-density, transport
        potential) into: a :class:`~jkoflow.solvers.VTKOutput` observer.
    checkpoint
        Path of a checkpoint file receiving the state at every step: a
        :class:`~jkoflow.solvers.Checkpointer` observer with ``checkpoint_mode``.
    checkpoint_mode
        ``"new"`` (default: refuse an existing file), ``"overwrite"`` or ``"resume"``.
    k0, t0
        Step number and time of ``rho0`` (restart with :func:`~jkoflow.solvers.restart`
        instead: it restores the exact state).
    verbose
        Log every step at ``INFO`` level (otherwise at ``DEBUG``).
    """

    label = "JKO"

    def __init__(self, energy, rho0: Function | None, eta: float, N: int = 4, *,
                 log_rho0: Function | None = None, degree: int = 1,
                 variable: str | None = None, barrier: dict | None = None,
                 correction: str | None = None, quadrature_degree: int | None = None,
                 quadrature: str = "gauss", solver_parameters: dict | str | None = None,
                 solver_parameters_extra: dict | None = None,
                 options_prefix: str = "jko", appctx: dict | None = None,
                 observers: Iterable[Callable] = (), vtk: str | None = None,
                 checkpoint: str | None = None, checkpoint_mode: str = "new", k0: int = 0,
                 t0: float = 0.0, verbose: bool = False):
        self.energy = energy
        self.geometry = energy.geometry
        self.eta = check_positive("eta (the JKO step size)", eta)
        #: Whether the unknowns are chosen from the data (``variable=None``): then
        #: log unknowns are re-judged before every step and give way to density
        #: unknowns once a step's predicted log-density change exceeds the limit.
        self.chooses_variable = variable is None and energy.entropic
        if variable is None:
            variable = choose_variable(energy, self.eta, rho0, log_rho=log_rho0,
                                       degree=degree, what="JKO scheme")
        self._step_options = dict(degree=degree, barrier=barrier, correction=correction,
                                  quadrature_degree=quadrature_degree,
                                  quadrature=quadrature, solver_parameters=solver_parameters,
                                  solver_parameters_extra=solver_parameters_extra,
                                  options_prefix=options_prefix, appctx=appctx)
        self.jko = JKOStep(energy, self.eta, N, variable=variable,
                           **self._options_for(variable))
        self.variable = self.jko.variable
        self._switched_stats = (0, 0, 0)
        self._previous_rho = None
        # (no interior point with P2 on triangles: log unknowns stay, see choose_variable)
        self._may_change = density_unknowns_supported(self.geometry, degree)
        # The exact state is kept in the solver's representation (log-density for
        # entropic energies), so that chained steps conserve mass to round-off;
        # ``rho`` is its nodal density for output.
        self._state = Function(self.jko.V, name="jko_state")
        if rho0 is None and self.variable == "density":
            rho0 = Function(self.jko.V).interpolate(ufl.exp(log_rho0))
        if rho0 is not None:
            self.jko.set_start(rho0)
        else:
            self.jko.set_start(log_rho_k=log_rho0)
        self._state.assign(self.jko.start)
        self._rho = Function(self.jko.V, name="density")
        # (for a scheme that may change its unknowns, kept after a change to density
        # unknowns: the output fields stay the same)
        self._log_rho = (Function(self.jko.V, name="log_density")
                         if self.variable == "log" or self.chooses_variable else None)
        self.phi = Function(self.jko.V, name="transport_potential")
        self._update_rho()
        self._init_protocol(k0)
        self.t = float(t0)
        self.verbose = verbose
        self.history: list[dict] = []
        self.last_result = None
        self._record(None)
        if vtk:
            self.add_observer(VTKOutput(vtk))
        if checkpoint:
            self.add_observer(Checkpointer(checkpoint, mode=checkpoint_mode))
        for obs in observers:
            self.add_observer(obs)

    # ------------------------------------------------------------- state
    @property
    def state(self) -> Function:
        """The exact state (log-density or density) that checkpoints store."""
        return self._state

    @property
    def k(self) -> int:
        """The step number :math:`k` of :math:`\\rho_k` (alias of ``step_number``)."""
        return self.step_number

    @property
    def dt(self) -> float:
        """The default step :math:`\\eta`."""
        return self.eta

    @property
    def rho(self) -> Function:
        """:math:`\\rho_k` as a Function named ``"density"`` (nodal values)."""
        return self._rho

    @property
    def rho_expr(self):
        """:math:`\\rho_k` as a UFL expression of the exact state."""
        return self.jko.density(self._state)

    def _update_rho(self):
        if self.variable == "log":
            nodal_exp(self._state, self._rho)
            self._log_rho.assign(self._state)
            return
        self._rho.assign(self._state)
        if self._log_rho is not None:   # a run that changed to density unknowns
            self._log_rho.interpolate(ufl.ln(ufl.max_value(self._state, _TINY)))

    def energy_value(self) -> float:
        """:math:`J(\\rho_k)`, with the step solver's quadrature (the form is built once;
        :math:`0\\log 0 = 0`: :meth:`~jkoflow.solvers.Energy.value_integrand`)."""
        return self._energy_value()

    @cached_property
    def _energy_value(self) -> FormValue:
        return FormValue(self.energy.value_integrand(self.rho_expr) * self.jko.dx)

    @property
    def correction(self) -> str | None:
        """The step's correction (one of :data:`~jkoflow.solvers.jko.CORRECTIONS`)."""
        return self.jko.correction

    def stepped_energy(self) -> float:
        r"""The energy the steps decrease, at :math:`\rho_k`: :math:`F_\eta(\rho_k)` with
        the current step size for ``correction="implicit-bias"``, :math:`J(\rho_k)`
        otherwise (step solver's quadrature; collective)."""
        return self._stepped_value()

    @cached_property
    def _stepped_value(self) -> FormValue:
        # built once: F_eta holds the step's eta Constant, so it follows eta changes
        log_rho = self._state if self.variable == "log" and self.energy.entropic else None
        return FormValue(self.jko.stepped_form(self.rho_expr, log_rho))

    def mass(self) -> float:
        """:math:`\\int\\rho_k` with the step solver's quadrature (conserved exactly)."""
        return self.jko.mass(self._state)

    def output_functions(self) -> list[Function]:
        """``density``, ``log_density`` (log unknowns, or a scheme that chooses its
        unknowns: the logarithm of the density after a change), ``transport_potential``."""
        return [self._rho] + ([self._log_rho] if self._log_rho is not None else []) \
            + [self.phi]

    def checkpoint_metadata(self) -> dict:
        """The protocol's record plus ``N``, ``degree``, ``eta``, quadrature degree, and
        ``quadrature`` for the vertex rule."""
        meta = super().checkpoint_metadata()
        if self.chooses_variable:
            # the unknowns may change along the run: each snapshot records its own
            meta["representation"] = "auto"
        if self.correction is not None:
            meta.update(correction=self.correction)
        meta.update(N=self.jko.N, degree=self.jko.degree, eta=self.eta,
                    quadrature_degree=self.jko.dx.measure.metadata().get("quadrature_degree"))
        if self.jko.quadrature != "gauss":
            # (absent for the default rule: checkpoints written before it existed match)
            meta["quadrature"] = self.jko.quadrature
        return meta

    def snapshot_info(self) -> dict:
        info = super().snapshot_info()
        info["dt"] = float(self.history[-1].get("eta", self.eta))
        if self.chooses_variable:
            # the unknowns may change along the run: each snapshot records its own
            info["log_state"] = float(self.variable == "log")
        return info

    def _restore_state(self, state: Function, info: dict):
        self._state.assign(state)
        self.t = float(info["time"])
        self._previous_rho = None
        self._update_rho()
        self.phi.assign(0.0)

    def restore(self, state: Function, info: dict):
        """As :meth:`Stepper.restore`; the history restarts at the restored step."""
        super().restore(state, info)
        self.history = []
        self._record(None)

    # ------------------------------------------------------------ stepping
    def _record(self, result):
        energy = self.energy_value()
        entry = {"k": self.step_number, "t": self.t, "energy": energy,
                 # plain steps decrease J itself: no second assembly of the same form
                 "stepped_energy": self.stepped_energy() if self.correction else energy,
                 "mass": self.mass(),
                 "min_rho": global_min(self._rho)}
        if result is not None:
            entry.update(eta=float(self.jko.eta), variable=self.variable, cost=result.cost,
                         snes_iterations=result.snes_iterations,
                         linear_iterations=result.linear_iterations,
                         barrier_levels=result.barrier_levels)
        self.history.append(entry)
        return entry

    def step(self, eta: float | None = None) -> float:
        """One JKO step of size ``eta`` (default: the scheme's); returns the step size.

        The step's :class:`~jkoflow.solvers.benamou_brenier.TransportResult` is
        :attr:`last_result`.
        """
        eta = self.eta if eta is None else check_positive("eta (the JKO step size)", eta)
        label = f"JKO step {self.step_number + 1}"
        if self.chooses_variable and self.variable == "log" and self._may_change:
            self._judge_unknowns(eta, label)
        if self.variable == "log":
            if self.chooses_variable:
                self._previous_rho = self._rho.copy(deepcopy=True)
            result = self.jko.solve(eta=eta, log_rho_k=self._state, label=label)
            self._state.assign(result.log_rho)
        else:
            result = self.jko.solve(self._state, eta, label=label)
            self._state.assign(result.rho)
        if self.jko.continuation_path:
            logger.warning("%s: Newton failed at eta = %.4g; the step was globalised by "
                           "continuation in eta (path: %s)", label, eta,
                           self.jko.continuation_path)
        self._update_rho()
        self.phi.assign(result.phi)
        self.last_result = result
        self.t += eta
        self.step_number += 1
        entry = self._record(result)
        logger.log(20 if self.verbose else 10,
                   "JKO step %4d  t = %.4f  J = %.8g  W2^2 = %.3e  Newton its = %d",
                   self.step_number, self.t, entry["energy"], entry["cost"],
                   entry["snes_iterations"])
        self._notify()
        return eta

    def _options_for(self, variable: str) -> dict:
        """The step options for ``variable`` unknowns: the scheme's, except that the
        ``"ldlt"`` solver, which only log unknowns have, gives way to ``"direct"`` for
        density unknowns the scheme chose itself (logged)."""
        options = dict(self._step_options)
        params = resolve_parameters(options["solver_parameters"],
                                    options["solver_parameters_extra"])
        if (variable == "density" and self.chooses_variable
                and "ScaledLDLTPC" in str(params.get("pc_python_type", ""))):
            logger.info("JKO scheme: density unknowns solve with the 'direct' solver (the "
                        "'ldlt' solver needs log unknowns)")
            extra = {k: v for k, v in (options["solver_parameters_extra"] or {}).items()
                     if not k.startswith(("pc_", "ksp_"))}
            options.update(solver_parameters="direct", solver_parameters_extra=extra)
        return options

    def _judge_unknowns(self, eta: float, label: str):
        r"""Before a log-unknown step of a scheme that chooses its unknowns: change to
        density unknowns, for good, if the step's predicted log-density change
        (:func:`~jkoflow.solvers.representation.predicted_log_change`) at the current
        iterate exceeds the limit.  Steep tails steepen: on the double well at
        :math:`\eta = 0.05` the prediction is 92 at :math:`\rho_0` and 175 before
        step 2, where log unknowns kept throughout fail at step 4."""
        if choose_variable(self.energy, eta, log_rho=self._state, degree=self.jko.degree,
                           what=label) == "log":
            return
        logger.info("%s: the JKO scheme changes from log to density unknowns (the "
                    "tails have steepened) and keeps them", label)
        done = self.jko.solver_stats()
        self._switched_stats = tuple(a + b for a, b in zip(self._switched_stats, done))
        # the density of the log state, rescaled to its mass: mass stays exact
        mass = self.mass()
        rho = Function(self.jko.V).interpolate(self.rho_expr)
        # built at the previous step's size, whose potential warm-starts this one
        previous_eta = self.history[-1].get("eta", self.eta)
        self.jko = JKOStep(self.energy, previous_eta, self.jko.N, variable="density",
                           **self._options_for("density"))
        self.variable = "density"
        rho *= mass / self.jko.mass(rho)
        self._state.assign(rho)
        previous_phi = self.phi.copy(deepcopy=True)
        if self._previous_rho is not None:
            self.jko.continue_from(self._previous_rho, self._state, previous_phi)
        for cached in ("_energy_value", "_stepped_value"):
            self.__dict__.pop(cached, None)
        self._update_rho()

    def _advance(self, limit: float | None) -> float:
        return self.step(None if limit is None or limit >= self.eta * (1 - 1e-12)
                         else limit)

    def _set_time(self, T: float):
        self.t = T

    def solver_stats(self) -> tuple[int, int, int]:
        """(steps, Newton iterations, linear iterations) so far."""
        return tuple(a + b for a, b in zip(self._switched_stats, self.jko.solver_stats()))


def load_checkpoint(path: str, comm=None):
    """Removed: use :func:`jkoflow.solvers.restart` (it returns a solver at the exact
    state) or :func:`jkoflow.solvers.read_checkpoint` (densities)."""
    raise NotImplementedError(
        "jkoflow.solvers.load_checkpoint was removed: it returned the bare internal state "
        "(a log-density for entropic energies), which is not a density. Use "
        "jkoflow.solvers.restart(path, build) to continue a run, or "
        "jkoflow.solvers.read_checkpoint(path) to read densities")
