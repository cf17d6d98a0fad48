r"""The discrete dynamic (Benamou--Brenier) optimal-transport problem.

Transport time :math:`s\in[0,1]` is cut into :math:`N` slices of length
:math:`\Delta s = 1/N`.  Densities :math:`\rho_i` live at the slice ends and
potentials :math:`\phi_i` on the slices; with a slice average :math:`\rho_{i-1/2}`
of :math:`\rho_{i-1}, \rho_i` the discrete Lagrangian is

.. math::

    L = \sum_{i=1}^N \Big[\int_M(\rho_i-\rho_{i-1})\phi_i\,\mathrm{dvol}
        - \frac{\Delta s}{2}\int_M\rho_{i-1/2}|\nabla_g\phi_i|_g^2\,\mathrm{dvol}\Big]
        + T(\rho_N),

minimised over the unknown densities and maximised over the potentials.  The
supremum over :math:`\phi_i` is a weighted Poisson problem, the discrete continuity
equation :math:`\rho_i - \rho_{i-1} = -\Delta s\,\operatorname{div}_g(\rho_{i-1/2}
\nabla_g\phi_i)`; the stationarity in :math:`\rho_i` is a discrete Hamilton--Jacobi
equation.  The terminal term :math:`T` is :math:`\eta J(\rho_N)` for a JKO step, or
absent when :math:`\rho_N` is prescribed (a :math:`W_2` geodesic).  At the saddle
point :math:`W_2^2 \approx \Delta s\sum_i\int\rho_{i-1/2}|\nabla_g\phi_i|^2`.
Testing the continuity equation with 1 shows that every slice has exactly the mass
of :math:`\rho_0`.  The KKT system (derivatives of :math:`L` with respect to the
densities and potentials, and their Jacobian, all derived by UFL) is solved by Newton
(PETSc SNES).  It is written and assembled field by field
(:mod:`jkoflow.solvers.slice_assembly`): interior slices share their compiled kernels,
so the first-use compile time does not grow with :math:`N`.

Two representations of the densities (``variable=``):

* ``"log"`` (default for entropic energies): the unknowns are log-densities
  :math:`l_i\in P_k`, :math:`\rho_i = e^{l_i}`, positive by construction; no barrier.
  The slice average is the **geometric mean** :math:`\sqrt{\rho_{i-1}\rho_i}`, evaluated
  as :math:`e^{(l_{i-1}+l_i)/2}` (the product :math:`\rho_{i-1}\rho_i` underflows once
  :math:`l < -372`), which is
  second-order accurate like the arithmetic one and keeps :math:`L` convex in
  :math:`\rho`, but, unlike it, makes the slice equation
  :math:`2\sinh(\tfrac{l_i-l_{i-1}}{2}) = -\Delta s(\operatorname{div} v + v\cdot\nabla
  l_{i-1/2})` solvable for any data.  With the arithmetic mean that equation has no
  positive solution once :math:`\Delta s\,|v\cdot\nabla\log\rho| \gtrsim 2` (Gaussian
  tails), and Newton fails there whatever the globalisation.  The stationarity is
  taken with respect to :math:`\rho_i` (not :math:`l_i`), so Hamilton--Jacobi rows stay
  O(1) where :math:`\rho` is tiny.
* ``"density"``: the unknowns are :math:`\rho_i\in P_k` (arithmetic mean), kept
  non-negative by the primal-dual interior-point method of
  :mod:`jkoflow.solvers.interior_point` (nodal duals, a uniform barrier weight, a
  strictly interior start, separate primal and dual fraction-to-boundary steps and a
  monotone barrier decrease, all in one SNES solve).  The data may vanish on open
  sets: this is the form for compactly supported densities.

Quadrature (``quadrature=``): Gauss rules by default.  With ``"vertex"`` (:math:`P_1`
only) every integral uses the vertex rule, the trapezoidal rule of each cell: the
mass matrices are lumped, the stiffness weights :math:`\rho_{i-1/2}` are averaged over
each cell's vertices, and the energy is :math:`\sum_j m_j\,(U(\rho_j) + V_j\rho_j)`
(:math:`m_j` the lumped masses).  The densities then enter :math:`L` only through their
nodal values, :math:`\partial/\partial l_j = \rho_j\,\partial/\partial\rho_j`, and
the Newton system of a log step becomes symmetric once its Hamilton--Jacobi rows are
scaled by the nodal densities: the ``"ldlt"`` solver
(:mod:`~jkoflow.solvers.symmetric_solve`) factorises it by :math:`LDL^\top`.  The
vertex rule is second order like Gauss quadrature (``tests/test_vertex_quadrature.py``:
rate 2 in :math:`h` for a Gaussian step); masses are the lumped ones.  Its coarse-mesh
cold steps can need more Newton iterations where the tails are steep per cell
(the 2D bump on :math:`16^2` cells: 23 against 5; from :math:`32^2` on 8--9 against 6--7).

Spaces: :math:`\rho_i` (or :math:`l_i`) and :math:`\phi_i` both continuous
:math:`P_k`.  Then the constraint operator (a mass matrix) is square and invertible,
so each :math:`\rho_i` is determined by the potentials and no spurious checkerboard
mode can appear, which does happen when densities carry more degrees of freedom
than potentials (e.g. :math:`P_0`/:math:`P_1`, cf. Natale--Todeschi).

Meshes: avoid the *crossed* triangulation of squares (four triangles per square,
the default of :func:`~jkoflow.meshes.rectangle`) with density unknowns.  There the
angles opposite the square's edges are right angles, so the :math:`P_1` stiffness
matrix couples corner vertices only to square centres, and the discrete
divergence :math:`M^{-1}K\phi` of a smooth potential is a checkerboard (for
:math:`\phi = |x|^2/2`: 6 at the centres, 0 at the corners, instead of 2).  A JKO
step then carries an :math:`O(\eta)` alternation between the two kinds of vertices
that refinement does not remove: for a potential energy the :math:`L^1` error stays
at :math:`10^{-2}` from :math:`32^2` to :math:`64^2` squares, while on squares cut
along one diagonal, or on quadrilaterals, it is below that of the :math:`P_1`
interpolant of the exact answer (``tests/test_jko_ipm.py``).  Moments, and errors
tested against smooth functions, are not affected.  Log unknowns show a smaller
alternation that falls like :math:`h`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import finat
import numpy as np
import ufl
from firedrake import (Constant, Function, FunctionSpace, MixedFunctionSpace, TestFunction,
                       VectorSpaceBasis, assemble, derivative, split)
from mpi4py import MPI
from ufl.algorithms.map_integrands import map_integrand_dags
from ufl.corealg.multifunction import MultiFunction

from .common import (FormValue, SolverDivergedError, SolverStats, check_int, global_min,
                     logger, nodal_exp, solve_or_raise)
from .continuation import solve_with_continuation
from .interior_point import DEFAULT_BARRIER, InteriorPoint
from .presets import resolve_parameters
from .slice_assembly import SliceAssembledSolver

# UFL warns when it hashes the vertex rule (a FInAT QuadratureRule in the metadata);
# the hash is the rule's own and safe.
warnings.filterwarnings("ignore", message="Applying str\\(\\) to a metadata value of type "
                        "QuadratureRule", category=UserWarning)

__all__ = ["BenamouBrenier", "TransportResult", "DEFAULT_BARRIER",
           "density_unknowns_supported"]


def density_unknowns_supported(geometry, degree: int) -> bool:
    r"""Whether density unknowns (the interior point) work with :math:`P_k`,
    ``degree`` :math:`= k`, on ``geometry``: :math:`P_1` everywhere, higher degrees on
    intervals only.  The barrier and complementarity rows are nodal only for
    :math:`P_1` (vertex quadrature); for :math:`P_2` on triangles no positive nodal
    rule exists, the barrier falls back to the full rule, where a :math:`P_2` density
    with positive nodal values can be negative, and the steps fail (measured
    2026-12-07: KL and porous-medium steps from smooth positive data on 12x12 cut
    squares failed at every continuation stage)."""
    return degree == 1 or geometry.mesh.topological_dimension == 1


def vertex_measure(geometry, V):
    """The volume measure with the vertex (mass-lumping) quadrature rule for P1.

    FInAT's degree-1 KMV rule is the vertex rule on intervals, triangles and
    quadrilaterals (``scheme="vertex"`` metadata is not honoured by TSFC).
    """
    rule = finat.quadrature.make_quadrature(V.finat_element.cell, 1, "KMV")
    return geometry.dx(scheme=rule)


class _LogOfExp(MultiFunction):
    r"""Rewrite :math:`\ln(e^{x})` as :math:`x` (it appears when an energy written in
    :math:`\rho` is evaluated at :math:`\rho = e^{l}`, and overflows once
    :math:`e^{l}` underflows, :math:`l < -745`)."""
    expr = MultiFunction.reuse_if_untouched

    def ln(self, o, x):
        if isinstance(x, ufl.mathfunctions.Exp):
            return x.ufl_operands[0]
        return self.reuse_if_untouched(o, x)


def simplify_log_of_exp(form: ufl.Form) -> ufl.Form:
    r"""``form`` with every :math:`\ln(e^{x})` replaced by :math:`x`."""
    return map_integrand_dags(_LogOfExp(), form)


@dataclass
class TransportResult:
    """What one dynamic-transport solve reports.

    Attributes
    ----------
    rho
        The end density :math:`\\rho_N` as a :math:`P_k` ``Function`` (for a log
        representation, the nodal interpolant of :math:`e^{l_N}`).
    log_rho
        :math:`l_N` for the log representation, else ``None``.
    phi
        The potential on the last slice :math:`\\phi_N`.
    slices
        The discrete geodesic :math:`\\rho_0, \\dots, \\rho_N` as ``Function`` s.
    cost
        The squared Wasserstein distance :math:`W_2^2(\\rho_0, \\rho_N)` as computed.
    mass
        :math:`\\int\\rho_N` with the solver's quadrature (conserved exactly).
    snes_iterations, linear_iterations
        Totals over all barrier levels.
    barrier_levels
        List of ``(mu, snes iterations)`` per level.
    """
    rho: Function
    log_rho: Function | None
    phi: Function
    slices: list
    cost: float
    mass: float
    snes_iterations: int
    linear_iterations: int
    barrier_levels: list = field(default_factory=list)


class BenamouBrenier(SolverStats):
    r"""Discrete dynamic OT problem with free (JKO) or fixed (geodesic) end density.

    Parameters
    ----------
    geometry
        A :class:`jkoflow.meshes.Geometry`.
    N
        Number of transport-time slices (:math:`\ge 1`).
    terminal
        ``terminal(rho_N)`` returning the UFL form :math:`T(\rho_N)` (free end), or
        ``None`` for a prescribed end density.
    degree
        Polynomial degree :math:`k` of the :math:`P_k` spaces for density and potential.
    variable
        ``"log"`` (log-density unknowns) or ``"density"`` (interior point).
    barrier
        Interior-point options for ``variable="density"``, keys as in
        :data:`~jkoflow.solvers.interior_point.DEFAULT_BARRIER`.
    quadrature_degree
        Quadrature degree of all integrals (the rule of
        :meth:`~jkoflow.meshes.Geometry.quadrature_degree_for`: this, else the
        geometry's, else :math:`2k+2`).
    quadrature
        ``"gauss"`` (default; Gauss rules of ``quadrature_degree``) or ``"vertex"``:
        the vertex rule for every integral, :math:`P_1` only (module docstring); the
        form whose log steps the ``"ldlt"`` solver takes.
    solver_parameters, solver_parameters_extra, options_prefix, appctx
        Options by the rule of :func:`~jkoflow.solvers.resolve_parameters` (a preset
        name or a full dict, updated by the extra dict); the default is the
        ``"direct"`` preset.  A named preset is adapted to the formulation: no
        merit-function line search (the interior point and the log clipping set the
        whole step), at least the barrier's ``max_it`` Newton iterations for density
        unknowns, ``snes_rtol`` at most 1e-12 for log unknowns, and for a geodesic with
        log unknowns GMRES around an LU instead of ``preonly`` (the potentials' null
        space).  A dict is taken as given.
    """

    def __init__(self, geometry, N: int, terminal=None, *, degree: int = 1,
                 variable: str = "density", barrier: dict | None = None,
                 quadrature_degree: int | None = None, quadrature: str = "gauss",
                 solver_parameters: dict | None = None,
                 solver_parameters_extra: dict | None = None,
                 options_prefix: str = "jko", appctx: dict | None = None):
        if variable not in ("density", "log"):
            raise ValueError(f"unknown variable {variable!r}; valid: 'density', 'log'")
        self.geometry = geometry
        self.variable = variable
        self.N = check_int("N (number of transport-time slices)", N, 1)
        self.degree = check_int("degree", degree, 1)
        if variable == "density" and not density_unknowns_supported(geometry, self.degree):
            raise ValueError(
                f"density unknowns (the interior point) need P1 on {geometry.mesh.topological_dimension}D "
                f"cells, got degree={self.degree}: its barrier and complementarity rows are "
                "nodal only for P1 (vertex quadrature); with P2 on triangles no positive "
                "nodal rule exists, the barrier is integrated with the full rule, where a "
                "P2 density with positive nodal values can be negative, and the steps fail. "
                "Use degree=1, or variable='log' for an entropic energy")
        self.barrier = {**DEFAULT_BARRIER, **(barrier or {})}
        unknown = set(self.barrier) - set(DEFAULT_BARRIER)
        if unknown:
            raise ValueError(f"unknown barrier keys {sorted(unknown)}; "
                             f"valid: {sorted(DEFAULT_BARRIER)}")
        self.fixed_end = terminal is None
        self.V = V = FunctionSpace(geometry.mesh, "CG", self.degree)
        # End-point data in the chosen representation (log-density or density).
        self.start = Function(V, name="start")
        self.end = Function(V, name="end") if self.fixed_end else None
        self.n_rho = self.N - 1 if self.fixed_end else self.N
        # Primal-dual interior point: one nodal dual variable z_i >= 0 per unknown
        # density slice (complementarity rho_i z_i = mu w at the vertices).
        self.n_dual = self.n_rho if variable == "density" else 0
        # Layout of the mixed space: density unknowns, potentials, duals (as slices
        # of the list of subspaces).
        self.rho_fields = slice(0, self.n_rho)
        self.phi_fields = slice(self.n_rho, self.n_rho + self.N)
        self.dual_fields = slice(self.n_rho + self.N, self.n_rho + self.N + self.n_dual)
        spaces = [V] * (self.n_rho + self.N + self.n_dual)
        self.W = MixedFunctionSpace(spaces)
        self.w = Function(self.W, name="transport_state")
        # Barrier parameter (absolute: the interior point sets it) and weight.
        self.mu = Constant(0.0)
        self.barrier_weight = Function(V, name="barrier_weight")
        # Gauge of the potentials when both ends are fixed (see below).
        self.gauge = Constant(0.0)
        #: The slice length 1/N, a Constant: the compiled forms do not depend on N.
        self.ds = Constant(1.0 / self.N)
        #: ``"gauss"`` or ``"vertex"``: the rule of every integral (module docstring).
        self.quadrature = quadrature
        if quadrature == "vertex":
            if self.degree != 1 or quadrature_degree is not None:
                raise ValueError(
                    "quadrature='vertex' (the vertex rule for every integral) needs P1 and "
                    f"no quadrature_degree; got degree={self.degree}, quadrature_degree="
                    f"{quadrature_degree}")
            self.dx = vertex_measure(geometry, self.V)
        elif quadrature == "gauss":
            qd = geometry.quadrature_degree_for(self.degree, quadrature_degree)
            self.dx = geometry.dx(degree=qd)
        else:
            raise ValueError(f"unknown quadrature {quadrature!r}; valid: 'gauss', 'vertex'")
        #: Measure of the complementarity rows (vertex rule for P1: diagonal blocks).
        self.barrier_measure = (vertex_measure(geometry, self.V) if self.degree == 1
                                else self.dx)

        subs = self.w.subfunctions
        self._phis = list(subs[self.phi_fields])
        #: The densities' representations at the slice ends, u_0 (data), the
        #: unknowns' Function views, and u_N (data) for a geodesic.
        self._ends = self._slice_ends(subs[self.rho_fields])
        self._rhos = [self.density(u) for u in self._ends]
        self._terminal_form = terminal
        self._placeholder_logs = {}
        rows = self._residual_rows(list(subs[self.dual_fields]))
        nullspace = None
        if self.fixed_end and variable == "log":
            # With both ends prescribed the potentials are defined up to one common
            # constant: that vector spans the Jacobian's null space.
            shift = Function(self.W)
            for p in shift.subfunctions[self.phi_fields]:
                p.assign(1.0)
            nullspace = VectorSpaceBasis([shift])
            nullspace.orthonormalize()
        # Density unknowns: the pre-check sets the whole step itself (basic line search).
        # Log unknowns: full Newton steps, each nodal log update clipped by the
        # pre-check (see _limit_log_step for why not a merit-function line search).
        # With both ends fixed the Jacobian is singular (a constant potential shift):
        # GMRES preconditioned by a null-pivot-tolerant LU, with the null space removed.
        # Named presets (the default "direct" included) are adapted to the formulation;
        # a dict is taken as given.
        max_it = self.barrier["max_it"]

        def tune(params: dict) -> dict:
            params["snes_linesearch_type"] = "basic"
            if variable == "density":
                params["snes_max_it"] = max(int(params.get("snes_max_it", 0)), max_it)
            else:
                # rtol 1e-12: one more (quadratic) step at most; the mass, exact up to
                # the continuity rows' residual, then holds to ~1e-13 (1e-10: ~1e-11).
                params["snes_rtol"] = min(float(params.get("snes_rtol", 1.0)), 1e-12)
            if nullspace is not None and params.get("ksp_type") == "preonly":
                # GMRES + LU reaches ~1e-11 relative in one iteration and then stagnates
                # at the LU's accuracy, which degrades with the mesh (the tails' rows are
                # tiny): rtol 1e-12 broke down at 144^2 cells after 60 iterations at
                # 2e-12.  Near convergence the right-hand side is itself small and the
                # stagnation level (~4e-12 absolute at 144^2) can exceed any relative
                # tolerance.  So: rtol 1e-9, and at most 20 iterations, whose last
                # (least-residual) iterate is Newton's step (ksp_converged_maxits);
                # Newton's own test still decides.
                params.update(ksp_type="gmres", ksp_rtol=1e-9, ksp_atol=0.0,
                              ksp_max_it=20, ksp_converged_maxits=True)
            return params

        params = resolve_parameters(solver_parameters, solver_parameters_extra, "direct",
                                    tune=tune)
        self.check_preconditioner(str(params.get("pc_python_type", "")))
        # The iterative preset's preconditioner reads the field layout from here.
        appctx = {"jko_transport": self, **(appctx or {})}
        self.solver = SliceAssembledSolver(self.w, rows, solver_parameters=params,
                                           options_prefix=options_prefix, appctx=appctx,
                                           nullspace=nullspace,
                                           log_scaled_rows=self._log_scaled_rows())
        self.options_prefix = options_prefix
        self._rho_local_indices = self.local_field_indices(self.rho_fields)
        self.interior_point = None
        if variable == "density" and geometry.crossed:
            logger.warning("density unknowns on a crossed triangulation (four triangles per "
                           "square): the step's density alternates between corner and "
                           "centre vertices; use rectangle(..., diagonal='left') or "
                           "quadrilateral=True (see jkoflow.solvers.benamou_brenier)")
        if variable == "density":
            self.interior_point = InteriorPoint(self, self.barrier)
            self.interior_point.attach(self.solver.snes)
        else:
            self.solver.snes.setLineSearchPreCheck(self._limit_log_step)
        #: Bound on each nodal log-density update per Newton step (log unknowns).
        self.max_log_step = 2.0
        self.continuation_path = []
        self.clipped_updates = 0
        self._volume = None
        self._cost_form = None
        self._mass_forms = {}
        self._init_stats()

    # ---------------------------------------------------------- internals
    def check_preconditioner(self, pc: str):
        """Raise a clear ``ValueError`` if this problem does not meet the requirements of
        the KKT preconditioner named ``pc`` (a class name or dotted path; others pass).

        Called at construction with the ``pc_python_type`` solver parameter, and by the
        preconditioners themselves when PETSc sets them up (command-line options).
        """
        name = pc.rsplit(".", 1)[-1]
        if name == "ScaledLDLTPC" and (self.variable != "log" or self.quadrature != "vertex"):
            raise ValueError(
                "the 'ldlt' solver (ScaledLDLTPC) needs log unknowns (variable='log') and "
                "quadrature='vertex': only then is the Jacobian with its log-density rows "
                f"scaled by the nodal densities symmetric; got variable={self.variable!r}, "
                f"quadrature={self.quadrature!r}.  Use the 'direct' solver otherwise")
        if name in ("TransportSchurPC", "TransportSweepPC") and self.variable != "density":
            raise ValueError(f"the iterative KKT solver ({name}) needs density unknowns "
                             "(variable='density'): with log-densities the Schur "
                             "complement's rows scale like rho and vanish in the tails")
        if name == "TransportSweepPC" and (self.fixed_end or self.degree != 1):
            raise ValueError("the 'sweep' solver (TransportSweepPC) needs a free end density "
                             "(a JKO step) and P1 (its interior-point duals must be "
                             "vertex-lumped); use the direct solver otherwise")

    def _slice_lagrangian(self, ra, rb, p) -> ufl.Form:
        r"""One slice's term of :math:`L`: :math:`\int(\rho_b-\rho_a)\phi
        - \tfrac{\Delta s}{2}\int\rho_{ab}|\nabla_g\phi|^2`."""
        mid = self._mean(ra, rb)
        return ((rb - ra) * p - 0.5 * self.ds * mid * self.geometry.grad_norm2(p)) * self.dx

    def _slice_ends(self, unknowns) -> list:
        """``[u_0, *unknowns, u_N]``: the densities' representations at the slice ends,
        the data ``start`` (and ``end`` for a geodesic) around the unknowns."""
        return [self.start, *unknowns] + ([self.end] if self.fixed_end else [])

    def _placeholder(self, u) -> Function:
        """A placeholder density for the unknown ``u`` (its log for log unknowns)."""
        R = Function(self.V)
        if self.variable == "log":
            self._placeholder_logs[R] = u
        return R

    def _residual_rows(self, duals: list) -> list:
        r"""The KKT residual as one 1-form per field of the state (the order of
        :attr:`W`), for :class:`~jkoflow.solvers.slice_assembly.SliceAssembledSolver`.

        Row of :math:`\rho_i`: the derivative of the two slice terms that contain it
        (or of the last slice's and :math:`T`), taken with respect to a placeholder
        density :math:`R` then replaced by the density of :math:`u_i`: for log
        unknowns the stationarity in :math:`\rho`, not in :math:`l = \log\rho`,
        which keeps the Hamilton--Jacobi rows :math:`O(1)` where :math:`\rho` is tiny
        instead of scaling them by :math:`\rho`.  Density unknowns gain
        :math:`-z_i` and the complementarity rows :math:`\rho_i z_i = \mu\Delta s w`
        (vertex rule).  Row of :math:`\phi_i`: the discrete continuity equation of
        slice :math:`i`.  Interior slices give the same forms up to the fields they
        read, so they share compiled kernels.
        """
        v = TestFunction(self.V)
        rhos, phis, dxv = self._rhos, self._phis, self.barrier_measure
        rows = []
        for i in range(1, self.n_rho + 1):
            R = self._placeholder(self._ends[i])
            L = self._slice_lagrangian(rhos[i - 1], R, phis[i - 1])
            if i < self.N:
                L += self._slice_lagrangian(R, rhos[i + 1], phis[i])
            else:
                L += self._terminal_form(R)
            row = derivative(L, R, v)
            if duals:
                row += -duals[i - 1] * v * dxv
            rows.append(ufl.replace(row, {R: rhos[i]}))
        for i in range(1, self.N + 1):
            P = Function(self.V)
            row = derivative(self._slice_lagrangian(rhos[i - 1], rhos[i], P), P, v)
            row = ufl.replace(row, {P: phis[i - 1]})
            if i == 1 and self.fixed_end and self.variable == "density":
                # Both ends fixed: the potentials are defined up to one common
                # constant.  A tiny zeroth-order term in the first continuity rows
                # fixes it: summing all continuity rows forces int phi_1 = 0 (the end
                # masses are equal), so every slice keeps its mass exactly; the local
                # perturbation is 1e-12.
                row += -self.gauge * phis[0] * v * self.dx
            rows.append(row)
        for i, z in enumerate(duals, start=1):
            rows.append((rhos[i] * z - self.mu * self.ds * self.barrier_weight) * v * dxv)
        if self.variable == "log":
            rows = [simplify_log_of_exp(row) for row in rows]
        return rows

    def nodal_terminal(self, log_rho) -> ufl.Form | None:
        r"""A part :math:`S(l_N)` of the terminal term taken out of the placeholder
        stationarity: its row is :math:`e^{-l_N}\circ\partial S/\partial l_N`, the
        derivative with respect to the *nodal* density (``log_scaled_rows`` of
        :class:`~jkoflow.solvers.slice_assembly.SliceAssembledSolver`).  ``None`` here;
        a JKO step's corrected term with the vertex rule overrides it.

        Parameters
        ----------
        log_rho
            :math:`l_N` (a ``Function`` or a UFL expression).

        Returns
        -------
        ufl.Form or None
            The 0-form :math:`S(l_N)`, or ``None``.
        """
        return None

    def _log_scaled_rows(self) -> dict:
        """``{row of l_N: dS/dl_N}`` for :meth:`nodal_terminal`, or ``{}``."""
        if self.fixed_end or self.variable != "log":
            return {}
        l_N = self._ends[self.n_rho]
        S = self.nodal_terminal(l_N)
        if S is None:
            return {}
        B = derivative(S, l_N, TestFunction(self.V))
        return {self.n_rho - 1: simplify_log_of_exp(B)}

    @property
    def lagrangian(self) -> ufl.Form:
        """The discrete Lagrangian :math:`L` as one UFL form in ``split(w)`` (for
        solvers that need a single form, e.g. a variational-inequality Newton; this
        solver assembles its residual field by field instead)."""
        parts = split(self.w)
        rhos = [self.density(u) for u in self._slice_ends(parts[self.rho_fields])]
        L = sum(self._slice_lagrangian(rhos[i - 1], rhos[i], p)
                for i, p in enumerate(parts[self.phi_fields], start=1))
        if not self.fixed_end:
            L += self._terminal_form(rhos[-1])
            S = self.nodal_terminal(parts[self.n_rho - 1]) if self.variable == "log" else None
            if S is not None:
                L += S
        return simplify_log_of_exp(L) if self.variable == "log" else L

    def _mean(self, a, b):
        """The slice average :math:`\\rho_{i-1/2}`: geometric for log unknowns,
        arithmetic for density unknowns (see the module docstring).

        For log unknowns the geometric mean is :math:`e^{(l_a+l_b)/2}`, never
        :math:`\\sqrt{\\rho_a\\rho_b}`.  Where ``a`` or ``b`` is a placeholder
        density of the Lagrangian (differentiated to get the stationarity in
        :math:`\\rho`), the mean is linearised in it about :math:`e^{l}`: exact value
        and first derivative :math:`\\tfrac12 e^{(l_b-l_a)/2}` at the substitution,
        with no quotient of underflowing densities.
        """
        if self.variable != "log":
            return 0.5 * (a + b)
        la, lb = self._log_of(a), self._log_of(b)
        mean = ufl.exp(0.5 * (la + lb))
        for r, l, other in ((a, la, lb), (b, lb, la)):
            if r in self._placeholder_logs:
                mean = mean + 0.5 * (r - ufl.exp(l)) * ufl.exp(0.5 * (other - l))
        return mean

    def _log_of(self, r):
        """The log-density behind a density ``r`` of the log representation (an
        ``exp(l)`` expression or a placeholder of the Lagrangian)."""
        if r in self._placeholder_logs:
            return self._placeholder_logs[r]
        if isinstance(r, ufl.mathfunctions.Exp):
            return r.ufl_operands[0]
        raise TypeError(f"not a density of the log representation: {r!r}")

    def density(self, u):
        """The density represented by ``u`` (``exp(u)`` for the log representation)."""
        return ufl.exp(u) if self.variable == "log" else u

    def represent(self, rho) -> ufl.core.expr.Expr:
        """UFL expression of a density in the solver's representation (log or not)."""
        return ufl.ln(rho) if self.variable == "log" else rho

    def field_indices(self, fields: slice) -> np.ndarray:
        """Global indices of this rank's dofs of the given fields (e.g.
        :attr:`rho_fields`) in the state Vec."""
        ises = self.W.dof_dset.field_ises[fields]
        if not ises:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([i.getIndices() for i in ises]).astype(np.int64)

    def local_field_indices(self, fields: slice) -> np.ndarray:
        """Positions of this rank's dofs of the given fields in its local part of the
        state Vec (:meth:`field_indices` less the rank's first global index)."""
        with self.w.dat.vec_ro as v:
            first = v.getOwnershipRange()[0]
        return self.field_indices(fields) - first

    @property
    def barrier_target(self) -> float:
        r"""The complementarity target factor :math:`\mu\,\Delta s` (so that
        :math:`\rho_{i,j} z_{i,j} = \mu\,\Delta s\,w_j` on the central path)."""
        return float(self.mu) / self.N

    def potential_scale(self) -> float:
        r"""The size :math:`\Phi` of the potentials, which sets the barrier's units.

        Here (both ends fixed) the squared diameter of the mesh's bounding box, the
        scale of :math:`\phi` for a transport across the domain; a JKO step
        overrides it with :math:`\eta` times the oscillation of
        :math:`\delta J/\delta\rho`.
        """
        comm = self.geometry.comm
        X = self.geometry.mesh.coordinates.dat.data_ro.reshape(
            -1, self.geometry.mesh.coordinates.function_space().value_size)
        lo, hi = X.min(axis=0, initial=np.inf), X.max(axis=0, initial=-np.inf)
        comm.Allreduce(MPI.IN_PLACE, lo, op=MPI.MIN)
        comm.Allreduce(MPI.IN_PLACE, hi, op=MPI.MAX)
        return float(np.sum((hi - lo) ** 2))

    def mean_density(self) -> float:
        r""":math:`\bar\rho = \int\rho_0/|M|`, the uniform barrier weight."""
        if self._volume is None:
            self._volume = self.geometry.volume()
        return self.mass(self.start) / self._volume

    def _limit_log_step(self, x, y):
        """SNES pre-check for log unknowns: clip each nodal log-density update to
        ``max_log_step`` :math:`c` (a factor of at most :math:`e^{\\pm c}` in the
        density per Newton step); the line search then takes the step whole.

        Why per-node clipping and full steps, not a merit-function line search.  The
        rows of the KKT residual have very different sizes in the tails, where
        :math:`\\rho = e^{l}` is tiny.  The continuity rows are in density units, so
        there they are :math:`O(\\rho)`, effectively zero.  The Hamilton--Jacobi rows
        are in potential units and stay :math:`O(1)`, but they contain the factors
        :math:`e^{(l_{i\\pm1}-l_i)/2}` of the geometric mean.  A merit function such as
        :math:`\\|F\\|^2` (``l2``, ``bt``) is then dominated by the tail
        Hamilton--Jacobi rows.  A full Newton step can raise them for a while (the
        exponentials overshoot) although the iteration converges.  The line search
        then cuts the whole step to :math:`\\lambda \\approx 0.2`, also in the bulk,
        where the step was good, and convergence becomes linear and slow (measured,
        double well of ``benchmarks/results/jko_step.md``, second step at
        :math:`\\eta = 0.0016`: ``l2`` stalls at :math:`\\lambda\\approx 0.2` and a
        residual of :math:`10^{-6}` for 50 iterations; full steps converge in 8).

        Clipping acts node by node instead.  A component that asks for a jump of
        tens of units in :math:`l` (the linearisation of :math:`e^{l}` is poor there)
        is cut to :math:`\\pm c`; every other component, in the bulk and the tails,
        keeps its Newton value.  Near the solution nothing is clipped, so the
        quadratic convergence is kept, and :math:`e^{l}` cannot overflow within one
        step.  If the full steps still diverge, :meth:`solve_with_continuation` falls
        back to continuation in the parameter.
        """
        idx = self._rho_local_indices
        arr = y.getArray()
        yl = arr[idx]
        c = self.max_log_step
        clipped = np.abs(yl) > c
        n = self.geometry.comm.allreduce(int(np.count_nonzero(clipped)), MPI.SUM)
        if n:
            arr[idx] = np.clip(yl, -c, c)
            self.clipped_updates += n
            return True
        return False

    # ------------------------------------------------------------- access
    def unknown_slices(self) -> tuple[list, list]:
        """(density-slice unknowns, potentials) as ``Function`` views of the state."""
        subs = self.w.subfunctions
        return list(subs[self.rho_fields]), list(subs[self.phi_fields])

    def duals(self) -> list:
        """The interior-point dual variables :math:`z_i` (``Function`` views)."""
        return list(self.w.subfunctions[self.dual_fields])

    def interior_start(self, rho):
        r"""The strictly positive density :math:`(1-\theta)\rho + \theta\bar\rho`
        (``theta`` the barrier option ``start_mix``) with the mass of ``rho``: the
        interior point's starting slices (a UFL expression)."""
        theta = self.barrier["start_mix"]
        return (1 - theta) * rho + theta * self.mean_density()

    def initial_guess(self, slices=None, phi=None):
        """Set the state: unknown slices (in the representation; by default the start
        density, made strictly interior for density unknowns) and one potential."""
        us, phis = self.unknown_slices()
        default = self.start if self.variable == "log" else self.interior_start(self.start)
        for i, u in enumerate(us):
            if slices is not None:
                u.assign(slices[i])
            elif self.variable == "log":
                u.assign(default)
            else:
                u.interpolate(default)
        for p in phis:
            p.assign(phi if phi is not None else 0.0)

    def cost(self) -> float:
        r""":math:`W_2^2 \approx \Delta s\sum_i\int\rho_{i-1/2}|\nabla_g\phi_i|^2` (collective)."""
        if self._cost_form is None:
            # One functional per slice: they share one compiled kernel.
            self._cost_form = [
                FormValue(self.ds * self._mean(self._rhos[i - 1], self._rhos[i])
                          * self.geometry.grad_norm2(p) * self.dx)
                for i, p in enumerate(self._phis, start=1)]
        return sum(value() for value in self._cost_form)

    def mass(self, u) -> float:
        """Mass of the density represented by ``u``, with the solver's quadrature.

        The form of each ``Function`` is built and preprocessed once
        (:class:`~jkoflow.solvers.common.FormValue`): a JKO scheme evaluates the same
        few masses at every step."""
        if not isinstance(u, Function):
            return float(assemble(self.density(u) * self.dx))
        key = id(u)
        if key not in self._mass_forms:
            self._mass_forms[key] = (u, FormValue(self.density(u) * self.dx))
        return self._mass_forms[key][1]()

    def _as_density(self, u, name: str) -> Function:
        f = Function(self.V, name=name)
        if self.variable == "log":
            nodal_exp(u, f)
        else:
            f.assign(u)
        return f

    # ------------------------------------------------------ continuation
    def solve_with_continuation(self, what: str, set_parameter, target: float,
                                trivial_guess, warm: bool = False) -> TransportResult:
        """Solve at ``set_parameter(target)``, falling back to continuation in the
        parameter (:func:`jkoflow.solvers.continuation.solve_with_continuation`)."""
        return solve_with_continuation(self, what, set_parameter, target, trivial_guess,
                                       warm=warm)

    def solve_levels(self, what: str) -> tuple[int, int, list]:
        """Solve from the current state over the barrier levels (one level for log).

        Returns ``(snes iterations, linear iterations, [(mu, iterations), ...])``;
        raises :class:`~jkoflow.solvers.common.SolverDivergedError` on failure.
        """
        if self.variable == "log":
            its, lits = solve_or_raise(self.solver, what)
            return its, lits, [(0.0, its)]
        for u in self.unknown_slices()[0]:
            lo = global_min(u)
            if not lo > 0:
                raise ValueError(f"{what}: the initial guess for the intermediate "
                                 f"densities must be strictly positive (minimum {lo:.3g})")
        ipm = self.interior_point
        scale = self.potential_scale()
        rho_bar = self.mean_density()
        ipm.start(rho_bar, scale)
        if self.fixed_end:
            self.gauge.assign(1e-12 * rho_bar / scale)
        try:
            its, lits = solve_or_raise(self.solver, f"{what} (interior point)")
        except SolverDivergedError as err:
            raise SolverDivergedError(
                f"{err}\n  Barrier levels (mu, its) reached: {ipm.levels}, mu = "
                f"{ipm.mu_hat:.2e}, scaled KKT error {ipm.last_error:.2e}",
                history=err.history, reason=err.reason) from None
        return its, lits, list(ipm.levels)

    def result(self, snes_total: int, ksp_total: int, levels: list) -> TransportResult:
        """Package the current (converged) state as a :class:`TransportResult`."""
        self._count(snes_total, ksp_total)
        ends, phis = self._ends, self._phis
        slices = [self._as_density(u, f"rho_s{k}") for k, u in enumerate(ends)]
        rho = slices[-1].copy(deepcopy=True)
        rho.rename("rho")
        log_rho = None
        if self.variable == "log":
            log_rho = Function(self.V, name="log_rho").assign(ends[-1])
        phi = Function(self.V, name="phi").assign(phis[-1])
        return TransportResult(rho=rho, log_rho=log_rho, phi=phi, slices=slices,
                               cost=self.cost(), mass=self.mass(ends[-1]),
                               snes_iterations=snes_total, linear_iterations=ksp_total,
                               barrier_levels=levels)

    def run(self, what: str) -> TransportResult:
        """Solve from the current state and return the result."""
        return self.result(*self.solve_levels(what))
