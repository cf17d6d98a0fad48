r"""The primal--dual interior-point method for density unknowns.

With density unknowns the discrete Benamou--Brenier problem
(:mod:`jkoflow.solvers.benamou_brenier`) has the constraints :math:`\rho_i \ge 0` on
every unknown slice.  They are handled by a log barrier written in primal--dual
form: nodal duals :math:`z_i \ge 0` enter the stationarity in :math:`\rho_i` as
:math:`-z_i`, and the complementarity, vertex-lumped, reads

.. math::

    \rho_{i,j}\,z_{i,j} = \mu\,\Delta s\,w \qquad\text{at every vertex } j,

with a **uniform** weight :math:`w = \bar\rho = \int\rho_0/|M|` (the mean density), so
that every vertex carries a barrier, including those where the data vanish.  The
barrier parameter is :math:`\mu = \hat\mu\,\Phi` with a dimensionless
:math:`\hat\mu` and a potential scale :math:`\Phi` computed from the problem
(:meth:`~jkoflow.solvers.BenamouBrenier.potential_scale`: :math:`\eta` times the
oscillation of :math:`\delta J/\delta\rho` for a JKO step): the duals have the units
of the potentials, so :math:`\hat\mu` measures the barrier's perturbation of the
Hamilton--Jacobi equations relative to their size, whatever the energy or the units.

The reduced problem in the densities is convex, and the method is the one that is
reliable for such problems (as in IPOPT):

* a strictly interior start (set by the caller, e.g. :math:`(1-\theta)\rho_k +
  \theta\bar\rho`, exact mass) with duals on the central path, :math:`z = \mu w/\rho`;
* Newton steps whose primal part (densities and potentials) and dual part are cut
  *separately* by the fraction-to-boundary rule with a fixed :math:`\tau`, followed by
  IPOPT's safeguard that keeps every dual within a factor :math:`\kappa_\Sigma` of its
  central value;
* the monotone barrier update: once the scaled KKT error of the barrier problem is
  below :math:`\kappa_\epsilon\hat\mu`, :math:`\hat\mu \leftarrow \max(\hat\mu_{\min},
  \min(\kappa_\mu\hat\mu, \hat\mu^{\theta_\mu}))`.

The barrier problems are solved loosely, :math:`\kappa_\epsilon = 300`: only the last
one, at :math:`\hat\mu_{\min}`, is solved to the final tolerance, and an intermediate
level is left as soon as its error is 300 times :math:`\hat\mu`, often after a Newton
step or two.  That is safe because :math:`\tau` stays at 0.99.  IPOPT's rule
:math:`\tau = \max(\tau_{\min}, 1-\hat\mu)` lets a step go to within :math:`\hat\mu`
of the boundary once :math:`\hat\mu` is small; together with loose barrier problems
it drove tail densities of :math:`10^{-17}` to underflow, and the steep-tails steps of
``tests/test_jko_tails.py`` failed with NaN residuals.  With :math:`\tau = 0.99` every
test passes.  On the 2D bump of ``benchmarks/variant_growth.py`` (32², N = 4, a cold
and two warm steps) KL takes 17, 17, 15 Newton iterations and the porous medium 11, 16,
15, where :math:`\kappa_\epsilon = 10` took 18, 20, 20 and 21, 24, 22 (with either
:math:`\tau` rule).  :math:`\kappa_\epsilon = 1000` saves a little more there (15, 13,
13 and 11, 11, 15) but piles up to 16 iterations on the last level of the hardest cases
of ``benchmarks/jko_iterations.py`` (Barenblatt, :math:`m = 3`; the geodesic), against
at most 12 with 300.  ``benchmarks/results/jko_iterations.md`` has the counts of every
case.

All of it runs inside **one** SNES solve: the step rule is the line-search pre-check,
the barrier update and the stopping rule are the convergence test (which recomputes
the residual after changing :math:`\mu`).  The scaled KKT error is the maximum of
the nodal residuals (weak residuals divided by the lumped mass) of the
Hamilton--Jacobi rows over :math:`\Phi`, of the continuity rows over :math:`\bar\rho`
and of the complementarity rows over :math:`\Delta s\,\bar\rho\,\Phi`.
"""
from __future__ import annotations

import numpy as np
from firedrake import TestFunction, assemble
from firedrake.petsc import PETSc
from mpi4py import MPI

__all__ = ["InteriorPoint", "DEFAULT_BARRIER"]

#: Interior-point options (``barrier=`` of the solvers).  ``mu0``, ``mu_min``:
#: first and last dimensionless barrier parameter; ``kappa_mu``, ``theta_mu``: the
#: barrier decrease; ``kappa_eps``: barrier problems are solved to
#: ``kappa_eps * mu`` (loosely: see the module notes); ``tol``: final scaled KKT
#: error; ``tau``: fraction to the boundary; ``kappa_sigma``: dual safeguard;
#: ``start_mix``: weight theta of the uniform density in the interior start;
#: ``warm_mix``: the same in a JKO step's warm start (predicted slices, already near
#: the solution; with ``kappa_eps`` 10, 0.1 there cost the steep-tails steps 20--23
#: Newton iterations, 0.01 17--19, 0.001 18--23); ``max_it``: Newton iterations per
#: solve.
DEFAULT_BARRIER = {"mu0": 1e-2, "mu_min": 1e-6, "kappa_mu": 0.2, "theta_mu": 1.5,
                   "kappa_eps": 300.0, "tol": 1e-8, "tau": 0.99, "kappa_sigma": 1e10,
                   "start_mix": 0.1, "warm_mix": 0.01, "max_it": 100}

_ITERATING = PETSc.SNES.ConvergedReason.ITERATING
_CONVERGED = PETSc.SNES.ConvergedReason.CONVERGED_FNORM_ABS
_DIVERGED_MAX_IT = PETSc.SNES.ConvergedReason.DIVERGED_MAX_IT
_DIVERGED_NAN = PETSc.SNES.ConvergedReason.DIVERGED_FUNCTION_NANORINF


class InteriorPoint:
    """The interior-point driver of one :class:`~jkoflow.solvers.BenamouBrenier`
    problem with density unknowns (see the module docstring).

    It owns no PETSc object: :meth:`attach` installs its pre-check and convergence
    test on the problem's SNES, :meth:`start` prepares a solve.

    Attributes
    ----------
    mu_hat
        The current dimensionless barrier parameter.
    levels
        ``[(mu_hat, Newton iterations), ...]`` of the last solve.
    step_fractions
        ``[(alpha_primal, alpha_dual), ...]`` of the last solve.
    """

    def __init__(self, transport, options: dict):
        self.tr = transport
        self.opts = options
        V = transport.V
        lumped = assemble(TestFunction(V) * transport.barrier_measure)
        with lumped.dat.vec_ro as v:
            m = v.array_r.copy()
        self._idx = {name: transport.local_field_indices(getattr(transport, name))
                     for name in ("rho_fields", "phi_fields", "dual_fields")}
        self._inv_mass = {name: np.tile(1.0 / m, len(idx) // max(len(m), 1))
                          for name, idx in self._idx.items()}
        self.scale = 1.0          # Phi
        self.rho_bar = 1.0        # uniform barrier weight
        self.mu_hat = float(options["mu0"])
        self.levels: list = []
        self.step_fractions: list = []
        self._level_start = self._offset = self._last_it = 0
        self.last_error = np.inf

    # ------------------------------------------------------------ set-up
    def attach(self, snes):
        """Install the step rule (pre-check) and the barrier/stopping rule."""
        snes.setLineSearchPreCheck(self.precheck)
        snes.setConvergenceTest(self.converged)

    def set_mu(self, mu_hat: float):
        """Set the dimensionless barrier parameter (and the solver's Constant)."""
        self.mu_hat = float(mu_hat)
        self.tr.mu.assign(self.mu_hat * self.scale)

    def start(self, rho_bar: float, scale: float):
        r"""Prepare a solve from the current (strictly interior) densities: uniform
        barrier weight ``rho_bar``, potential scale ``scale``, :math:`\hat\mu_0`, and
        duals on the central path."""
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"interior point: the potential scale must be positive and "
                             f"finite, got {scale!r}")
        self.rho_bar, self.scale = float(rho_bar), float(scale)
        self.tr.barrier_weight.assign(self.rho_bar)
        self.set_mu(self.opts["mu0"])
        target = self.tr.barrier_target
        for u, z in zip(self.tr.unknown_slices()[0], self.tr.duals()):
            z.interpolate(target * self.rho_bar / u)
        self.levels, self.step_fractions = [], []
        self._level_start = 0
        self._offset = self._last_it = 0
        self.last_error = np.inf

    # ---------------------------------------------------------- step rule
    def _fraction(self, x, y, tau) -> float:
        pos = y > 0
        alpha = float(np.min(tau * x[pos] / y[pos], initial=1.0))
        return self.tr.geometry.comm.allreduce(min(alpha, 1.0), MPI.MIN)

    def precheck(self, x, y):
        r"""Line-search pre-check: one primal--dual step (Newton updates ``x <- x - y``).

        Densities and potentials are scaled by the primal fraction to the boundary,
        duals by the dual one; then each dual is kept within
        :math:`[\kappa_\Sigma^{-1}, \kappa_\Sigma]` times its central value
        :math:`\mu\,\Delta s\,w/\rho` at the new densities.
        """
        ir, iz = self._idx["rho_fields"], self._idx["dual_fields"]
        arr = y.getArray()
        xa = x.getArray(readonly=True)
        tau = self.opts["tau"]
        a_p = self._fraction(xa[ir], arr[ir], tau)
        a_d = self._fraction(xa[iz], arr[iz], tau)
        self.step_fractions.append((a_p, a_d))
        dual = arr[iz] * a_d
        arr *= a_p
        rho_new = xa[ir] - arr[ir]
        central = self.tr.barrier_target * self.rho_bar / rho_new
        k = self.opts["kappa_sigma"]
        z_new = np.clip(xa[iz] - dual, central / k, central * k)
        arr[iz] = xa[iz] - z_new
        return True

    # ----------------------------------------------- barrier and stopping
    def error(self, F) -> float:
        """Scaled KKT error of the barrier problem at the current state (``F`` the
        current residual; collective)."""
        f = F.getArray(readonly=True)
        ds_w = self.rho_bar / self.tr.N
        parts = (("rho_fields", self.scale), ("phi_fields", self.rho_bar),
                 ("dual_fields", ds_w * self.scale))
        e = 0.0
        for name, unit in parts:
            idx = self._idx[name]
            if len(idx):
                e = max(e, float(np.max(np.abs(f[idx] * self._inv_mass[name]))) / unit)
        return self.tr.geometry.comm.allreduce(e, MPI.MAX)

    def converged(self, snes, it: int, norms):
        """SNES convergence test: decrease the barrier when its problem is solved to
        ``kappa_eps * mu_hat`` (recomputing the residual), stop at ``mu_min`` once the
        error is below ``tol``."""
        if it == 0 and self._last_it > 0:
            # SNES restarted from the current iterate (a repaired linear-solver
            # failure, see solve_or_raise): keep counting this solve's iterations.
            self._offset += self._last_it
        self._last_it = it
        it += self._offset
        F = snes.getFunction()[0]
        err = self.error(F)
        if not np.isfinite(err):
            return _DIVERGED_NAN
        o = self.opts
        while self.mu_hat > o["mu_min"] and err <= o["kappa_eps"] * self.mu_hat:
            self.levels.append((self.mu_hat, it - self._level_start))
            self._level_start = it
            self.set_mu(max(o["mu_min"], min(o["kappa_mu"] * self.mu_hat,
                                             self.mu_hat ** o["theta_mu"])))
            snes.computeFunction(snes.getSolution(), F)
            err = self.error(F)
        self.last_error = err
        if self.mu_hat <= o["mu_min"] and err <= o["tol"]:
            self.levels.append((self.mu_hat, it - self._level_start))
            return _CONVERGED
        if it >= o["max_it"]:
            return _DIVERGED_MAX_IT
        return _ITERATING
