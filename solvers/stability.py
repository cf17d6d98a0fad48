r"""Linear stability of the JKO-Flow discretisations: growth rates and critical meshes.

The truncated JKO-Flow (``form="fisher"``) is backward parabolic at fourth order:
linearised at a constant state with :math:`D = \rho U''(\rho)` it reads
:math:`\partial_t u = -D\,\kappa\,u + \frac{\eta}{2}D^2\kappa^2 u` on a mode with
:math:`|k|^2 = \kappa`, so every mode with :math:`D\kappa > 2/\eta` grows (docs/maths/implicit_bias.rst).
A mesh resolves :math:`\kappa` up to the largest eigenvalue :math:`\kappa_h \sim C/h^2`
of its discrete Laplacian (:math:`C = 12` for uniform P1 in 1D, so the critical mesh
size is :math:`h_c = \sqrt{6\eta}`, close to the rule of thumb :math:`\pi\sqrt{\eta/2}`).

:func:`analyse_stability` measures this on the actual discretisation, at the actual
state:

1. The residual :math:`F(u, \mu, \partial_t u) = 0` of the flow is linearised at the
   current state (:class:`LinearisedOperator`, all derivatives by UFL).  Eliminating
   the algebraic :math:`\mu` gives the linear ODE :math:`\partial_t\delta u = C\,\delta u`:
   :math:`C x` is the :math:`u`-block of :math:`-K^{-1}A_u x`, with :math:`K` the
   Jacobian with respect to :math:`(\partial_t u, \mu)` and :math:`A_u` with respect to
   :math:`u` (one LU factorisation of :math:`K`, reused).
   Growth is measured for the *density* perturbation :math:`\delta\rho = R'(u)\delta u`
   (:math:`\rho = R(u)`; :math:`R = \exp` for the log variable): its frozen generator
   is :math:`C + \partial_t\log R'(u)` (for the log variable the added term is the
   :math:`L^2(\rho)` projection of :math:`\partial_t l\,x`).  Without it a contracting
   Gaussian would show spurious growth of :math:`\delta l` in its tails even for the
   WGF (whose density generator, Fokker--Planck, has spectrum :math:`\le 0`).
2. The rightmost eigenvalue of :math:`C` on mass-neutral perturbations (mass is
   conserved, so the trivial zero eigenvalue off that subspace is excluded) is found
   by restarted Arnoldi with the inner product :math:`\int R'(u)\,x\,y` in which the
   gradient-flow operator is (nearly) self-adjoint, so Ritz values do not overshoot
   (:func:`arnoldi_rightmost`, petsc4py, parallel), or densely with numpy (serial).
   The configuration is refused when it exceeds ``growth_tol`` (default 0).  On the
   OU Gaussians the rightmost eigenvalue is the slowest physical mode,
   :math:`-a(1 - \eta a/2)`, on every mesh coarser than :math:`h_c`, and jumps to
   :math:`O(\eta\kappa^2)` below it.
3. The largest eigenvalue :math:`\kappa_{\max}` of the :math:`D`-weighted discrete
   Laplacian (:math:`\rho`-weighted for the log variable, where under-resolved
   exponential tails enlarge it) gives the critical mesh size :math:`h_c = h_{\min}\sqrt{\eta\kappa_{\max}/2}`
   (modes with :math:`D\kappa > 2/\eta` are resolved iff :math:`h_{\min} < h_c`) and the
   critical step :math:`\eta_c = 2/\kappa_{\max}`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import ufl
from firedrake import (Function, NonlinearVariationalProblem, NonlinearVariationalSolver,
                       TestFunction, TestFunctions, TrialFunction, assemble, derivative, split)
from firedrake.petsc import PETSc

from .presets import preset

__all__ = ["StabilityReport", "UnstableFormError", "LinearisedOperator",
           "analyse_stability", "arnoldi_rightmost"]


@dataclass
class StabilityReport:
    r"""Result of :func:`analyse_stability`.

    Attributes
    ----------
    form, eta
        The JKO-Flow form and step analysed.
    growth_rate
        Rightmost eigenvalue (real part) of the linearised discrete operator on
        mass-neutral perturbations; perturbations grow like :math:`e^{\lambda t}`.
    kappa_max
        Largest eigenvalue of the :math:`D`-weighted discrete Laplacian.
    h_min, h_crit
        Smallest cell diameter of the mesh and the critical mesh size below which
        modes with :math:`D\kappa > 2/\eta` are resolved.
    eta_crit
        :math:`2/\kappa_{\max}`: the largest :math:`\eta` that is stable on this mesh
        (at a constant state).
    stable
        ``growth_rate <= growth_tol``.
    method, matvecs
        ``"arnoldi"`` or ``"dense"``, and the number of operator applications.
    """

    form: str
    eta: float
    growth_rate: float
    kappa_max: float
    h_min: float
    h_crit: float
    eta_crit: float
    stable: bool
    growth_tol: float = 0.0
    method: str = "arnoldi"
    matvecs: int = 0

    def message(self) -> str:
        """A human-readable diagnosis with the alternatives."""
        rule = math.pi * math.sqrt(self.eta / 2)
        lam = self.growth_rate
        head = (f"JKO-Flow form={self.form!r} with eta = {self.eta:g}: the linearised discrete "
                f"operator has growth rate {lam:.4g}"
                + (f" (perturbations grow by e in t = {1 / lam:.3g})" if lam > 0 else "")
                + f" [{self.method}]")
        if self.h_crit > self.h_min:
            why = (f"This is the mesh-scale instability of the truncated (backward fourth-order)"
                   f" equation: modes with D|k|^2 > 2/eta = {2 / self.eta:.4g} grow, and this "
                   f"mesh (h_min = {self.h_min:.3g}) resolves D|k|^2 up to {self.kappa_max:.4g}."
                   f" The critical mesh size is h_c = {self.h_crit:.3g} (P1 rule of thumb "
                   f"pi*sqrt(eta/2) = {rule:.3g}); the largest stable eta on this mesh is "
                   f"{self.eta_crit:.3g}.")
        else:
            why = (f"The mesh (h_min = {self.h_min:.3g}) is coarser than the critical size "
                   f"h_c = {self.h_crit:.3g}, so the growth is not a mesh-scale effect: the "
                   f"truncated equation itself is unstable at this state (e.g. a density "
                   f"narrower than about sqrt(eta)).")
        alt = ("Alternatives: form='pseudo-parabolic' (well-posed on every mesh, also "
               "O(eta^2)-close to JKO), a coarser mesh (h_min > h_c) or a smaller eta; "
               "allow_unstable=True runs it anyway.")
        return "\n".join([head, why, alt])


class UnstableFormError(ValueError):
    """The truncated JKO-Flow would blow up on this mesh/state; carries the report."""

    def __init__(self, report: StabilityReport):
        super().__init__(report.message())
        self.report = report


class LinearisedOperator:
    r"""The JKO-Flow residual linearised at a state :math:`u`.

    Built from the flow's own residual (``flow.residual``) with the time derivative
    replaced by a directional derivative, :math:`\partial_t f(u) \to f'(u)[\dot u]`,
    so that :math:`F(u; \dot u, \mu)` is affine in :math:`z = (\dot u, \mu)`.

    Parameters
    ----------
    flow
        A :class:`~jkoflow.solvers.JKOFlow` (only its residual builder, spaces and
        quadrature are used).
    u0
        The state (a Function in ``flow.V``); copied.
    prefix
        PETSc options prefix of the linear solves.
    """

    def __init__(self, flow, u0: Function, prefix: str = "jkoflow_stability_"):
        self.flow = flow
        V, W = flow.V, flow.W
        self.V, self.W = V, W
        self.u = Function(V).assign(u0)
        self.z = Function(W)
        zdir = Function(V)
        zu, zmu = split(self.z)
        q, v = TestFunctions(W)

        def ddt(f):
            return ufl.derivative(f, self.u, zdir)

        F = flow.residual(self.u, zmu, q, v, ddt)
        self.F = ufl.replace(F, {zdir: zu})
        self.prefix = prefix
        params = preset("linear")
        problem = NonlinearVariationalProblem(self.F, self.z)
        self._rate_solver = NonlinearVariationalSolver(problem, solver_parameters=params,
                                                       options_prefix=prefix + "init")
        self._assembled = False

    def set_state(self, u: Function):
        """Move the linearisation point to ``u``."""
        self.u.assign(u)
        self._assembled = False

    def consistent_rate(self) -> tuple[Function, Function]:
        r"""Solve :math:`F(u; \dot u, \mu) = 0` for the consistent :math:`(\dot u, \mu)`."""
        self.z.assign(0)
        self._rate_solver.solve()
        rate, mu = self.z.subfunctions
        return rate, mu

    # ------------------------------------------------------------- matrices
    def assemble(self):
        """Assemble :math:`K`, :math:`A_u`, the inner product and the mass functional."""
        self.consistent_rate()
        flow, V = self.flow, self.V
        self.K = assemble(derivative(self.F, self.z), mat_type="aij").petscmat
        self.A = assemble(derivative(self.F, self.u, TrialFunction(V)), mat_type="aij").petscmat
        p, q = TrialFunction(V), TestFunction(V)
        w = flow.density_derivative(self.u)
        self.M = assemble(w * p * q * flow.dx, mat_type="aij").petscmat
        ell = assemble(w * q * flow.dx)
        with ell.dat.vec_ro as e:
            self.ell = e.copy()
        self.ksp = self._lu(self.K, "")
        self.is_u = self.W.dof_dset.field_ises[0]
        # Frame correction: growth is measured for the density perturbation
        # delta rho = R'(u) delta u, whose frozen generator is C + R''(u) u_t / R'(u).
        # It is the L^2(R'(u)) projection of u_t x, so that mass-neutral perturbations
        # stay mass-neutral exactly.
        self.frame = None
        if flow.variable == "log":
            rate = split(self.z)[0]
            self.frame = assemble(w * rate * p * q * flow.dx, mat_type="aij").petscmat
            self._mass_ksp = self._lu(self.M, "mass_")
        self._rhs, self._sol = self.K.createVecs()
        self.ones = self.ell.duplicate()
        self.ones.set(1.0)
        self.ell_ones = self.ell.dot(self.ones)
        self._tmp = self.ell.duplicate()
        self._tmp2 = self.ell.duplicate()
        self._assembled = True

    def _lu(self, A, prefix: str) -> PETSc.KSP:
        """A MUMPS LU solver for ``A`` (options prefix ``self.prefix + prefix``)."""
        ksp = PETSc.KSP().create(comm=self.V.mesh().comm)
        ksp.setOperators(A)
        ksp.setOptionsPrefix(self.prefix + prefix)
        ksp.setType("preonly")
        ksp.getPC().setType("lu")
        ksp.getPC().setFactorSolverType("mumps")
        ksp.setFromOptions()
        ksp.setUp()
        return ksp

    def new_vec(self) -> PETSc.Vec:
        """A vector in the layout of the density variable."""
        return self.ell.duplicate()

    def mult(self, x: PETSc.Vec, y: PETSc.Vec):
        r""":math:`y = Cx`, the :math:`u`-block of :math:`-K^{-1}A_u x`."""
        self.A.mult(x, self._rhs)
        self._rhs.scale(-1.0)
        self.ksp.solve(self._rhs, self._sol)
        sub = self._sol.getSubVector(self.is_u)
        sub.copy(y)
        self._sol.restoreSubVector(self.is_u, sub)
        if self.frame is not None:
            self.frame.mult(x, self._tmp)
            self._mass_ksp.solve(self._tmp, self._tmp2)
            y.axpy(1.0, self._tmp2)

    def inner(self, x: PETSc.Vec, y: PETSc.Vec) -> float:
        r""":math:`\int R'(u)\,x\,y` (:math:`\rho`-weighted for the log variable)."""
        self.M.mult(x, self._tmp)
        return float(self._tmp.dot(y))

    def project(self, x: PETSc.Vec):
        r"""Remove the mass-changing component: :math:`x \gets x - \frac{\ell(x)}{\ell(1)}1`."""
        x.axpy(-self.ell.dot(x) / self.ell_ones, self.ones)

    def dense(self) -> np.ndarray:
        """:math:`C` restricted to mass-neutral vectors as a dense matrix (serial only)."""
        if self.V.mesh().comm.size > 1:
            raise RuntimeError("the dense stability analysis is serial; use method='arnoldi'")
        n = self.ell.getSize()
        C = np.empty((n, n))
        x, y = self.new_vec(), self.new_vec()
        for j in range(n):
            x.zeroEntries()
            x.setValue(j, 1.0)
            x.assemble()
            self.mult(x, y)
            C[:, j] = y.getArray(readonly=True)
        ell = self.ell.getArray(readonly=True)
        # Orthonormal basis of ker(ell): C maps it into itself (mass conservation).
        Q = np.linalg.svd(ell[None, :])[2][1:].T
        return Q.T @ C @ Q

    def rightmost(self, method: str = "arnoldi", **kwargs) -> tuple[float, int]:
        """Rightmost eigenvalue (real part) on mass-neutral vectors, and matvec count."""
        if not self._assembled:
            self.assemble()
        if method == "dense":
            lam = np.linalg.eigvals(self.dense())
            return float(lam.real.max()), self.ell.getSize()
        if method != "arnoldi":
            raise ValueError(f"unknown stability method {method!r}; valid: ['arnoldi', 'dense']")
        x0 = _random_vec(self.new_vec())
        theta, _, nmv = arnoldi_rightmost(self.mult, x0, inner=self.inner,
                                          project=self.project, **kwargs)
        return theta, nmv

    def kappa_max(self) -> float:
        r"""Largest eigenvalue of the pencil :math:`(\int D R'(u)\nabla x\cdot\nabla y,
        \int R'(u)\,x y)`, :math:`D = \rho U''(\rho)`: the discrete (weighted) Laplacian
        that the fourth-order term squares (:math:`\rho`-weighted for the log variable,
        where under-resolved exponential tails make it large)."""
        flow, V = self.flow, self.V
        geom = flow.geometry
        if flow.energy.U is None:   # no internal energy: no fourth-order term
            return 0.0
        D = flow.energy.diffusivity(flow.density_expr(self.u))
        w = flow.density_derivative(self.u)
        p, q = TrialFunction(V), TestFunction(V)
        KD = assemble(D * w * geom.dot_grad(p, q) * flow.dx, mat_type="aij").petscmat
        M = assemble(w * p * q * flow.dx, mat_type="aij").petscmat
        ksp = self._lu(M, "kappa_")
        tmp = self.new_vec()

        def mult(x, y):
            KD.mult(x, tmp)
            ksp.solve(tmp, y)

        def inner(x, y):
            M.mult(x, tmp)
            return float(tmp.dot(y))

        theta, _, _ = arnoldi_rightmost(mult, _random_vec(self.new_vec()), inner=inner)
        ksp.destroy()
        return max(theta, 0.0)


def _random_vec(x: PETSc.Vec) -> PETSc.Vec:
    """Fill ``x`` with reproducible pseudo-random values (a different stream per rank)."""
    rank = x.getComm().tompi4py().rank
    rng = np.random.default_rng(20251114 + 7919 * rank)
    x.setArray(rng.standard_normal(x.getLocalSize()))
    return x


def arnoldi_rightmost(mult, x0: PETSc.Vec, *, inner=None, project=None, m: int = 40,
                      restarts: int = 12, tol: float = 1e-4) -> tuple[float, float, int]:
    r"""Rightmost eigenvalue of a linear operator by explicitly restarted Arnoldi.

    Parameters
    ----------
    mult
        ``mult(x, y)`` sets :math:`y = Cx` (petsc4py vectors; collective).
    x0
        Start vector (overwritten).
    inner
        Inner product ``inner(x, y)`` (default Euclidean); with one in which
        :math:`C` is self-adjoint the Ritz values are Lanczos values and never lie
        right of the spectrum.
    project
        Optional in-place projection onto an invariant subspace (applied to every
        Krylov vector).
    m, restarts, tol
        Krylov dimension, maximum number of restarts (with the rightmost Ritz
        vector), and the tolerance on the Ritz residual relative to the largest
        Ritz value in modulus.

    Returns
    -------
    tuple
        ``(real part of the rightmost Ritz value, its residual estimate, matvecs)``.
    """
    dot = inner or (lambda a, b: float(a.dot(b)))
    proj = project or (lambda a: None)
    x = x0
    n = x.getSize()
    m = max(1, min(m, n - 1 if project is not None else n))
    theta, resid, nmv = 0.0, math.inf, 0
    for _ in range(restarts + 1):
        proj(x)
        nrm = math.sqrt(max(dot(x, x), 0.0))
        if nrm == 0.0:
            break
        x.scale(1.0 / nrm)
        basis = [x.copy()]
        H = np.zeros((m + 1, m))
        k = m
        for j in range(m):
            w = x.duplicate()
            mult(basis[j], w)
            nmv += 1
            proj(w)
            for _sweep in range(2):  # classical Gram--Schmidt, twice
                for i, b in enumerate(basis):
                    h = dot(w, b)
                    H[i, j] += h
                    w.axpy(-h, b)
            H[j + 1, j] = math.sqrt(max(dot(w, w), 0.0))
            scale = np.abs(H[:j + 2, :j + 1]).max()
            if H[j + 1, j] <= 1e-12 * scale:
                k = j + 1
                break
            w.scale(1.0 / H[j + 1, j])
            basis.append(w)
        evals, evecs = np.linalg.eig(H[:k, :k])
        i = int(np.argmax(evals.real))
        theta = float(evals[i].real)
        y = evecs[:, i]
        resid = float(abs(H[k, k - 1] * y[-1])) if k < H.shape[0] and k == m else 0.0
        radius = float(np.abs(evals).max())
        x = x.duplicate()
        x.zeroEntries()
        yr = y.real if np.linalg.norm(y.real) > 1e-8 else y.imag
        for c, b in zip(yr, basis):
            x.axpy(float(c), b)
        if resid <= tol * max(radius, 1e-300):
            break
    return theta, resid, nmv


def analyse_stability(flow, method: str = "arnoldi", growth_tol: float = 0.0,
                      **kwargs) -> StabilityReport:
    """Growth rate, critical mesh size and verdict for ``flow`` at its linearisation point.

    Parameters
    ----------
    flow
        A :class:`~jkoflow.solvers.JKOFlow`.
    method
        ``"arnoldi"`` (parallel) or ``"dense"`` (serial, small problems).
    growth_tol
        The configuration is stable when the growth rate is at most this.
    kwargs
        Passed to :func:`arnoldi_rightmost` (``m``, ``restarts``, ``tol``).
    """
    lin = flow.linearised
    lam, nmv = lin.rightmost(method, **kwargs)
    kappa = lin.kappa_max()
    h_min = flow.geometry.h_range()[0]
    eta = flow.eta
    h_crit = h_min * math.sqrt(eta * kappa / 2) if kappa > 0 else 0.0
    eta_crit = 2.0 / kappa if kappa > 0 else math.inf
    return StabilityReport(form=flow.form, eta=eta, growth_rate=lam, kappa_max=kappa,
                           h_min=h_min, h_crit=h_crit, eta_crit=eta_crit,
                           stable=bool(lam <= growth_tol), growth_tol=growth_tol,
                           method=method, matvecs=nmv)
