r"""One JKO step, and Wasserstein geodesics, by the dynamic Benamou--Brenier problem.

A JKO step of size :math:`\eta` for an energy :math:`J` is

.. math::

    \rho_{k+1} = \operatorname*{argmin}_\rho\ \frac{W_2^2(\rho_k,\rho)}{2\eta} + J(\rho),

posed here in its dynamic form (see :mod:`jkoflow.solvers.benamou_brenier`) with
terminal term :math:`\eta J(\rho_N)`: the intermediate densities are a discrete
geodesic from :math:`\rho_k` to :math:`\rho_{k+1}`, and at the solution
:math:`\phi_N \approx -\eta\,\delta J/\delta\rho(\rho_{k+1})`.

With the end density prescribed instead, the same machinery computes the
:math:`W_2` geodesic and distance between two densities (:class:`W2Geodesic`).

Newton is started from the potential :math:`-\eta\,\delta J/\delta\rho(\rho_k)` (or,
when iterating, the previous step's potential, scaled by the ratio of the step sizes)
and from guessed slices.

*Log unknowns.*  The slices start on the straight line
:math:`l_i^{(0)} = l_k + \tfrac{i}{N}\delta` to the end predicted by one linearly
implicit Euler step of the gradient flow (:mod:`jkoflow.solvers.predictor`: one scalar
linear solve), with :math:`\delta` bounded below by
:math:`-`:attr:`JKOStep.MAX_PREDICTED_LOG_FALL`.  Where the density spreads, the far
tails rise by tens of log units in one step, and Newton from flat slices
(:math:`l_i = l_k`, ``predictor=False``) walks them up one or two units per
iteration.  On the 2D bump of ``benchmarks/cold_start.py`` (KL, :math:`N = 8`,
:math:`\eta = 0.2`) a cold step takes 8--11 Newton iterations instead of 67--74 with
continuation in :math:`\eta`, and at :math:`N = 4`, :math:`\eta = 0.05` 6--9 instead
of 16--30.  The same guess serves steps that continue the previous one: there it does
as well as extrapolating the previous increment did (2D bump, 48² cells: 5, 5, 4
against 6, 5, 4).

*Density unknowns* (every non-entropic energy by default, and any energy with
``variable="density"``).  The slices start strictly inside,
:math:`(1-\theta)\rho_k + \theta\bar\rho`, so :math:`\rho_k` may vanish on open sets;
the barrier's units are those of the potential,
:math:`\Phi = \eta\,\operatorname{osc}\delta J/\delta\rho`
(:mod:`jkoflow.solvers.interior_point`).  When :math:`\rho_k` is the previous step's
result, the slices are predicted by the previous increment
:math:`\delta = \rho_k - \rho_{k-1}` (scaled by the ratio of the step sizes):

.. math::

    \rho_i^{(0)} \propto (1-\theta_w)\,\max\bigl(\rho_k + \tfrac{i}{N}\,\delta,\,
    0\bigr) + \theta_w\bar\rho, \qquad i = 1, \dots, N,

each rescaled to the mass of :math:`\rho_k`, with a smaller mix :math:`\theta_w`
(barrier option ``warm_mix``) than the cold start's.  The interior point then starts
near its central path: on the steep-tails cases of ``benchmarks/steep_tails.py`` a
warm step took 17--19 Newton iterations instead of 20--25, the first barrier level
4--6 instead of 8--14 (measured with barrier problems solved to :math:`10\hat\mu`,
before the looser rule of :mod:`jkoflow.solvers.interior_point`).  A warm start of
density unknowns that fails is retried once from the cold start (logged) before any
continuation.
"""
from __future__ import annotations

from functools import cached_property

from firedrake import Constant, Function, assemble, interpolate
from firedrake.petsc import PETSc

import numpy as np
import ufl

from .benamou_brenier import BenamouBrenier, TransportResult
from .common import (SolverDivergedError, check_density, check_positive, global_max,
                     global_min)
from .predictor import LogIncrementPredictor

__all__ = ["JKOStep", "W2Geodesic", "wasserstein_distance", "CORRECTIONS"]

#: Valid ``correction`` values of :class:`JKOStep`: plain JKO, or JKO on the
#: implicit-bias-corrected energy :math:`F_\eta = J + (\eta/4) I_J`.
CORRECTIONS = (None, "implicit-bias")

#: Log-densities below this are treated as zero density in the linearisation of the
#: corrected term (keeps :math:`e^{-l}` finite: :math:`e^{700} < 10^{305}`).
_LOG_FLOOR = -700.0


def check_correction(correction):
    """Return ``correction`` if it is one of :data:`CORRECTIONS`, else raise ``ValueError``."""
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; valid: "
                         f"{', '.join(repr(c) for c in CORRECTIONS)}")
    return correction


class JKOStep(BenamouBrenier):
    r"""One JKO step :math:`\rho_k \mapsto \rho_{k+1}` for an energy, with N time slices.

    Parameters
    ----------
    energy
        A :class:`jkoflow.solvers.Energy`; its geometry is used.
    eta
        The step size :math:`\eta > 0` (may be changed per :meth:`solve`).
    N
        Number of transport-time slices.
    degree
        :math:`P_k` degree of densities and potentials.
    variable
        ``"log"`` (log-density unknowns; the default for entropic energies, which then
        need :math:`\rho_k > 0`) or ``"density"`` (interior point; the default
        otherwise; accepts densities that vanish on open sets, and steep tails, for
        every energy).  A step is built before it sees data; to choose from the data
        use :func:`~jkoflow.solvers.representation.choose_variable`, as
        :class:`~jkoflow.solvers.JKOScheme` does by default.
    barrier
        Interior-point options (see
        :data:`~jkoflow.solvers.interior_point.DEFAULT_BARRIER`).
    correction
        ``None`` (plain JKO, terminal term :math:`\eta J`) or ``"implicit-bias"``
        (terminal term :math:`\eta F_\eta`, :math:`F_\eta = J + (\eta/4) I_J`, see
        :meth:`~jkoflow.solvers.Energy.corrected_form`): a second-order scheme.
    quadrature_degree, quadrature
        The quadrature of every integral (:class:`~jkoflow.solvers.BenamouBrenier`):
        Gauss (default) or ``quadrature="vertex"`` (:math:`P_1`), whose log steps the
        ``"ldlt"`` solver takes 1.4--1.7 times faster.
    predictor
        Log unknowns: start Newton's slices on the line to the linearly implicit Euler
        prediction (``True``, the default; module docstring) or at :math:`l_k`
        (``False``).  Its linear solve has the step's options prefix followed by
        ``predictor_`` (``-jko_predictor_ksp_view``).  Density unknowns have their own start and
        accept only ``True``.
    solver_parameters, options_prefix, appctx
        Firedrake solver options; the prefix defaults to ``"jko"`` so that
        ``-jko_snes_monitor`` works from the command line.

    Examples
    --------
    >>> step = JKOStep(kl(geom, V), eta=0.1, N=4)          # doctest: +SKIP
    >>> result = step.solve(rho_k)                           # doctest: +SKIP
    >>> result.rho, result.cost, result.snes_iterations      # doctest: +SKIP

    Raises
    ------
    ValueError
        For an unknown ``correction`` (the message names the valid ones), or
        ``predictor=False`` with density unknowns.

    Notes
    -----
    With ``correction="implicit-bias"`` the step minimises
    :math:`W_2^2/(2\eta) + J + (\eta/4)I_J`.  For entropy and KL,
    :math:`I_J = \int|\nabla\rho|^2/\rho + 2\nabla\rho\cdot\nabla V + |\nabla V|^2\rho`
    is the (jointly convex) Fisher information plus terms linear in :math:`\rho`, so
    the discrete step stays convex in the densities and well posed.  For the porous
    medium energy, :math:`I_J = m^2\int\rho^{2m-3}|\nabla\rho|^2`, convex in
    :math:`\rho` only for :math:`m \le 3/2`; beyond, the step is a nonconvex problem
    that Newton may still solve but with no uniqueness guarantee (measured in 1D for
    :math:`m = 2` and :math:`3/2`: as many Newton iterations as plain JKO, and
    :math:`F_\eta` decreasing).  For :math:`m < 2` the expression of
    :math:`\nabla U'(\rho)` carries :math:`\rho^{m-2}`, so :math:`F_\eta` of data
    vanishing on open sets evaluates to NaN (interior-point iterates are positive).
    In log unknowns the first variation is :math:`l + 1 + V`, never
    :math:`\log e^l`.
    """

    def __init__(self, energy, eta: float, N: int = 4, *, degree: int = 1,
                 variable: str | None = None, barrier: dict | None = None,
                 correction: str | None = None, quadrature_degree: int | None = None,
                 quadrature: str = "gauss", predictor: bool = True,
                 solver_parameters: dict | None = None,
                 solver_parameters_extra: dict | None = None,
                 options_prefix: str = "jko", appctx: dict | None = None):
        self.energy = energy
        self.eta = Constant(check_positive("eta (the JKO step size)", eta))
        self.correction = check_correction(correction)
        if variable is None:
            variable = "log" if energy.entropic else "density"
        # J (or F_eta) with the solver's quadrature rule (self.dx), as every other term
        super().__init__(energy.geometry, N, terminal=self._terminal,
                         degree=degree, variable=variable, barrier=barrier,
                         quadrature_degree=quadrature_degree, quadrature=quadrature,
                         solver_parameters=solver_parameters,
                         solver_parameters_extra=solver_parameters_extra,
                         options_prefix=options_prefix, appctx=appctx)
        self._previous_phi = None
        self._previous_increment = self._previous_end = None
        self._guessed_slices = None
        if not predictor and self.variable != "log":
            raise ValueError("predictor=False applies to log unknowns only (density "
                             "unknowns start from the interior point's guess)")
        #: Whether log steps start from the linearised slices (else flat slices).
        self.predictor = bool(predictor)
        self._predictor = None
        self.continuation_path = []

    def _terminal(self, rho) -> ufl.Form:
        r"""The terminal term :math:`\eta J(\rho_N)` or :math:`\eta F_\eta(\rho_N)`
        (without its Fisher-information part where :meth:`nodal_terminal` takes it)."""
        if self.correction is None:
            return self.eta * self.energy.integrand(rho) * self.dx
        if self._nodal_correction:
            return self.eta * self.corrected_energy.integrand(rho) * self.dx
        return self.eta * self.corrected_energy.corrected_form(
            rho, self.eta, self._log_of_end(rho), dx=self.dx)

    @cached_property
    def corrected_energy(self):
        r"""The energy whose :math:`F_\eta` the corrected steps minimise.

        For log unknowns and an entropic energy, :meth:`limit_energy` (:math:`V`
        replaced by :math:`\Pi_h V`): the step's own implicit bias is
        :math:`-(\eta/4)\int\rho|\nabla_g(l + \Pi_h V)|^2`, the metric curvature of
        its spatial limit, so the correction must be that term for the two to cancel.
        With :math:`V` itself they differ by :math:`O(\eta h^k)`, an
        :math:`O(\eta)` error that measurably flattens the second order on coarse
        meshes (``demos/implicit_bias.py``, disk, P2: local rates 0.8, 0.6 against
        1.6, 1.65 with :math:`\Pi_h V`).  Otherwise the energy itself (for density
        unknowns the analogue would project :math:`U'(\rho)`, a field of its own).
        The plain terminal term is unaffected: :math:`\int V\rho_N` and
        :math:`\int\Pi_h V\rho_N` have the same variation on :math:`P_k`.
        """
        if self.variable == "log" and self.energy.entropic:
            return self.limit_energy()
        return self.energy

    def check_preconditioner(self, pc: str):
        """As :meth:`~jkoflow.solvers.BenamouBrenier.check_preconditioner`; in addition
        the ``"ldlt"`` solver refuses a corrected step whose Fisher-information term is
        not taken in the nodal densities (a non-entropic energy in log unknowns): its
        scaled Jacobian is not symmetric."""
        super().check_preconditioner(pc)
        if (pc.rsplit(".", 1)[-1] == "ScaledLDLTPC" and self.correction is not None
                and not self._nodal_correction):
            raise ValueError(
                "the 'ldlt' solver (ScaledLDLTPC) takes corrected steps only for entropic "
                f"energies (their Fisher term in the nodal densities); {self.energy.name!r} "
                "is not entropic.  Use the 'direct' solver")

    @property
    def _nodal_correction(self) -> bool:
        """Whether the corrected term is differentiated in the nodal densities
        (:meth:`nodal_terminal`): an entropic energy in log unknowns with the vertex
        rule."""
        return (self.correction is not None and self.variable == "log"
                and self.quadrature == "vertex" and self.energy.entropic)

    def nodal_terminal(self, log_rho):
        r"""With the vertex rule, the Fisher-information part
        :math:`\eta\,(\eta/4)\,I_J(e^{l_N})` of a corrected log step, whose row is its
        derivative with respect to the nodal density :math:`e^{l_{N,j}}`, taken as
        :math:`e^{-l_{N,j}}\,\partial/\partial l_{N,j}`.  :math:`I_J` contains
        :math:`\nabla l`, which the placeholder stationarity (:meth:`_log_of_end`)
        would differentiate through a linearised logarithm that is not nodal; this way
        every row is a derivative with respect to the nodal densities and the Newton
        system, scaled by them, is symmetric (the ``"ldlt"`` solver applies).
        Parameters and return value as in
        :meth:`~jkoflow.solvers.BenamouBrenier.nodal_terminal`; ``None`` without a
        correction, with density unknowns, Gauss quadrature or a non-entropic energy.
        """
        if not self._nodal_correction:
            return None
        return (self.eta * (self.eta / 4)
                * self.corrected_energy.curvature_form(ufl.exp(log_rho), log_rho, dx=self.dx))

    def _log_of_end(self, rho):
        r""":math:`\log\rho_N` for the corrected term, or ``None`` (density unknowns or
        a non-entropic energy).

        ``rho`` is the Lagrangian's placeholder :math:`R` for :math:`e^{l_N}`, in which
        the stationarity is taken.  The logarithm is linearised about the
        substitution, :math:`l_N + (R - e^{l_N})e^{-l_N}`: exact value and first
        derivative :math:`1/R` there, with no logarithm of a tiny density.
        """
        if self.variable != "log" or not self.energy.entropic:
            return None
        l = self._placeholder_logs[rho]
        return l + (rho - ufl.exp(l)) * ufl.exp(-ufl.max_value(l, _LOG_FLOOR))

    def stepped_form(self, rho, log_rho=None) -> ufl.Form:
        r"""The energy the steps decrease, with the solver's quadrature: :math:`J`, or
        :math:`F_\eta` (current :math:`\eta`) with ``correction="implicit-bias"``."""
        if self.correction is None:
            return self.energy.integrand(rho) * self.dx
        return self.corrected_energy.corrected_form(rho, self.eta, log_rho, dx=self.dx)

    def limit_energy(self):
        r"""The energy whose WGF, discretised in space like this step, is the step's
        limit :math:`\eta \to 0`: the reference to compare JKO iterates with when
        measuring the time error alone.

        For log unknowns and an entropic energy the terminal stationarity gives
        :math:`\phi_N = -\eta\,(l_N + U'(1) + \Pi_h V) + O(\eta^2)`, with
        :math:`\Pi_h` the :math:`L^2` projection onto the step's :math:`P_k` space
        (with the step's quadrature), because :math:`l_N` already lies in it; summing the
        slice continuity equations then gives, as :math:`\eta \to 0`,

        .. math::

            \int_M \partial_t e^{l}\,v = -\int_M e^{l}\langle\nabla_g(l + \Pi_h V),
            \nabla_g v\rangle_g \quad \forall v \in P_k,

        the log form of :class:`~jkoflow.solvers.WassersteinGradientFlow` for the
        energy with potential :math:`\Pi_h V`.  With :math:`V` itself the two
        semi-discretisations differ by :math:`O(h^{k+1})`, a floor under any measured
        JKO--WGF difference (on the coarse sphere of ``demos/implicit_bias.py``, P1,
        :math:`V = -2x_3` on curved cells: 3e-3 in :math:`L^1`).

        Raises
        ------
        ValueError
            For density unknowns or a non-entropic energy: there the limit projects
            :math:`U'(\rho)` too, which is not a WGF of any energy on the same space.
        """
        if self.variable != "log" or not self.energy.entropic:
            raise ValueError("limit_energy needs log unknowns and an entropic energy (the "
                             "limit of a density-unknown step projects U'(rho) as well)")
        return self.energy.with_projected_potential(self.V, dx=self.dx)

    def _first_variation_at_start(self):
        rho = (self.density(self.start) if self.variable == "log"
               else self.interior_start(self.start))
        return self.energy.first_variation(rho)

    def _guess_potential(self) -> Function:
        return assemble(interpolate(-self.eta * self._first_variation_at_start(), self.V))

    def potential_scale(self) -> float:
        r""":math:`\Phi = \eta\,(\max - \min)\,\delta J/\delta\rho` at the interior
        start (nodal), the size of the potentials; a :math:`10^{-8}` fraction of the
        squared domain diameter guards against a flat first variation."""
        g = assemble(interpolate(self._first_variation_at_start(), self.V))
        with g.dat.vec_ro as v:
            osc = v.max()[1] - v.min()[1]
        return float(self.eta) * osc + 1e-8 * super().potential_scale()

    def set_start(self, rho_k: Function | None = None, *, log_rho_k=None):
        """Set :math:`\\rho_k` from a density, or from its logarithm (log representation)."""
        if log_rho_k is not None:
            if self.variable != "log":
                raise ValueError("log_rho_k is only accepted with variable='log'")
            self.geometry.check_function(log_rho_k, "log-density")
            if isinstance(log_rho_k, Function) and log_rho_k.function_space() == self.V:
                self.start.assign(log_rho_k)
            else:
                self.start.interpolate(log_rho_k)
            return
        if rho_k is None:
            raise ValueError("give the current density rho_k (or log_rho_k)")
        check_density(self.geometry, rho_k, strictly_positive=self.variable == "log",
                      what="density rho_k")
        self.start.interpolate(self.represent(rho_k))

    def solve(self, rho_k: Function | None = None, eta: float | None = None, *,
              log_rho_k: Function | None = None, warm_start: bool | None = None,
              label: str = "JKO step") -> TransportResult:
        r"""Compute :math:`\rho_{k+1}` from :math:`\rho_k`.

        Parameters
        ----------
        rho_k
            The current density (a ``Function`` on the same mesh; it is interpolated
            into the solver's space, as its logarithm for ``variable="log"``).
        log_rho_k
            Alternatively, :math:`\\log\\rho_k` (exact chaining of log-density steps).
        eta
            A new step size, or ``None`` to keep the current one.
        warm_start
            Start from the previous step (module docstring): its potential (rescaled
            by the step ratio) instead of :math:`-\eta\,\delta J/\delta\rho(\rho_k)`,
            and, for chained steps with density unknowns, the slices predicted by its
            increment (a failed warm start of density unknowns is then retried cold).
            Log unknowns start from the linearised slices either way.  ``None``: warm
            for log unknowns whenever there is a previous step, for density unknowns when
            ``rho_k`` is the previous step's result (chained steps, as in
            :class:`~jkoflow.solvers.JKOScheme`); ``True``: warm whenever there is a
            previous step; ``False``: cold.  (The potential
            alone is no warm start for the interior point, whose slices and
            central-path duals it does not match: Barenblatt m = 2 on 24x24 cells,
            20--22 Newton iterations per step cold against 22--24 with it.)

        Returns
        -------
        TransportResult
            ``rho`` (the new density), ``phi``, ``slices`` (the discrete geodesic),
            ``cost`` (:math:`W_2^2(\rho_k,\rho_{k+1})`), iteration counts and barrier levels.

        Raises
        ------
        ValueError
            For a density on another mesh, with NaNs, negative values (or zero values
            for an entropic energy), or zero mass; for ``eta <= 0``.
        SolverDivergedError
            If Newton fails at some barrier level (the message holds the history).
        """
        self.set_start(rho_k, log_rho_k=log_rho_k)
        self.continuation_path = []
        if eta is not None:
            old = float(self.eta)
            self.eta.assign(check_positive("eta (the JKO step size)", eta))
            for previous in (self._previous_phi, self._previous_increment):
                if previous is not None:
                    previous *= float(self.eta) / old
        what = f"{label} (eta = {float(self.eta):.4g}, N = {self.N})"
        if warm_start is None:
            warm_start = self.variable == "log" or self._continues_previous_step()
        warm = warm_start and self._previous_phi is not None
        if warm:
            self.initial_guess(slices=self._predicted_slices(), phi=self._previous_phi)
        else:
            self.initial_guess(slices=self._linearised_slices(), phi=self._guess_potential())
        target = float(self.eta)

        def set_eta(value):
            self.eta.assign(value)

        def cold_guess():
            self.initial_guess(slices=self._linearised_slices(), phi=self._guess_potential())

        try:
            # Only the interior point's warm start is retried cold: with log unknowns
            # the cold start is no safer, and continuation starts from it anyway.
            result = self.solve_with_continuation(what, set_eta, target, cold_guess,
                                                  warm=warm and self.variable == "density")
        except SolverDivergedError as err:
            raise SolverDivergedError(f"{err}{self._steep_tails_hint()}", history=err.history,
                                      reason=err.reason) from None
        self._previous_phi = result.phi.copy(deepcopy=True)
        self._remember_increment(result.rho, self.start)
        return result

    def _remember_increment(self, end, start) -> None:
        """Density unknowns: keep the last step's end and increment, for the warm
        start of a chained step (log unknowns start from the linearised slices and
        need neither)."""
        if self.variable != "density":
            return
        if self._previous_increment is None:
            self._previous_increment = Function(self.V, name="previous_increment")
            self._previous_end = Function(self.V, name="previous_end")
        self._previous_end.interpolate(end)
        self._previous_increment.interpolate(end - start)

    def continue_from(self, rho_previous: Function, rho_k: Function, phi: Function):
        r"""Warm-start the next :meth:`solve` from ``rho_k`` as if this solver had just
        taken the step :math:`\rho_{k-1} \to \rho_k` with transport potential ``phi``
        (the module docstring's warm start): for a solver that takes over a run from
        another, e.g. :class:`~jkoflow.solvers.JKOScheme` changing from log to density
        unknowns.

        Parameters
        ----------
        rho_previous, rho_k
            :math:`\rho_{k-1}` and :math:`\rho_k`: densities (not log-densities),
            interpolated into this solver's space.  The next solve warm-starts when it
            is given ``rho_k``.
        phi
            The transport potential of that step, for the step size this solver was
            built with (a later ``eta`` rescales it).
        """
        self._previous_phi = Function(self.V).interpolate(phi)
        self._remember_increment(rho_k, rho_previous)

    def _continues_previous_step(self) -> bool:
        """Whether :math:`\rho_k` is the previous step's result (to round-off): the
        steps are chained, and the previous increment predicts this one."""
        if self._previous_increment is None:
            return False
        diff = Function(self.V).assign(self.start - self._previous_end)
        with diff.dat.vec_ro as d, self.start.dat.vec_ro as r:
            return d.norm(PETSc.NormType.INFINITY) <= 1e-12 * r.norm(PETSc.NormType.INFINITY)

    #: Bound on the predicted fall of each nodal log-density (:math:`\delta \ge -3`).
    #: The linearised density update :math:`\rho_k(1 + \delta)` cannot follow tails
    #: that fall by tens of log units (a confining potential with large
    #: :math:`\eta V''`): there its :math:`\delta` is far below :math:`-1` and
    #: meaningless.  Measured on the steep-tails cases (``benchmarks/steep_tails.py``,
    #: first step, log unknowns): 61--246 Newton iterations unbounded, 31--50 with the
    #: bound (34--50 from flat slices); no effect on the 2D bump, whose tails rise.
    MAX_PREDICTED_LOG_FALL = 3.0

    def _slice_guesses(self) -> list:
        """Work space for the guessed slices (one ``Function`` per unknown slice)."""
        if self._guessed_slices is None:
            self._guessed_slices = [Function(self.V, name=f"slice_guess_{i}")
                                    for i in range(1, self.N + 1)]
        return self._guessed_slices

    def _linearised_slices(self) -> list | None:
        r"""Log unknowns: :math:`l_k + \tfrac{i}{N}\delta`, :math:`\delta` the
        linearly implicit Euler increment (:class:`LogIncrementPredictor`, built at the
        first use); density unknowns: ``None`` (the interior start)."""
        if self.variable != "log" or not self.predictor:
            return None
        if self._predictor is None:
            self._predictor = LogIncrementPredictor(
                self.energy, self.start, self.eta, self.dx,
                options_prefix=f"{self.solver.options_prefix}predictor_")
        delta = ufl.max_value(self._predictor.solve(), -self.MAX_PREDICTED_LOG_FALL)
        slices = self._slice_guesses()
        for i, f in enumerate(slices, start=1):
            f.interpolate(self.start + (i / self.N) * delta)
        return slices

    def _predicted_slices(self) -> list | None:
        """The warm-start slices (module docstring): the linearised slices for log
        unknowns, the previous increment's prediction for density unknowns (``None``
        unless the step continues the previous one)."""
        if self.variable == "log":
            return self._linearised_slices()
        if not self._continues_previous_step():
            return None
        theta = self.barrier["warm_mix"]
        rho_bar, mass = self.mean_density(), self.mass(self.start)
        slices = self._slice_guesses()
        for i, f in enumerate(slices, start=1):
            f.interpolate((1 - theta) * ufl.max_value(
                self.start + (i / self.N) * self._previous_increment, 0.0) + theta * rho_bar)
            f *= mass / self.mass(f)
        return slices

    #: Range of the start log-density above which a failed log-unknown step says
    #: that density unknowns are the remedy.
    STEEP_TAILS = 100.0

    def _steep_tails_hint(self) -> str:
        """Advice appended to a failed log-unknown step whose data have steep tails."""
        if self.variable != "log":
            return ""
        spread = global_max(self.start) - global_min(self.start)
        if spread <= self.STEEP_TAILS:
            return ""
        return (f"\n  The start log-density spans {spread:.0f} units (steep tails).  With "
                "log unknowns each Newton iteration moves a tail value by one or two "
                "units; variable='density' (the interior point) floors the tails instead "
                "and takes such steps in about 25 iterations.")


class W2Geodesic(BenamouBrenier):
    r"""The :math:`W_2` geodesic between two densities of equal mass, with N slices.

    The intermediate densities :math:`\rho_1..\rho_{N-1}` and the potentials are the
    unknowns; :meth:`solve` returns a :class:`TransportResult` whose ``cost`` is
    :math:`W_2^2(\rho_0, \rho_N)` and whose ``slices`` are the displacement
    interpolation at :math:`s = i/N`.

    ``variable="log"`` (default) needs strictly positive end densities; the potentials
    are then defined up to one common constant, a null space the Krylov solver
    removes.  ``variable="density"`` (interior point) takes densities that vanish on
    open sets (compactly supported bumps); there the constant is fixed by a
    :math:`10^{-12}`-relative zeroth-order term in the continuity equations.
    ``quadrature="vertex"`` with ``solver_parameters="ldlt"`` solves log geodesics by
    a symmetric factorisation (:mod:`~jkoflow.solvers.symmetric_solve`).
    """

    def __init__(self, geometry, N: int = 8, *, degree: int = 1, variable: str = "log",
                 barrier: dict | None = None, quadrature_degree: int | None = None,
                 quadrature: str = "gauss", solver_parameters: dict | None = None,
                 solver_parameters_extra: dict | None = None, options_prefix: str = "geodesic",
                 appctx: dict | None = None):
        super().__init__(geometry, N, terminal=None, degree=degree, variable=variable,
                         barrier=barrier, quadrature_degree=quadrature_degree,
                         quadrature=quadrature, solver_parameters=solver_parameters,
                         solver_parameters_extra=solver_parameters_extra,
                         options_prefix=options_prefix, appctx=appctx)
        #: Whether a geodesic has been computed (its state is the next solve's guess).
        self.solved = False

    def solve(self, rho0: Function | None = None, rho1: Function | None = None, *,
              log_rho0: Function | None = None,
              log_rho1: Function | None = None) -> TransportResult:
        """Geodesic from ``rho0`` to ``rho1`` (equal mass; strictly positive for log
        unknowns, non-negative for density unknowns).

        Masses must agree to 1%; the end density is rescaled to the start's mass
        (representation differences, e.g. of :math:`e^{P_1}`, are that small).

        Log-densities may be given instead (``log_rho0``, ``log_rho1``).
        """
        log = self.variable == "log"
        for ends, rho, log_rho, what in ((self.start, rho0, log_rho0, "start density"),
                                         (self.end, rho1, log_rho1, "end density")):
            if log_rho is not None:
                if not log:
                    raise ValueError("log-densities are only accepted with variable='log'")
                self.geometry.check_function(log_rho, what)
                ends.interpolate(log_rho)
            elif rho is not None:
                check_density(self.geometry, rho, strictly_positive=log, what=what)
                ends.interpolate(self.represent(rho))
            else:
                raise ValueError(f"give the {what} (or its logarithm)")
        m0, m1 = self.mass(self.start), self.mass(self.end)
        if abs(m0 - m1) > 1e-2 * max(m0, m1):
            raise ValueError(f"a W2 geodesic needs densities of equal mass, got {m0:.12g} "
                             f"and {m1:.12g}")
        # Homotopy parameter tau in (0, 1], used only if Newton fails: the end density
        # is the geometric (log) or linear (density) interpolation of the two ends,
        # renormalised to the start's mass (which also removes representation
        # differences, e.g. of exp of a P1 log-density), so tau -> 0 is trivial.
        target_end = self.end.copy(deepcopy=True)
        start = self.start

        def set_tau(tau):
            end = Function(self.V).interpolate((1 - tau) * start + tau * target_end)
            if log:
                shift = float(np.log(self.mass(self.start)
                                     / float(assemble(ufl.exp(end) * self.dx))))
                end.assign(end + shift)
            else:
                end.assign(end * (self.mass(self.start) / self.mass(end)))
            self.end.assign(end)

        def trivial_guess():
            guesses = []
            for i in range(1, self.N):
                lin = ((self.N - i) * self.start + i * self.end) / self.N
                guesses.append(Function(self.V).interpolate(
                    lin if log else self.interior_start(lin)))
            self.initial_guess(slices=guesses, phi=0.0)

        if not log or not self.solved:
            # The interior point needs a strictly interior start; log unknowns start
            # from the interpolation of the ends unless a previous geodesic's state is
            # there to start from.
            trivial_guess()
        result = self.solve_with_continuation(f"W2 geodesic (N = {self.N})", set_tau, 1.0,
                                              trivial_guess)
        self.solved = True
        return result


def wasserstein_distance(rho0: Function, rho1: Function, geometry, N: int = 8,
                         **kwargs) -> float:
    """:math:`W_2(\\rho_0, \\rho_1)` by the dynamic formulation (convenience wrapper;
    keyword arguments as :class:`W2Geodesic`).  Without ``variable``: log unknowns for
    strictly positive densities, density unknowns if either vanishes somewhere."""
    if "variable" not in kwargs:
        for rho, what in ((rho0, "start density"), (rho1, "end density")):
            check_density(geometry, rho, what=what)
        positive = min(global_min(rho0), global_min(rho1)) > 0
        kwargs["variable"] = "log" if positive else "density"
    return W2Geodesic(geometry, N, **kwargs).solve(rho0, rho1).cost ** 0.5
