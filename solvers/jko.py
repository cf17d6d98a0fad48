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

import ufl

from .benamou_brenier import BenamouBrenier, TransportResult
from .common import SolverDivergedError, check_density, check_positive

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
                 options_prefix: str = "jko", appctx: dict | None = None):
        self.energy = energy
        self.eta = Constant(check_positive("eta (the JKO step size)", eta))
        self._eta_sq = Constant(float(self.eta) ** 2)
        if variable is None:
            variable = "log" if energy.entropic else "density"
        super().__init__(energy.geometry, N, terminal=lambda rho: self.eta * energy.form(rho),
                         degree=degree, variable=variable, barrier=barrier,
                         mu_scale=self._eta_sq, quadrature_degree=quadrature_degree,
                         solver_parameters=solver_parameters, options_prefix=options_prefix,
                         appctx=appctx)
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
        saved = self.w.copy(deepcopy=True)
        try:
            result = self.run(what)
        except SolverDivergedError as err:
            self.w.assign(saved)
            result = self._continuation(what, err)
        self._previous_phi = result.phi.copy(deepcopy=True)
        return result

    # ------------------------------------------------------ continuation
    def _extrapolate(self, ratio: float):
        """Scale the current transport (at some eta) to eta * ratio: potentials
        linearly, densities geometrically about rho_k (so they stay positive)."""
        us, phis = self.unknown_slices()
        for p in phis:
            p.assign(ratio * p)
        for u in us:
            if self.variable == "log":
                u.assign(self.start + ratio * (u - self.start))
            else:
                u.interpolate(ufl.exp((1 - ratio) * ufl.ln(self.start) + ratio * ufl.ln(u)))

    def _continuation(self, what: str, first_error: SolverDivergedError) -> TransportResult:
        """Globalisation by continuation in eta: from eta/4 (or less) up to eta,
        each solve starting from the previous one extrapolated linearly in eta."""
        target = float(self.eta)
        reached, good = 0.0, None
        trial = target / 4
        snes_total, ksp_total, levels, path = 0, 0, [], []
        while reached < target:
            if good is None:
                self.eta.assign(trial)
                self.initial_guess(phi=self._guess_potential())
            else:
                self.w.assign(good)
                self._extrapolate(trial / reached)
            self.eta.assign(trial)
            self._eta_sq.assign(trial ** 2)
            try:
                its, lits, lev = self.solve_levels(f"{what}, continuation at eta = {trial:.4g}")
            except SolverDivergedError as err:
                path.append((trial, "failed"))
                if trial - reached < target / 64:
                    self.eta.assign(target)
                    self._eta_sq.assign(target ** 2)
                    raise SolverDivergedError(
                        f"{what}: Newton failed, and so did continuation in eta "
                        f"(path: {path}).\nFirst failure:\n{first_error}\nLast failure:\n{err}",
                        history=err.history, reason=err.reason) from None
                trial = reached + 0.5 * (trial - reached)
                continue
            snes_total, ksp_total, levels = snes_total + its, ksp_total + lits, levels + lev
            path.append((trial, its))
            reached, good = trial, self.w.copy(deepcopy=True)
            trial = min(target, reached + 2 * (reached - (path[-2][0] if len(path) > 1 and
                                                           path[-2][1] != "failed" else 0.0)))
        self.continuation_path = path
        return self.result(snes_total, ksp_total, levels)
