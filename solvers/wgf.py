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

Accessors: ``solver.rho`` (the density as a Function on the geometry), ``solver.t``,
:meth:`~WassersteinGradientFlow.energy_value`, :meth:`~WassersteinGradientFlow.mass`,
:meth:`~WassersteinGradientFlow.dissipation` (:math:`I_J`, the energy decay rate).
"""
from __future__ import annotations

import math

import ufl
from firedrake import Function, TestFunction, assemble
from irksome import Dt

from .common import check_density, check_positive, global_min, logger
from .energies import Energy
from .presets import preset
from .timestepping import TimeIntegrator, time_constants

__all__ = ["WassersteinGradientFlow", "WGF_FORMS"]

#: Valid values of ``form=``.
WGF_FORMS = ("log", "density", "bounded")


class WassersteinGradientFlow(TimeIntegrator):
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
    method, stages, adaptive, tol, dt_min, dt_max, max_retries
        Time integration (see :class:`TimeIntegrator`; Radau IIA, 3 stages, order 5).
    solver_parameters, options_prefix, appctx
        PETSc options (they update the defaults: the ``"direct"`` preset with
        ``snes_rtol=1e-13, snes_atol=1e-15``; for the log form full Newton steps and
        ``snes_rtol=1e-12, snes_atol=1e-11``; ``vinewtonrsls`` for the bounded form),
        prefix ``"wgf_"``, context.

    Raises
    ------
    ValueError
        For an unknown ``form`` (listing the valid ones), ``dt <= 0``, or an invalid
        initial density (wrong mesh, NaN, negative, zero mass, or non-positive values
        for the log form).
    SolverDivergedError
        From :meth:`step`/:meth:`advance_to` when a step fails after all retries.
    """

    def __init__(self, energy: Energy, rho0: Function, dt: float, *, form: str = "auto",
                 t0: float = 0.0, mass: float | None = None, method="radauIIA",
                 stages: int = 3, adaptive: bool = False, tol: float = 1e-6,
                 dt_min: float = 1e-12, dt_max: float = math.inf, max_retries: int = 6,
                 solver_parameters: dict | None = None, options_prefix: str = "wgf",
                 appctx: dict | None = None):
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be a jkoflow Energy, got {type(energy).__name__}")
        if form == "auto":
            form = "log" if energy.entropic else "density"
        if form not in WGF_FORMS:
            raise ValueError(f"unknown WGF formulation form={form!r}; valid: "
                             f"{['auto', *WGF_FORMS]}")
        check_positive("dt", dt)
        geom = self.geometry = energy.geometry
        self.energy = energy
        self.form = form
        m0 = check_density(geom, rho0, strictly_positive=(form == "log"))
        V = rho0.function_space()
        u = Function(V)
        if form == "log":
            u.interpolate(ufl.ln(rho0))
            if mass is not None:
                u.assign(u + math.log(check_positive("mass", mass) / geom.mass(ufl.exp(u))))
            u.rename("log_density")
            rho_expr = ufl.exp(u)
        else:
            u.assign(rho0)
            if mass is not None:
                u.assign(u * (check_positive("mass", mass) / m0))
            u.rename("density")
            rho_expr = u
        self.rho_expr = rho_expr
        t, dtc = time_constants(t0, dt)
        v = TestFunction(V)
        flux = energy.flux(rho_expr, log_rho=u if form == "log" else None)
        # One quadrature rule for the time-derivative term and for mass(): with it the
        # discrete mass conservation (test function v = 1) is exact.
        k = V.ufl_element().embedded_superdegree
        self.dx = geom.dx(degree=2 * k + 2) if form == "log" else geom.dx
        F = (Dt(rho_expr) * v * self.dx
             + geom.inner(flux, geom.grad(v)) * geom.dx)
        # Defaults (updated by the user's solver_parameters): tolerances tight enough
        # that the conserved mass is exact to round-off; the log form's Newton steps are
        # shaped by TimeIntegrator._log_update, so they are taken in full.
        params = preset("direct", snes_rtol=1e-13, snes_atol=1e-15)
        bounds = None
        if form == "log":
            # where the Galerkin density would want to be negative (far, under-resolved
            # tails) the log form's residual stalls at ~1e-13..1e-11: stop there (the
            # mass defect of that size is removed in check_state)
            params.update(snes_linesearch_type="basic", snes_divergence_tolerance=1e300,
                          snes_rtol=1e-12, snes_atol=1e-11)
        elif form == "bounded":
            bounds = ("stage", Function(V), None)
            params.update(snes_type="vinewtonrsls", snes_linesearch_type="basic")
        params.update(solver_parameters or {})
        super().__init__(F, u, t, dtc, method=method, stages=stages, stage_type="value",
                         log_fields=(0,) if form == "log" else (),
                         bounds=bounds, adaptive=adaptive, tol=tol, dt_min=dt_min,
                         dt_max=dt_max, max_retries=max_retries,
                         solver_parameters=params, options_prefix=options_prefix,
                         appctx=appctx)
        self.initial_mass = self.mass()
        self.min_density = global_min(u) if form != "log" else None
        self.mass_corrections: list[float] = []
        self._rho_out = Function(V, name="density")

    # --------------------------------------------------------------- state
    @property
    def rho(self) -> Function:
        """The current density as a Function in the solution space.

        The state itself for the density forms; for ``form="log"`` the nodal
        interpolant of :math:`e^l` (positive; its mass differs from the exact
        :meth:`mass` of :math:`e^l` by the interpolation error; use
        :attr:`rho_expr` for exact integrals).
        """
        if self.form != "log":
            return self.u
        return self._rho_out.interpolate(self.rho_expr)

    def mass(self) -> float:
        r""":math:`\int_M\rho\,\mathrm{dvol}` of the current density (collective)."""
        return float(assemble(self.rho_expr * self.dx))

    def energy_value(self) -> float:
        r""":math:`J(\rho)` of the current density (collective).

        For entropic energies in the density forms, :math:`U(\rho)` is taken as 0
        where :math:`\rho \le 0` (its continuous extension at 0), so round-off
        undershoots do not give NaN.
        """
        en, rho = self.energy, self.rho_expr
        if self.form == "log" or not en.entropic:
            return en.value(rho)
        Vrho = en.V * rho if en.V is not None else 0
        return float(assemble(ufl.conditional(ufl.gt(rho, 0), en.integrand(rho), Vrho)
                              * self.geometry.dx))

    def dissipation(self) -> float:
        r""":math:`I_J(\rho) = \int|\nabla_g\,\delta J/\delta\rho|_g^2\rho = -dJ/dt`."""
        if self.form == "log":
            # grad g = U''(rho) grad rho + grad V = D(rho) grad l + grad V
            geom, en, rho = self.geometry, self.energy, self.rho_expr
            grad_g = en.diffusivity(rho) * geom.grad(self.u)
            if en.V is not None:
                grad_g = grad_g + geom.grad(en.V)
            return float(assemble(geom.norm2(grad_g) * rho * geom.dx))
        return self.energy.curvature(self.rho_expr)

    def output_functions(self) -> list[Function]:
        """The density (and the log-density for ``form="log"``) for VTK output."""
        return [self.rho] + ([self.u] if self.form == "log" else [])

    # ---------------------------------------------------------------- hooks
    def error_norm(self, a: Function, b: Function) -> float:
        r"""Relative :math:`L^2` difference of the two densities (controller measure)."""
        dx = self.geometry.dx
        ra, rb = (ufl.exp(a), ufl.exp(b)) if self.form == "log" else (a, b)
        num = float(assemble((ra - rb) ** 2 * dx))
        den = float(assemble(ra ** 2 * dx))
        return math.sqrt(num / den)

    def check_state(self) -> str | None:
        """Reject non-finite states; record the minimum density (density forms); for the
        log and bounded forms remove the mass defect left by the nonlinear solver
        (``mass_corrections``: SNES-tolerance sized for the log form, the mass created
        by active bounds for the bounded form)."""
        msg = super().check_state()
        if msg is not None:
            return msg
        if self.form != "log":
            lo = global_min(self.u)
            self.min_density = min(self.min_density, lo)
            if lo < 0 and self.form == "density":
                logger.warning("WGF (density form): negative density %.3g near t = %g",
                               lo, self.t)
        if self.form in ("log", "bounded"):
            corr = self.initial_mass / self.mass()
            self.mass_corrections.append(corr - 1.0)
            self.u.assign(self.u + math.log(corr) if self.form == "log" else self.u * corr)
        return None

    def failure_hint(self) -> str | None:
        if self.form == "log":
            return ("the log form needs a mesh that resolves log(rho) where the density "
                    "changes by many orders of magnitude (its discrete equations have no "
                    "solution if the Galerkin density would be negative there): refine "
                    "the mesh, or use form='density'")
        if self.form == "density" and self.energy.entropic is False and self.energy.U:
            return "a degenerate diffusion may need form='bounded'"
        return None

    def load_checkpoint(self, path: str, idx: int = -1) -> float:
        """Restore a :class:`~jkoflow.solvers.timestepping.Checkpointer` snapshot; the
        restored mass becomes the conserved one.  Returns the restored time."""
        t = super().load_checkpoint(path, idx)
        self.initial_mass = self.mass()
        return t

    def describe(self) -> str:
        """One line: energy, formulation, space, time integration."""
        V = self.u.function_space()
        return (f"WGF of {self.energy.name} on {self.geometry.name}: form={self.form}, "
                f"{V.ufl_element()}, {V.dim()} dofs, {self.tableau}, dt={self.dt:g}, "
                f"adaptive={self.adaptive}")
