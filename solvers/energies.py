r"""Energies :math:`J(\rho) = \int_M U(\rho)\,\mathrm{dvol} + \int_M V\rho\,\mathrm{dvol}` in UFL.

An :class:`Energy` is defined by its internal energy density :math:`U` (a Python
callable acting on UFL expressions) and a potential :math:`V` (a UFL expression).
Everything the solvers need is *derived* with UFL, not coded per energy:

* the first variation :math:`\delta J/\delta\rho = U'(\rho) + V` (``ufl.diff``);
* :math:`U''(\rho)` and the pressure :math:`P(\rho) = \rho U'(\rho) - U(\rho)`, with
  :math:`\rho\nabla U'(\rho) = \nabla P(\rho)`;
* the metric curvature (the implicit-bias term of Halmos & Hanin)

  .. math:: I_J(\rho) = \int_M |\nabla_g \tfrac{\delta J}{\delta\rho}|_g^2\,\rho\,\mathrm{dvol},

  Fisher information for the entropy, relative Fisher information for KL, kinetic
  energy :math:`\int|\nabla V|^2\rho` for a potential energy;
* the first variation of :math:`I_J` as a weak form, ``derivative(I_J, rho, v)``,
  whose strong form is :math:`|\nabla g|^2 - 2U''(\rho)\operatorname{div}(\rho\nabla g)`.

* the corrected energy :math:`F_\eta = J + (\eta/4) I_J` (:meth:`Energy.corrected_form`),
  whose JKO steps are second order for the WGF of :math:`J`, and the modified energy
  :math:`J - (\eta/4) I_J` (:meth:`Energy.modified_form`): one term, two signs;

* the Wasserstein flux :math:`\rho\nabla_g g = P'(\rho)\nabla_g\rho + \rho\nabla_g V`
  (:meth:`Energy.flux`, also in log-density variables) and the strong form of
  :math:`\delta I_J/\delta\rho` (:meth:`Energy.curvature_variation_strong`).

Built-ins: :func:`entropy`, :func:`kl` (Fokker--Planck), :func:`porous_medium`,
:func:`potential_energy`; any other :math:`U` (a callable on UFL expressions) and
:math:`V` (UFL) through :class:`Energy`.  The tests compare every built-in with the
hand-derived formulas.  Interaction energies :math:`\tfrac12\iint W\rho\rho` (optional
in the design) are not implemented.
"""
from __future__ import annotations

from typing import Callable

import ufl
from firedrake import Function, TestFunction, TrialFunction, assemble, derivative, solve

__all__ = ["Energy", "entropy", "kl", "fokker_planck", "porous_medium",
           "potential_energy"]


class Energy:
    r"""An energy :math:`J(\rho) = \int U(\rho) + V\rho` on a geometry.

    Parameters
    ----------
    geometry
        A :class:`jkoflow.meshes.Geometry`.
    U
        Internal energy density, a callable ``U(r)`` returning a UFL expression, or
        ``None`` for no internal energy.
    V
        Potential: a UFL expression, a ``Function``, a number, a callable of the
        spatial coordinate ``V(x)``, or ``None``.  Checked: it must live on the
        geometry's mesh and be finite at the vertices and cell midpoints.
    name
        Label for logs.
    entropic
        ``True`` if :math:`U''(r) = 1/r` (entropy-like): then log-density
        formulations are exact and positivity is required (:math:`\rho > 0`).

    Notes
    -----
    All derived quantities are UFL expressions of the density that is passed in,
    so the same energy serves every solver and every formulation.
    """

    def __init__(self, geometry, U: Callable | None = None, V=None, *,
                 name: str = "energy", entropic: bool = False):
        self.geometry = geometry
        self.U = U
        if V is not None and callable(V) and not isinstance(V, (ufl.core.expr.Expr, Function)):
            V = V(geometry.x)
        self.V = None if V is None else ufl.as_ufl(V)
        if self.V is not None:
            from .common import check_potential
            check_potential(geometry, self.V)
        self.name = name
        self.entropic = entropic

    # ----------------------------------------------------------- pointwise
    def _derivatives(self, rho):
        """(U, U', U'') at rho, by UFL differentiation of ``self.U``."""
        if self.U is None:
            zero = ufl.zero()
            return zero, zero, zero
        r = ufl.variable(rho)
        u = self.U(r)
        du = ufl.diff(u, r)
        d2u = ufl.diff(du, r)
        return u, du, d2u

    def integrand(self, rho):
        r"""Pointwise energy density :math:`U(\rho) + V\rho`."""
        u = self._derivatives(rho)[0]
        return u if self.V is None else u + self.V * rho

    def value_integrand(self, rho):
        r"""The integrand :math:`U(\rho) + V\rho` for *evaluating* :math:`J` at a
        density that may vanish: for an entropic energy :math:`U(\rho)` is taken as 0
        where :math:`\rho \le 0` (its continuous extension at 0), so that
        :math:`0\log 0` and round-off undershoots do not give NaN.  Not for forms that
        are differentiated (the solvers' iterates are positive).

        Parameters
        ----------
        rho
            The density (a UFL expression).

        Returns
        -------
        ufl.core.expr.Expr
            The integrand of :math:`J(\rho)`.
        """
        if not self.entropic:
            return self.integrand(rho)
        Vrho = self.V * rho if self.V is not None else 0
        return ufl.conditional(ufl.gt(rho, 0), self.integrand(rho), Vrho)

    def first_variation(self, rho, log_rho=None):
        r""":math:`g = \delta J/\delta\rho = U'(\rho) + V` as a UFL expression.

        Parameters
        ----------
        rho
            The density (UFL expression).
        log_rho
            Optionally :math:`l = \log\rho`, for an ``entropic`` energy only: then
            :math:`U'(\rho) = l + U'(1)` (exact, as :math:`U'' = 1/r`), so that no
            logarithm of a tiny density is formed.

        Raises
        ------
        ValueError
            If ``log_rho`` is given for a non-entropic energy.
        """
        if log_rho is None:
            du = self._derivatives(rho)[1]
        elif not self.entropic:
            raise ValueError(f"log_rho is only meaningful for entropic energies, not for "
                             f"{self.name!r}")
        else:
            du = log_rho + self._derivatives(ufl.as_ufl(1.0))[1]
        return du if self.V is None else du + self.V

    def second_derivative(self, rho):
        r""":math:`U''(\rho)` as a UFL expression."""
        return self._derivatives(rho)[2]

    def pressure(self, rho):
        r"""Pressure :math:`P(\rho) = \rho U'(\rho) - U(\rho)`, so :math:`\rho\nabla U' = \nabla P`."""
        u, du, _ = self._derivatives(rho)
        return rho * du - u

    def diffusivity(self, rho):
        r""":math:`P'(\rho) = \rho U''(\rho)` (1 for entropies, :math:`m\rho^{m-1}` for PME).

        For an ``entropic`` energy (declared :math:`U'' = 1/r`) this is the constant 1,
        which avoids the round-off :math:`0\cdot\infty` of :math:`\rho\cdot(1/\rho)`
        where a log-density underflows.
        """
        if self.entropic:
            return ufl.as_ufl(1.0)
        return rho * self.second_derivative(rho)

    def flux(self, rho, log_rho=None):
        r"""The Wasserstein flux :math:`\rho\nabla_g(\delta J/\delta\rho)`, written as
        :math:`P'(\rho)\nabla_g\rho + \rho\nabla_g V` so it stays finite where
        :math:`\rho = 0` (porous medium).

        Parameters
        ----------
        rho
            The density (UFL expression).
        log_rho
            Optionally :math:`l = \log\rho` (then :math:`\rho = e^l` is assumed and
            :math:`\nabla_g\rho = \rho\nabla_g l` is used, which is exact and avoids
            differentiating :math:`e^l`).
        """
        geom = self.geometry
        grad_rho = geom.grad(rho) if log_rho is None else rho * geom.grad(log_rho)
        f = self.diffusivity(rho) * grad_rho if self.U is not None else ufl.zero(grad_rho.ufl_shape)
        if self.V is not None:
            f = f + rho * geom.grad(self.V)
        return f

    # ---------------------------------------------------------------- forms
    def form(self, rho) -> ufl.Form:
        r"""The UFL form :math:`J(\rho)`."""
        return self.integrand(rho) * self.geometry.dx

    def value(self, rho) -> float:
        r"""The number :math:`J(\rho)` (collective; :math:`0\log 0 = 0`,
        :meth:`value_integrand`)."""
        return float(assemble(self.value_integrand(rho) * self.geometry.dx))

    def curvature_form(self, rho, log_rho=None, dx=None) -> ufl.Form:
        r""":math:`I_J(\rho) = \int|\nabla_g g|_g^2\rho\,\mathrm{dvol}` as a UFL form.

        ``log_rho`` as in :meth:`first_variation` (entropic energies:
        :math:`|\nabla_g l + \nabla_g V|_g^2 e^l`); ``dx`` a volume measure of the
        geometry (e.g. a solver's, with its quadrature rule), default ``geometry.dx``.
        """
        dx = self.geometry.dx if dx is None else dx
        return self.geometry.grad_norm2(self.first_variation(rho, log_rho)) * rho * dx

    def curvature(self, rho) -> float:
        r"""The number :math:`I_J(\rho)` (Fisher information for the entropy)."""
        return float(assemble(self.curvature_form(rho)))

    def curvature_variation(self, rho: Function, v=None) -> ufl.Form:
        r"""Weak first variation of :math:`I_J`: ``derivative(I_J(rho), rho, v)``.

        Its strong form is :math:`|\nabla_g g|_g^2 - 2U''(\rho)\operatorname{div}_g(\rho\nabla_g g)`.
        """
        v = v if v is not None else TestFunction(rho.function_space())
        return derivative(self.curvature_form(rho), rho, v)

    def curvature_variation_strong(self, rho):
        r"""Strong form of :math:`\delta I_J/\delta\rho`,
        :math:`|\nabla_g g|_g^2 - 2U''(\rho)\operatorname{div}_g(\rho\nabla_g g)` with
        :math:`g = \delta J/\delta\rho`.

        Needs a twice-differentiable ``rho`` (a UFL expression of the coordinates or a
        high-degree Function: the divergence is taken cellwise).  On a domain with
        boundary it equals the weak :meth:`curvature_variation` only when the flux
        :math:`\rho\nabla_g g` has zero normal component there.
        """
        geom = self.geometry
        g = self.first_variation(rho)
        return geom.grad_norm2(g) - 2 * self.second_derivative(rho) * geom.div(rho * geom.grad(g))

    def biased_form(self, rho, c, log_rho=None, dx=None) -> ufl.Form:
        r"""The form :math:`J(\rho) + c\,I_J(\rho)`: the one mechanism behind
        :meth:`modified_form` (:math:`c = -\eta/4`) and :meth:`corrected_form`
        (:math:`c = +\eta/4`).  ``log_rho`` and ``dx`` as in :meth:`curvature_form`."""
        dx = self.geometry.dx if dx is None else dx
        return self.integrand(rho) * dx + c * self.curvature_form(rho, log_rho, dx)

    def modified_form(self, rho, eta, log_rho=None, dx=None) -> ufl.Form:
        r"""The modified energy :math:`J^\eta = J - (\eta/4) I_J` of Halmos & Hanin:
        the energy whose WGF plain JKO steps follow to :math:`O(\eta^2)`."""
        return self.biased_form(rho, -eta / 4, log_rho, dx)

    def corrected_form(self, rho, eta, log_rho=None, dx=None) -> ufl.Form:
        r"""The corrected energy :math:`F_\eta = J + (\eta/4) I_J`.

        JKO steps of size :math:`\eta` on :math:`F_\eta` follow the WGF of
        :math:`F_\eta - (\eta/4) I_{F_\eta} = J + O(\eta^2)`: a second-order,
        still variational, scheme for the WGF of :math:`J`
        (:class:`~jkoflow.solvers.JKOStep` with ``correction="implicit-bias"``).

        Parameters
        ----------
        rho
            The density (UFL expression).
        eta
            The step size (a number or, in solvers, a ``Constant``).
        log_rho
            Optionally :math:`\log\rho` (entropic energies): the first variation is
            then :math:`l + U'(1) + V` and the correction
            :math:`\tfrac{\eta}{4}\int|\nabla_g l + \nabla_g V|_g^2 e^l`.
        dx
            Volume measure (default ``geometry.dx``).
        """
        return self.biased_form(rho, eta / 4, log_rho, dx)

    def with_potential(self, V) -> "Energy":
        """The same internal energy (and name, ``entropic`` flag) with potential ``V``."""
        return Energy(self.geometry, self.U, V, name=self.name, entropic=self.entropic)

    def with_projected_potential(self, space, dx=None) -> "Energy":
        r"""This energy with :math:`V` replaced by its :math:`L^2` projection
        :math:`\Pi_h V` onto ``space`` (integrals with the measure ``dx``, default
        ``geometry.dx``); unchanged if there is no potential.

        Used by :meth:`~jkoflow.solvers.JKOStep.limit_energy`: the WGF of the
        projected energy, discretised in ``space``, is the limit
        :math:`\eta \to 0` of the discrete log-density JKO step.
        """
        if self.V is None:
            return self
        u, v = TrialFunction(space), TestFunction(space)
        dx = self.geometry.dx if dx is None else dx
        projected = Function(space, name="projected_potential")
        solve(u * v * dx == self.V * v * dx, projected,
              solver_parameters={"ksp_type": "cg", "pc_type": "jacobi", "ksp_rtol": 1e-14,
                                 "ksp_atol": 0.0, "ksp_max_it": 2000})
        return self.with_potential(projected)

    def __repr__(self) -> str:
        return f"Energy({self.name!r}, on {self.geometry.name!r})"


def _entropy_density(r):
    return r * ufl.ln(r)


def entropy(geometry) -> Energy:
    r"""Boltzmann entropy :math:`\int\rho\log\rho`: its WGF is the heat equation."""
    return Energy(geometry, _entropy_density, None, name="entropy", entropic=True)


def kl(geometry, V) -> Energy:
    r"""Relative entropy to :math:`\pi\propto e^{-V}`: :math:`\int\rho\log\rho + V\rho`.

    Its WGF is the Fokker--Planck equation
    :math:`\partial_t\rho = \Delta_g\rho + \operatorname{div}_g(\rho\nabla_g V)`.
    """
    return Energy(geometry, _entropy_density, V, name="kl", entropic=True)


fokker_planck = kl


def porous_medium(geometry, m: float = 2.0, V=None) -> Energy:
    r"""Porous-medium energy :math:`\int\rho^m/(m-1)` (+ :math:`V\rho`), :math:`m > 1`."""
    if not m > 1:
        raise ValueError(f"porous medium exponent must satisfy m > 1, got m = {m}")
    return Energy(geometry, lambda r: r ** m / (m - 1), V, name=f"porous_medium(m={m:g})")


def potential_energy(geometry, V) -> Energy:
    r"""Potential energy :math:`\int V\rho` (Riemannian gradient descent of particles)."""
    if V is None:
        raise ValueError("potential_energy needs a potential V")
    return Energy(geometry, None, V, name="potential")
