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

Newton is started from a linearised guess (all slices at :math:`\rho_k`, potential
:math:`-\eta\,\delta J/\delta\rho(\rho_k)`, or the previous step's potential when
iterating), so the interior-point loop needs a handful of iterations per barrier
level; the barrier is scaled by :math:`\eta^2`, the size of the Hamilton--Jacobi
terms it competes with.
"""
from __future__ import annotations

from firedrake import Constant, Function, assemble, interpolate

import numpy as np
import ufl

from .benamou_brenier import BenamouBrenier, TransportResult
from .common import check_density, check_positive

__all__ = ["JKOStep", "W2Geodesic", "wasserstein_distance"]


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
    barrier
        Interior-point schedule (see :data:`~jkoflow.solvers.benamou_brenier.DEFAULT_BARRIER`);
        levels are relative to :math:`\eta^2`.
    solver_parameters, options_prefix, appctx
        Firedrake solver options; the prefix defaults to ``"jko"`` so that
        ``-jko_snes_monitor`` works from the command line.

    Examples
    --------
    >>> step = JKOStep(kl(geom, V), eta=0.1, N=4)          # doctest: +SKIP
    >>> result = step.solve(rho_k)                           # doctest: +SKIP
    >>> result.rho, result.cost, result.snes_iterations      # doctest: +SKIP
    """

    def __init__(self, energy, eta: float, N: int = 4, *, degree: int = 1,
                 variable: str | None = None, barrier: dict | None = None,
                 quadrature_degree: int | None = None, solver_parameters: dict | None = None,
                 solver_parameters_extra: dict | None = None,
                 options_prefix: str = "jko", appctx: dict | None = None):
        self.energy = energy
        self.eta = Constant(check_positive("eta (the JKO step size)", eta))
        self._eta_sq = Constant(float(self.eta) ** 2)
        if variable is None:
            variable = "log" if energy.entropic else "density"
        # J with the solver's quadrature rule (self.dx), as every other term and solver
        super().__init__(energy.geometry, N,
                         terminal=lambda rho: self.eta * energy.integrand(rho) * self.dx,
                         degree=degree, variable=variable, barrier=barrier,
                         mu_scale=self._eta_sq, quadrature_degree=quadrature_degree,
                         solver_parameters=solver_parameters,
                         solver_parameters_extra=solver_parameters_extra,
                         options_prefix=options_prefix, appctx=appctx)
        self._previous_phi = None
        self.continuation_path = []

    def _guess_potential(self) -> Function:
        g = self.energy.first_variation(self.density(self.start))
        return assemble(interpolate(-self.eta * g, self.V))

    def set_start(self, rho_k: Function | None = None, *, log_rho_k=None):
        """Set :math:`\\rho_k` from a density, or from its logarithm (log representation)."""
        if log_rho_k is not None:
            if self.variable != "log":
                raise ValueError("log_rho_k is only accepted with variable='log'")
            self.geometry.check_function(log_rho_k, "log-density")
            self.start.interpolate(log_rho_k)
            return
        if rho_k is None:
            raise ValueError("give the current density rho_k (or log_rho_k)")
        check_density(self.geometry, rho_k, strictly_positive=True, what="density rho_k")
        self.start.interpolate(self.represent(rho_k))

    def solve(self, rho_k: Function | None = None, eta: float | None = None, *,
              log_rho_k: Function | None = None, warm_start: bool = True,
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
            Start the potential from the previous step's (rescaled by the step ratio)
            instead of :math:`-\eta\,\delta J/\delta\rho(\rho_k)`.

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
            if self._previous_phi is not None:
                self._previous_phi *= float(self.eta) / old
        self._eta_sq.assign(float(self.eta) ** 2)
        what = f"{label} (eta = {float(self.eta):.4g}, N = {self.N})"
        if warm_start and self._previous_phi is not None:
            self.initial_guess(phi=self._previous_phi)
        else:
            self.initial_guess(phi=self._guess_potential())
        target = float(self.eta)

        def set_eta(value):
            self.eta.assign(value)
            self._eta_sq.assign(value ** 2)

        def trivial_guess():
            self.initial_guess(phi=self._guess_potential())

        result = self.solve_with_continuation(what, set_eta, target, trivial_guess)
        self._previous_phi = result.phi.copy(deepcopy=True)
        return result


class W2Geodesic(BenamouBrenier):
    r"""The :math:`W_2` geodesic between two densities of equal mass, with N slices.

    The intermediate densities :math:`\rho_1..\rho_{N-1}` and the potentials are the
    unknowns; :meth:`solve` returns a :class:`TransportResult` whose ``cost`` is
    :math:`W_2^2(\rho_0, \rho_N)` and whose ``slices`` are the displacement
    interpolation at :math:`s = i/N`.  The potentials are defined up to one common
    constant, a null space the Krylov solver removes.  Log-density unknowns only.
    """

    def __init__(self, geometry, N: int = 8, *, degree: int = 1, variable: str = "log",
                 barrier: dict | None = None, quadrature_degree: int | None = None,
                 solver_parameters: dict | None = None,
                 solver_parameters_extra: dict | None = None, options_prefix: str = "geodesic",
                 appctx: dict | None = None):
        if variable != "log":
            # Measured: with both ends fixed, the interior-point KKT system's singular
            # LU (constant potentials) leaves GMRES stagnating from the first step.
            raise ValueError(f"W2Geodesic needs log-density unknowns (variable='log'), "
                             f"got variable={variable!r}: the interior-point (density) "
                             "form is not supported for geodesics")
        super().__init__(geometry, N, terminal=None, degree=degree, variable=variable,
                         barrier=barrier, quadrature_degree=quadrature_degree,
                         solver_parameters=solver_parameters,
                         solver_parameters_extra=solver_parameters_extra,
                         options_prefix=options_prefix, appctx=appctx)

    def solve(self, rho0: Function | None = None, rho1: Function | None = None, *,
              log_rho0: Function | None = None,
              log_rho1: Function | None = None) -> TransportResult:
        """Geodesic from ``rho0`` to ``rho1`` (strictly positive, equal mass).

        Masses must agree to 1%; the end density is rescaled to the start's mass
        (representation differences, e.g. of :math:`e^{P_1}`, are that small).

        Log-densities may be given instead (``log_rho0``, ``log_rho1``).
        """
        for ends, rho, log_rho, what in ((self.start, rho0, log_rho0, "start density"),
                                         (self.end, rho1, log_rho1, "end density")):
            if log_rho is not None:
                self.geometry.check_function(log_rho, what)
                ends.interpolate(log_rho)
            elif rho is not None:
                check_density(self.geometry, rho, strictly_positive=True, what=what)
                ends.interpolate(ufl.ln(rho))
            else:
                raise ValueError(f"give the {what} (or its logarithm)")
        m0, m1 = self.mass(self.start), self.mass(self.end)
        if abs(m0 - m1) > 1e-2 * max(m0, m1):
            raise ValueError(f"a W2 geodesic needs densities of equal mass, got {m0:.12g} "
                             f"and {m1:.12g}")
        # Homotopy parameter tau in (0, 1]: the end density is the geometric
        # interpolation rho0^(1-tau) rho1^tau renormalised to the start's mass (which
        # also removes representation differences, e.g. of exp of a P1 log-density),
        # so tau -> 0 is trivial.
        target_end = self.end.copy(deepcopy=True)
        log0 = self.start

        def set_tau(tau):
            end_log = Function(self.V).interpolate((1 - tau) * log0 + tau * target_end)
            shift = float(np.log(self.mass(self.start)
                                 / float(assemble(ufl.exp(end_log) * self.dx))))
            end_log.assign(end_log + shift)
            self.end.assign(end_log)

        def trivial_guess():
            guesses = [Function(self.V).interpolate(((self.N - i) * self.start + i * self.end)
                                                    / self.N) for i in range(1, self.N)]
            self.initial_guess(slices=guesses, phi=0.0)

        return self.solve_with_continuation(f"W2 geodesic (N = {self.N})", set_tau, 1.0,
                                            trivial_guess)


def wasserstein_distance(rho0: Function, rho1: Function, geometry, N: int = 8,
                         **kwargs) -> float:
    """:math:`W_2(\\rho_0, \\rho_1)` by the dynamic formulation (convenience wrapper)."""
    return W2Geodesic(geometry, N, **kwargs).solve(rho0, rho1).cost ** 0.5
