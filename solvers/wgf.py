r"""The Wasserstein gradient flow :math:`\partial_t\rho = \operatorname{div}_g(\rho\nabla_g\,\delta J/\delta\rho)`.

A reference solver: high-order implicit Runge--Kutta in time (Radau IIA through
:class:`~jkoflow.solvers.timestepping.TimeIntegrator`), continuous Lagrange
elements in space, no-flux boundaries.  The weak form, for all test functions
:math:`v`, is

.. math::

    \int_M \partial_t\rho\, v\,\mathrm{dvol}
    + \int_M \langle \rho\nabla_g \tfrac{\delta J}{\delta\rho}, \nabla_g v\rangle_g\,\mathrm{dvol} = 0,

with the flux written as :math:`P'(\rho)\nabla_g\rho + \rho\nabla_g V` (:meth:`Energy.flux`).

Formulations (``form=``)
------------------------
``"log"`` (default for entropic energies: entropy, KL/Fokker--Planck)
    The unknown is :math:`l = \log\rho` and the density is :math:`\rho = e^l`, positive
    by construction.  The time derivative is written ``Dt(exp(l))``; Irksome's
    stage-value formulation discretises it as :math:`e^{L_i} - e^{l_n}` and, with the
    stiffly accurate Radau IIA (:math:`l_{n+1} = L_s`), testing with :math:`v = 1`
    gives :math:`\int e^{l_{n+1}} = \int e^{l_n}` exactly for the exact solution of
    the stage equations (same quadrature rule for that term and for :meth:`mass`).
    This keeps positivity and exact mass with a single scalar unknown; the naive
    chain-rule form :math:`e^l\,\partial_t l` (or the stage-derivative formulation)
    would lose exact conservation, and a mixed :math:`(\rho, l)` DAE would double the
    unknowns for the same two properties.  Semi-discretely
    :math:`\frac{d}{dt}J(e^l) = -\int e^l|\nabla_g(l+V)|^2 \le 0` when
    :math:`V` lies in the finite element space.  For the Ornstein--Uhlenbeck
    Gaussians :math:`l` is quadratic, so P2 is exact up to quadrature.

    Two practical points.  (i) Where :math:`\rho` spans many orders of magnitude,
    Newton's step for :math:`l` is the linearised *density* update
    :math:`\rho(1+\delta l)`, astronomically large in the far tails; the steps are
    therefore taken in density variables (``TimeIntegrator(log_fields=...)``:
    :math:`l \to l + \log(1+\delta l)`, bounded), which keeps 2--5 iterations per
    step.  (ii) In far tails that the mesh does not resolve, the Galerkin density would
    go (slightly) negative, so the log form's stage equations have no exact solution:
    the residual stalls at :math:`10^{-13}`--:math:`10^{-11}`, SNES stops at
    ``snes_atol=1e-11`` and the mass defect of that size is removed by a constant
    shift of :math:`l` (recorded in ``mass_corrections``; the tests check it stays
    below :math:`10^{-10}`), so mass is conserved to round-off.  Grossly
    under-resolved log-densities (e.g. 2 cells per standard deviation with a box of
    16 standard deviations) can still fail: then refine, or use ``"density"``.
``"density"`` (default otherwise)
    The unknown is :math:`\rho` itself: exactly conservative (linear invariant),
    linear for Fokker--Planck, for any energy; positivity is *checked* (the minimum
    nodal value after every step is recorded in ``min_density`` and a negative one
    logged), not enforced.
``"bounded"`` (for compactly supported solutions, e.g. the porous medium)
    The density form with the bound :math:`\rho \ge 0` imposed on every Runge--Kutta
    stage through Irksome's ``bounds`` and a variational-inequality Newton method
    (``vinewtonrsls``).  Where the bound is active the discrete equation is replaced
    by the complementarity condition, which creates mass at the front; the excess is
    removed after each step by scaling :math:`\rho` (which keeps :math:`\rho\ge0` and
    the support), so mass is conserved to round-off.  ``mass_corrections`` records
    the relative correction of each step: it is O(h) (Barenblatt test, P1:
    1.8e-3, 8e-4, 3.8e-4 for h = 0.25, 0.125, 0.0625), i.e. of the size of the
    discretisation error.  The plain density form is as accurate on that test but
    undershoots (min -1.7e-3 against max 1).

Accessors (the density layer :class:`~jkoflow.solvers.density_flow.DensityFlow`, shared
with the JKO-Flow): ``solver.rho`` (the density as a Function named ``"density"``),
``rho_expr``, ``t``, ``energy_value()``, ``mass()``, ``dissipation()`` (:math:`I_J`, the
energy decay rate); ``variable`` is ``"log"`` for the log form and ``"density"`` for
the two density forms.  Every integral uses the quadrature degree of
:meth:`jkoflow.meshes.Geometry.quadrature_degree_for` (:math:`2k+2` by default), the
rule of the JKO step too.
"""
from __future__ import annotations

import math

from firedrake import Function, TestFunction
from irksome import Dt

from .density_flow import DensityFlow
from .energies import Energy
from .timestepping import time_constants

__all__ = ["WassersteinGradientFlow", "WGF_FORMS"]

#: Valid values of ``form=``.
WGF_FORMS = ("log", "density", "bounded")


class WassersteinGradientFlow(DensityFlow):
    r"""Reference solver for the Wasserstein gradient flow of an :class:`Energy`.

    Parameters
    ----------
    energy
        The energy :math:`J`; its geometry is the domain.
    rho0
        Initial density, a Function on ``energy.geometry`` (its space, typically
        CG2, is the solution space).  Must be finite, non-negative (strictly positive
        for ``form="log"``) with positive mass.
    dt
        Time step (the initial one when ``adaptive=True``).
    form
        ``"auto"`` (``"log"`` for entropic energies, else ``"density"``), ``"log"``,
        ``"density"`` or ``"bounded"`` (see the module notes).
    t0
        Initial time.
    mass
        If given, the initial density is rescaled to this mass.
    quadrature_degree
        Quadrature degree of every integral (default: the geometry's, else
        :math:`2k+2` for :math:`P_k`).
    method, stages, adaptive, tol, dt_min, dt_max, max_retries
        Time integration (see :class:`TimeIntegrator`; Radau IIA, 3 stages, order 5).
    solver_parameters, solver_parameters_extra
        PETSc options by the rule of :func:`~jkoflow.solvers.resolve_parameters`: a
        preset name (default ``"direct"``), adapted to the formulation (tight
        tolerances so that mass is exact to round-off; the log form takes full Newton
        steps, shaped by ``TimeIntegrator._log_update``, and stops at the
        :math:`10^{-11}` residual floor of under-resolved tails; the bounded form uses
        ``vinewtonrsls``), or a full dict used as given; the extra dict updates either.
    options_prefix, appctx
        PETSc options prefix (default ``"wgf"``: ``-wgf_snes_monitor``), context.

    Raises
    ------
    ValueError
        For an unknown ``form`` (listing the valid ones), ``dt <= 0``, or an invalid
        initial density (wrong mesh, NaN, negative, zero mass, or non-positive values
        for the log form).
    SolverDivergedError
        From :meth:`step`/:meth:`advance_to` when a step fails after all retries.
    """

    label = "WGF"

    def __init__(self, energy: Energy, rho0: Function, dt: float, *, form: str = "auto",
                 t0: float = 0.0, mass: float | None = None,
                 quadrature_degree: int | None = None, method="radauIIA",
                 stages: int = 3, adaptive: bool = False, tol: float = 1e-6,
                 dt_min: float = 1e-12, dt_max: float = math.inf, max_retries: int = 6,
                 solver_parameters: dict | str | None = None,
                 solver_parameters_extra: dict | None = None, options_prefix: str = "wgf",
                 appctx: dict | None = None):
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be a jkoflow Energy, got {type(energy).__name__}")
        if form == "auto":
            form = "log" if energy.entropic else "density"
        if form not in WGF_FORMS:
            raise ValueError(f"unknown WGF formulation form={form!r}; valid: "
                             f"{['auto', *WGF_FORMS]}")
        self.form = form
        t, dtc = time_constants(t0, dt)
        u = self._init_density(energy, rho0, "log" if form == "log" else "density", mass,
                               quadrature_degree, bounded=(form == "bounded"))
        geom, dx = self.geometry, self.dx
        rho = self.density_expr(u)
        v = TestFunction(self.V)
        flux = energy.flux(rho, log_rho=u if form == "log" else None)
        # One quadrature rule for every term and for mass(): with it the discrete mass
        # conservation (test function v = 1) is exact.
        F = Dt(rho) * v * dx + geom.inner(flux, geom.grad(v)) * dx
        bounds = ("stage", Function(self.V), None) if form == "bounded" else None
        super().__init__(F, u, t, dtc, method=method, stages=stages, stage_type="value",
                         log_fields=(0,) if form == "log" else (),
                         bounds=bounds, adaptive=adaptive, tol=tol, dt_min=dt_min,
                         dt_max=dt_max, max_retries=max_retries,
                         solver_parameters=solver_parameters,
                         solver_parameters_extra=solver_parameters_extra,
                         options_prefix=options_prefix, appctx=appctx,
                         tune_parameters=self._tune)
        self._finish_density()

    def _tune(self, params: dict) -> dict:
        """Adapt a named preset to the formulation (see the class notes)."""
        params.update(snes_rtol=1e-13, snes_atol=1e-15)
        if self.form == "log":
            # where the Galerkin density would want to be negative (far, under-resolved
            # tails) the log form's residual stalls at ~1e-13..1e-11: stop there (the
            # mass defect of that size is removed in check_state)
            params.update(snes_linesearch_type="basic", snes_divergence_tolerance=1e300,
                          snes_rtol=1e-12, snes_atol=1e-11)
        elif self.form == "bounded":
            params.update(snes_type="vinewtonrsls", snes_linesearch_type="basic")
        if params.get("ksp_type") not in (None, "preonly"):
            # a Krylov solve must be tighter than the Newton tolerance it serves
            params.setdefault("ksp_atol", 1e-3 * params["snes_atol"])
        return params

    def checkpoint_metadata(self) -> dict:
        meta = super().checkpoint_metadata()
        meta["form"] = self.form
        return meta

    def failure_hint(self) -> str | None:
        if self.form == "log":
            return ("the log form needs a mesh that resolves log(rho) where the density "
                    "changes by many orders of magnitude (its discrete equations have no "
                    "solution if the Galerkin density would be negative there): refine "
                    "the mesh, or use form='density'")
        if self.form == "density" and self.energy.entropic is False and self.energy.U:
            return "a degenerate diffusion may need form='bounded'"
        return None

    def _describe_form(self) -> str:
        return f"form={self.form}, "
