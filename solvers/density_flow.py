r"""The density-variable layer shared by the Wasserstein gradient flow and the JKO-Flow.

Both solvers evolve a density :math:`\rho = R(u)` through an unknown :math:`u` in a
continuous :math:`P_k` space, with one of two representations (``variable=``):

``"log"``
    :math:`u = l = \log\rho`, :math:`R = \exp`: positive by construction; Newton steps
    are taken in density variables (``TimeIntegrator(log_fields=...)``), and the mass
    defect left by the nonlinear solver's tolerance (:math:`10^{-12}`) is removed after
    every step by a constant shift of :math:`l` (recorded in ``mass_corrections``).
``"density"``
    :math:`u = \rho`, :math:`R = \mathrm{id}`: mass is a linear invariant (exact);
    positivity is checked, not enforced (``min_density``; a negative value is logged),
    unless the subclass imposes bounds (``bounded=True``: the mass created at active
    bounds is removed by scaling).

:class:`DensityFlow` holds what depends only on that choice: the initial state from a
density, the density as an expression and as a named Function, mass, energy and
dissipation with the one quadrature rule of the solver, the controller's error
measure, the post-step check, restart and the description.  The subclasses write the
residual (their equation) and pass it to :class:`~jkoflow.solvers.timestepping.TimeIntegrator`.

Quadrature: every integral of these solvers uses the degree of
:meth:`jkoflow.meshes.Geometry.quadrature_degree_for` (the solver's
``quadrature_degree``, else the geometry's, else :math:`2k+2`), the same rule as the
JKO step, so that all solvers discretise an energy the same way.
"""
from __future__ import annotations

import math
from functools import cached_property

import ufl
from firedrake import Function, assemble

from .common import FormValue, check_density, check_positive, global_min, logger
from .energies import Energy
from .timestepping import TimeIntegrator

__all__ = ["DensityFlow", "VARIABLES"]

#: The representations of the density.
VARIABLES = ("log", "density")


class DensityFlow(TimeIntegrator):
    """Base of :class:`~jkoflow.solvers.WassersteinGradientFlow` and
    :class:`~jkoflow.solvers.JKOFlow` (see the module notes).

    Subclasses call :meth:`_init_density` (checks, space, quadrature, initial state),
    build their residual with :meth:`density_expr` and :attr:`dx`, then call
    ``TimeIntegrator.__init__`` and finally :meth:`_finish_density`.
    """

    # ------------------------------------------------------------ set-up
    def _init_density(self, energy: Energy, rho0: Function, variable: str,
                      mass: float | None, quadrature_degree: int | None,
                      bounded: bool = False) -> Function:
        """Validate the input and return the initial density variable (a Function in
        the space of ``rho0``, named ``"log_density"`` or ``"density"``)."""
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be a jkoflow Energy, got {type(energy).__name__}")
        if variable == "auto":
            variable = "log" if energy.entropic else "density"
        if variable not in VARIABLES:
            raise ValueError(f"unknown variable={variable!r}; valid: {['auto', *VARIABLES]}")
        self.geometry = geom = energy.geometry
        self.energy = energy
        self.variable = variable
        self.bounded = bool(bounded)
        m0 = check_density(geom, rho0, strictly_positive=(variable == "log"))
        V = self.V = rho0.function_space()
        k = V.ufl_element().embedded_superdegree
        self.quadrature_degree = geom.quadrature_degree_for(k, quadrature_degree)
        self.dx = geom.dx(degree=self.quadrature_degree)
        u0 = Function(V, name="log_density" if variable == "log" else "density")
        if variable == "log":
            u0.interpolate(ufl.ln(rho0))
            if mass is not None:
                m = float(assemble(ufl.exp(u0) * self.dx))
                u0.assign(u0 + math.log(check_positive("mass", mass) / m))
        else:
            u0.assign(rho0)
            if mass is not None:
                u0.assign(u0 * (check_positive("mass", mass) / m0))
        return u0

    def _finish_density(self):
        """After ``TimeIntegrator.__init__``: the conserved mass and the diagnostics."""
        self.initial_mass = self.mass()
        self.mass_corrections: list[float] = []
        self.min_density = global_min(self.density_field) if self.variable == "density" \
            else None
        self._rho_out = Function(self.V, name="density")
        self._rho_key = None

    # ------------------------------------------------- the representation
    def density_expr(self, u):
        r""":math:`\rho = R(u)`: :math:`e^u` for the log variable, :math:`u` otherwise."""
        return ufl.exp(u) if self.variable == "log" else u

    def density_derivative(self, u):
        r""":math:`R'(u)`: :math:`e^u` for the log variable, 1 otherwise."""
        return ufl.exp(u) if self.variable == "log" else ufl.as_ufl(1.0)

    def _density_part(self, w: Function) -> Function:
        """The density variable of a state ``w`` (its first field if mixed)."""
        return w.subfunctions[0] if len(w.function_space()) > 1 else w

    @property
    def density_field(self) -> Function:
        """The density variable (log-density or density) of the state, a Function."""
        return self._density_part(self.u)

    @property
    def rho_expr(self):
        """The density as a UFL expression of the state (exact for integrals)."""
        return self.density_expr(self.density_field)

    @property
    def rho(self) -> Function:
        """The current density as a Function named ``"density"``: the state itself for the
        density variable, else the nodal interpolant of :math:`e^l` (use
        :attr:`rho_expr` for exact integrals)."""
        if self.variable == "density":
            return self.density_field
        key = (self.step_number, self.t, self.num_steps)
        if self._rho_key != key:
            self._rho_out.interpolate(self.rho_expr)
            self._rho_key = key
        return self._rho_out

    # ---------------------------------------------------------- quantities
    # The diagnostics' forms are built and preprocessed once per solver
    # (:class:`~jkoflow.solvers.common.FormValue`): observers evaluate the same few
    # functionals of the current state after every step.
    @cached_property
    def _mass_value(self) -> FormValue:
        return FormValue(self.rho_expr * self.dx)

    def mass(self) -> float:
        r""":math:`\int_M\rho\,\mathrm{dvol}` with the solver's quadrature (collective)."""
        return self._mass_value()

    def energy_value(self) -> float:
        r""":math:`J(\rho)` with the solver's quadrature (collective).

        For entropic energies in the density variable, :math:`U(\rho)` is taken as 0
        where :math:`\rho \le 0` (its continuous extension at 0), so round-off
        undershoots do not give NaN.
        """
        return self._energy_value()

    @cached_property
    def _energy_value(self) -> FormValue:
        return FormValue(self.energy.value_integrand(self.rho_expr) * self.dx)

    def dissipation(self) -> float:
        r""":math:`I_J(\rho) = \int|\nabla_g\,\delta J/\delta\rho|_g^2\rho = -dJ/dt` along
        the WGF (the relative Fisher information for KL)."""
        return self._dissipation_value()

    @cached_property
    def _dissipation_value(self) -> FormValue:
        geom, en, rho = self.geometry, self.energy, self.rho_expr
        if self.variable == "log":
            # grad g = U''(rho) grad rho + grad V = D(rho) grad l + grad V (no log(exp l))
            grad_g = en.diffusivity(rho) * geom.grad(self.density_field)
            if en.V is not None:
                grad_g = grad_g + geom.grad(en.V)
            return FormValue(geom.norm2(grad_g) * rho * self.dx)
        return FormValue(geom.grad_norm2(en.first_variation(rho)) * rho * self.dx)

    def output_functions(self) -> list[Function]:
        """``density`` (and ``log_density`` for the log variable) for VTK output."""
        return [self.rho] + ([self.density_field] if self.variable == "log" else [])

    # ---------------------------------------------------------------- hooks
    def error_norm(self, a: Function, b: Function) -> float:
        r"""Relative :math:`L^2` difference of the two densities (the controller's measure;
        other fields, e.g. an algebraic potential, are not controlled)."""
        ra = self.density_expr(self._density_part(a))
        rb = self.density_expr(self._density_part(b))
        num = float(assemble((ra - rb) ** 2 * self.dx))
        den = float(assemble(ra ** 2 * self.dx))
        return math.sqrt(num / den)

    def check_state(self) -> str | None:
        r"""Reject non-finite states; for the log variable remove the mass defect left by
        the SNES tolerance (:math:`l \gets l + \log(m_0/m)`), for bounded densities the
        mass created at active bounds (scaling); record the minimum density and log
        negative ones (density variable)."""
        msg = super().check_state()
        if msg is not None:
            return msg
        u = self.density_field
        if self.variable == "log":
            ratio = self.initial_mass / self.mass()
            self.mass_corrections.append(ratio - 1.0)
            u.assign(u + math.log(ratio))
            return None
        lo = global_min(u)
        self.min_density = min(self.min_density, lo)
        if self.bounded:
            ratio = self.initial_mass / self.mass()
            self.mass_corrections.append(ratio - 1.0)
            u.assign(u * ratio)
        elif lo < 0:
            logger.warning("%s (density variable): negative density %.3g near t = %g",
                           self.label, lo, self.t)
        return None

    def checkpoint_metadata(self) -> dict:
        """The protocol's record plus the quadrature degree."""
        meta = super().checkpoint_metadata()
        meta["quadrature_degree"] = self.quadrature_degree
        return meta

    def _restore_state(self, state: Function, info: dict):
        super()._restore_state(state, info)
        self.initial_mass = float(info.get("reference_mass", self.mass()))
        self._rho_key = None

    def describe(self) -> str:
        """One line: solver, energy, geometry, representation, space, time integration."""
        return (f"{type(self).__name__} of {self.energy.name} on {self.geometry.name}: "
                f"{self._describe_form()}variable={self.variable}, {self.V.ufl_element()}, "
                f"{self.u.function_space().dim()} dofs, quadrature degree "
                f"{self.quadrature_degree}, {self.tableau}, dt={self.dt:g}, "
                f"adaptive={self.adaptive}")

    def _describe_form(self) -> str:
        return ""
