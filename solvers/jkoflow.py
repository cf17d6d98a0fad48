r"""The JKO-Flow: the Wasserstein gradient flow of :math:`J^\eta = J - \frac{\eta}{4}I_J`.

Halmos & Hanin (arXiv:2511.14827) show that JKO iterates of step :math:`\eta` follow,
to :math:`O(\eta^2)` on finite time intervals, the Wasserstein gradient flow of the
modified energy

.. math::

    J^\eta(\rho) = J(\rho) - \frac{\eta}{4} I_J(\rho), \qquad
    I_J(\rho) = \int_M |\nabla_g g|_g^2\,\rho\,\mathrm{dvol}, \qquad
    g = \frac{\delta J}{\delta\rho} = U'(\rho) + V,

i.e. :math:`\partial_t\rho = \operatorname{div}_g(\rho\nabla_g\mu)` with the chemical
potential (derived in docs/maths/implicit_bias.rst)

.. math::

    \mu^\eta = \frac{\delta J^\eta}{\delta\rho}
    = g - \frac{\eta}{4}|\nabla_g g|_g^2
      + \frac{\eta}{2}U''(\rho)\operatorname{div}_g(\rho\nabla_g g).

Formulations (``form=``)
------------------------
``"fisher"`` -- the paper's (truncated) equation.  :math:`\mu` is the :math:`L^2`
representative of the first variation of :math:`J^\eta`,
:math:`\int\mu v = \int g v - \frac{\eta}{4}\frac{dI_J}{d\rho}[v]`, where
:math:`dI_J/d\rho` is UFL's ``derivative`` of :meth:`Energy.curvature_form`
(:meth:`Energy.curvature_variation`): the :math:`\operatorname{div}` term is
integrated by parts against the test function, so only first derivatives appear.
It is a *backward* parabolic fourth-order equation: linearised at a constant state
with :math:`D = \rho U''(\rho)` a mode :math:`|k|^2 = \kappa` evolves at the rate
:math:`-D\kappa + \frac{\eta}{2}D^2\kappa^2`, so every resolved mode with
:math:`D\kappa > 2/\eta` grows.  Before time stepping the solver estimates the growth
rate of the linearised discrete operator (:mod:`jkoflow.solvers.stability`) and raises
:class:`UnstableFormError` (rate, critical mesh size, alternatives) if it exceeds
``growth_tol`` (default 0), unless ``allow_unstable=True``.

``"pseudo-parabolic"`` (default; docs/maths/implicit_bias.rst): the rate :math:`\operatorname{div}
(\rho\nabla g)` inside :math:`\mu^\eta` is replaced by the actual rate
:math:`\partial_t\rho` (equal up to :math:`O(\eta)`, so the flow stays
:math:`O(\eta^2)`-close to JKO):

.. math::

    \tilde\mu = g - \frac{\eta}{4}|\nabla_g g|_g^2 + \frac{\eta}{2}U''(\rho)\partial_t\rho
    = g + \frac{\eta}{2}\partial_t g - \frac{\eta}{4}|\nabla_g g|_g^2,

written with ``Dt(g)`` (:math:`V` does not depend on time), so the system has time
derivatives in both equations.  Linearised, a mode decays at
:math:`-D\kappa/(1 + \frac{\eta}{2}D\kappa)`: dissipative on every mesh (a Padé form
of the implicit Euler symbol).  On the Ornstein--Uhlenbeck Gaussians it is 2.5 times
closer to the exact JKO iterates than the truncated form (:math:`0.07\eta^2` against
:math:`0.17\eta^2` in :math:`W_2` at :math:`T = 1`), and 4 times on a sphere mode.

Unknowns (``variable=``)
------------------------
``"log"`` (default for entropic energies): :math:`u = l = \log\rho`, :math:`\rho = e^l`,
positive by construction; ``"density"`` (default otherwise): :math:`u = \rho`.  With
:math:`\rho = R(u)` the weak form is, for all test functions :math:`(q, v)`,

.. math::

    \int \partial_t R(u)\, q + \int R(u)\langle\nabla_g\mu, \nabla_g q\rangle_g = 0,
    \qquad \int (\mu - \mu^\eta[\rho])\, v = 0 .

The :math:`\mu`-equation is deliberately *not* :math:`\rho`-weighted: with
:math:`\rho` spanning tens of orders of magnitude (Gaussian tails) a weighted
projection leaves :math:`\mu` undetermined (values of :math:`10^{10}`) where
:math:`\rho` underflows, and Newton stalls.  Its natural boundary condition for the
``"fisher"`` form is :math:`U''(\rho)\rho\nabla g\cdot n = 0`, i.e. the no-flux
condition of the WGF (:math:`\nabla g\cdot n = 0` for entropies); a density truncated
by the box edge gets a boundary layer in :math:`\mu` there, harmless because the flux
is :math:`\rho`-weighted.  The pseudo-parabolic :math:`\mu`-equation is a plain
projection (no boundary term).

Time integration is :class:`~jkoflow.solvers.timestepping.TimeIntegrator` (Radau IIA,
stage-value formulation): ``Dt(exp(l))`` is discretised as :math:`e^{L_i} - e^{l_n}`, so
with the stiffly accurate Radau IIA mass is conserved to the SNES tolerance (the
:math:`10^{-12}` defect is removed after each step), also in the pseudo-parabolic
system; :math:`\mu` is algebraic (an index-1 DAE).  ``eta = 0`` gives the WGF.

The density variable (representation, mass, energy, output, restart) is handled by
:class:`~jkoflow.solvers.density_flow.DensityFlow`, shared with the WGF; :math:`\eta`
enters the forms as a :class:`~firedrake.Constant`, so flows with different
:math:`\eta` share their compiled kernels.
"""
from __future__ import annotations

import math

import ufl
from firedrake import Constant, Function, TestFunction, TestFunctions, split
from irksome import Dt

from .common import check_positive, logger
from .density_flow import DensityFlow
from .energies import Energy
from .stability import StabilityReport, UnstableFormError, analyse_stability
from .timestepping import time_constants

__all__ = ["JKOFlow", "JKOFLOW_FORMS", "UnstableFormError", "StabilityReport"]

#: Valid values of ``form=``.
JKOFLOW_FORMS = ("pseudo-parabolic", "fisher")


def _with_quadrature(form: ufl.Form, degree: int | None) -> ufl.Form:
    """``form`` with every integral's quadrature degree set to ``degree`` (if given)."""
    if degree is None:
        return form
    return ufl.Form([itg.reconstruct(metadata={**itg.metadata(), "quadrature_degree": degree})
                     for itg in form.integrals()])


class JKOFlow(DensityFlow):
    r"""The JKO-Flow of an :class:`Energy`: the WGF of :math:`J - \frac{\eta}{4}I_J`.

    Parameters
    ----------
    energy
        The energy :math:`J` (entropy, KL, porous medium, potential energy, ...); its
        geometry (flat domain, surface or metric chart) is the domain.
    rho0
        Initial density, a Function on ``energy.geometry``; its function space (CG1,
        CG2, ...) is the space of both unknowns.
    eta
        The JKO step :math:`\eta \ge 0` whose implicit bias is modelled (0: the WGF).
    dt
        Time step (the initial one when ``adaptive=True``).
    form
        ``"pseudo-parabolic"`` (default, well-posed) or ``"fisher"`` (the paper's
        truncated equation; see the module notes).
    variable
        ``"auto"`` (``"log"`` for entropic energies, else ``"density"``), ``"log"`` or
        ``"density"``.
    t0, mass
        Initial time; if ``mass`` is given the initial density is rescaled to it.
    quadrature_degree
        Quadrature degree of every integral (default: the geometry's, else
        :math:`2k+2` for :math:`P_k`).  One rule for residual, Jacobian and mass keeps
        Newton exact and mass conserved; log-densities on meshes coarser than the
        density's width need a high one.
    allow_unstable
        Run ``form="fisher"`` even when the stability check finds growing modes.
    growth_tol
        Growth rate (of density perturbations, on mass-neutral modes) above which
        ``form="fisher"`` is refused.
    stability_method
        ``"arnoldi"`` (parallel) or ``"dense"`` (serial, small problems).
    method, stages, adaptive, tol, dt_min, dt_max, max_retries
        Time integration (:class:`TimeIntegrator`; Radau IIA, 3 stages, order 5).
    solver_parameters, solver_parameters_extra
        PETSc options by the rule of :func:`~jkoflow.solvers.resolve_parameters`: a
        preset name (default ``"direct"``, adapted: tight tolerances; for the log
        variable a stop at the :math:`10^{-11}` residual floor of under-resolved tails),
        or a full dict used as given; the extra dict updates either.
    options_prefix, appctx
        Prefix (default ``"jkoflow"``: ``-jkoflow_snes_monitor``), context.

    Raises
    ------
    ValueError
        For an unknown ``form``/``variable`` (listing the valid ones), ``eta < 0``,
        ``dt <= 0``, or an invalid initial density (wrong mesh, NaN, negative, zero
        mass, non-positive values for the log variable).
    UnstableFormError
        For ``form="fisher"`` when the linearised discrete operator has a growth rate
        above ``growth_tol`` (the message gives the rate, the critical mesh size and
        the alternatives) and ``allow_unstable`` is false.
    SolverDivergedError
        From :meth:`step`/:meth:`advance_to` when a step fails after all retries.

    Notes
    -----
    ``stability`` holds the :class:`StabilityReport` (``None`` unless ``form="fisher"``
    or :meth:`check_stability` was called); ``rho``, ``mu``, ``mass()``,
    ``energy_value()`` (:math:`J`), ``modified_energy_value()`` (:math:`J^\eta`).
    """

    label = "JKOFlow"

    def __init__(self, energy: Energy, rho0: Function, eta: float, dt: float, *,
                 form: str = "pseudo-parabolic", variable: str = "auto", t0: float = 0.0,
                 mass: float | None = None, quadrature_degree: int | None = None,
                 allow_unstable: bool = False, growth_tol: float = 0.0,
                 stability_method: str = "arnoldi", method="radauIIA", stages: int = 3,
                 adaptive: bool = False, tol: float = 1e-6, dt_min: float = 1e-12,
                 dt_max: float = math.inf, max_retries: int = 6,
                 solver_parameters: dict | str | None = None,
                 solver_parameters_extra: dict | None = None,
                 options_prefix: str = "jkoflow", appctx: dict | None = None):
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be a jkoflow Energy, got {type(energy).__name__}")
        if form not in JKOFLOW_FORMS:
            raise ValueError(f"unknown JKO-Flow form={form!r}; valid: {list(JKOFLOW_FORMS)}")
        try:
            eta = float(eta)
        except (TypeError, ValueError):
            raise ValueError(f"eta must be a number >= 0, got {eta!r}") from None
        if not (math.isfinite(eta) and eta >= 0):
            raise ValueError(f"eta must be finite and >= 0 (0 gives the WGF), got eta = {eta!r}")
        check_positive("dt", dt)
        self.form = form
        self.eta_constant = Constant(eta)
        self.growth_tol = float(growth_tol)
        u0 = self._init_density(energy, rho0, variable, mass, quadrature_degree)
        V = self.V
        W = self.W = V * V
        w = Function(W, name="jkoflow_state")
        w.subfunctions[0].assign(u0)
        w.subfunctions[0].rename(u0.name())
        w.subfunctions[1].rename("chemical_potential")

        # Placeholder density and test function for UFL's first variation of I_J.
        self._r = Function(V)
        self._vr = TestFunction(V)

        # Consistent initial chemical potential (and the linearised operator for
        # the stability analysis) from the same residual.
        from .stability import LinearisedOperator
        self.linearised = LinearisedOperator(self, u0, prefix=f"{options_prefix}_stability_")
        rate, mu0 = self.linearised.consistent_rate()
        w.subfunctions[1].assign(mu0)
        self.stability: StabilityReport | None = None
        if form == "fisher" and eta > 0 and energy.U is not None:
            self.stability = analyse_stability(self, method=stability_method,
                                               growth_tol=self.growth_tol)
            if not self.stability.stable:
                if not allow_unstable:
                    raise UnstableFormError(self.stability)
                logger.warning("JKOFlow: running an unstable configuration "
                               "(allow_unstable=True):\n%s", self.stability.message())

        u, mu = split(w)
        q, v = TestFunctions(W)
        F = self.residual(u, mu, q, v, Dt)
        t, dtc = time_constants(t0, dt)
        super().__init__(F, w, t, dtc, method=method, stages=stages, stage_type="value",
                         adaptive=adaptive, tol=tol, dt_min=dt_min, dt_max=dt_max,
                         max_retries=max_retries,
                         log_fields=(0,) if self.variable == "log" else (),
                         solver_parameters=solver_parameters,
                         solver_parameters_extra=solver_parameters_extra,
                         options_prefix=options_prefix, appctx=appctx,
                         tune_parameters=self._tune)
        self._finish_density()

    def _tune(self, params: dict) -> dict:
        """Adapt a named preset: tight tolerances; for the log variable (log-shaped Newton
        steps, see ``TimeIntegrator._log_update``) a stop at the ~1e-11 residual floor of
        the far, under-resolved tails, whose mass defect is removed in check_state.  The
        preset's line search is kept: with the mixed (u, mu) system full steps diverge
        in the tails for large dt (tested on the 1D OU Gaussians)."""
        params.update(snes_rtol=1e-13, snes_atol=1e-15)
        if self.variable == "log":
            params.update(snes_divergence_tolerance=1e300, snes_rtol=1e-12, snes_atol=1e-11)
        if params.get("ksp_type") not in (None, "preonly"):
            params.setdefault("ksp_atol", 1e-3 * params["snes_atol"])
        return params

    @property
    def eta(self) -> float:
        r"""The JKO step :math:`\eta` modelled (a ``Constant`` in the forms:
        :attr:`eta_constant`)."""
        return float(self.eta_constant)

    # ------------------------------------------------------------ the form
    def curvature_variation(self, rho, direction) -> ufl.Form:
        r""":math:`\frac{dI_J}{d\rho}[\delta\rho]` at the expression ``rho`` in the direction
        ``direction``: UFL's ``derivative`` of :meth:`Energy.curvature_form`, taken at a
        placeholder Function and substituted, with the solver's quadrature."""
        form = self.energy.curvature_variation(self._r, self._vr)
        form = ufl.replace(form, {self._r: rho, self._vr: direction})
        return _with_quadrature(form, self.quadrature_degree)

    def residual(self, u, mu, q, v, ddt) -> ufl.Form:
        r"""The residual for unknowns ``(u, mu)``, tests ``(q, v)``; ``ddt`` is the time
        derivative (Irksome's ``Dt``, or a linearisation for the stability analysis)."""
        geom, en, dx = self.geometry, self.energy, self.dx
        eta = self.eta_constant
        rho = self.density_expr(u)
        g = en.first_variation(rho)
        F = ddt(rho) * q * dx + geom.weighted_stiffness(rho, mu, q, dx)
        F += (mu - g) * v * dx
        if self.eta == 0:
            return F
        if self.form == "fisher":
            F += (eta / 4) * self.curvature_variation(rho, v)
        else:
            F += (eta / 4) * geom.grad_norm2(g) * v * dx
            if en.U is not None:
                # U''(rho) d_t rho = d_t U'(rho) = d_t g (V does not depend on t)
                F -= (eta / 2) * ddt(g) * v * dx
        return F

    # ---------------------------------------------------------------- state
    @property
    def u_field(self) -> Function:
        """The density variable of the state (alias of :attr:`density_field`)."""
        return self.density_field

    @property
    def mu(self) -> Function:
        r"""The chemical potential :math:`\mu^\eta` (or :math:`\tilde\mu`)."""
        return self.u.subfunctions[1]

    def modified_energy_value(self) -> float:
        r""":math:`J^\eta(\rho) = J(\rho) - \frac{\eta}{4}I_J(\rho)` (collective)."""
        return self.energy_value() - self.eta / 4 * self.fisher_information()

    def fisher_information(self) -> float:
        r""":math:`I_J(\rho) = \int|\nabla_g g|^2_g\rho` (relative Fisher information for
        KL): the :meth:`dissipation` of the WGF."""
        return self.dissipation()

    def output_functions(self) -> list[Function]:
        """``density``, ``log_density`` (log variable), ``chemical_potential``."""
        return super().output_functions() + [self.mu]

    def check_stability(self, method: str = "arnoldi") -> StabilityReport:
        """Run the linear stability analysis at the current state (any form)."""
        self.linearised.set_state(self.density_field)
        self.stability = analyse_stability(self, method=method, growth_tol=self.growth_tol)
        return self.stability

    def checkpoint_metadata(self) -> dict:
        meta = super().checkpoint_metadata()
        meta.update(form=self.form, eta=self.eta)
        return meta

    def _describe_form(self) -> str:
        return f"form={self.form}, eta={self.eta:g}, "
