r"""Preconditioners for the KKT system of a JKO step with density unknowns.

Each Newton step of a :class:`~jkoflow.solvers.JKOStep` with density unknowns (the
interior point of :mod:`jkoflow.solvers.interior_point`) is, after the
vertex-lumped duals are condensed, the saddle-point system

.. math::

    \begin{pmatrix} A & B^\top \\ B & C \end{pmatrix}
    \begin{pmatrix} \delta\rho \\ \delta\phi \end{pmatrix} =
    \begin{pmatrix} r_\rho \\ r_\phi \end{pmatrix}

in the density slices :math:`\rho_1..\rho_N` and the potentials :math:`\phi_1..\phi_N`:

* :math:`B` is the linearised discrete continuity equation, block *lower bidiagonal*
  in transport time: :math:`B_{ii} = M - \tfrac{\Delta s}{2}G_i`,
  :math:`B_{i,i-1} = -M - \tfrac{\Delta s}{2}G_i` (:math:`M` the mass matrix,
  :math:`G_i` transport by :math:`\nabla\phi_i`): square and invertible, its inverse
  is a forward *sweep* through the slices;
* :math:`C = -\Delta s\,\mathrm{diag}(K_i)`, :math:`K_i` the stiffness matrix weighted
  by :math:`\rho_{i-1/2}`;
* :math:`A` is block diagonal: the barrier curvature :math:`\Lambda_i = Z_iR_i^{-1}M_L`
  on the intermediate slices and :math:`\eta J''(\rho_N) + \Lambda_N` on the last.

Both preconditioners here are the block LDU factorisation with :math:`A` replaced by
its condensed diagonal :math:`\Lambda` (:meth:`KKTPreconditioner.condensed_diagonal`,
shared), and differ in the Schur complement :math:`S = C - B\Lambda^{-1}B^\top`:

* :class:`TransportSweepPC` (preset ``"sweep"``, alias ``"schur"``; the recommended
  one) never assembles :math:`S`.  From :math:`-S = B(\Lambda^{-1} +
  B^{-1}(-C)B^{-\top})B^\top`, the middle operator's diagonal block :math:`i` is
  :math:`\Lambda_i^{-1} + B_{ii}^{-1}W_iB_{ii}^{-\top}` with :math:`W_1 = -C_{11}`,
  :math:`W_i = -C_{ii} + T_iW_{i-1}T_i^\top`, :math:`T_i = B_{i,i-1}B_{i-1,i-1}^{-1}`.
  With the transfers :math:`T_i \approx -I` (:math:`B_{i,i-1} \approx -M \approx
  -B_{i-1,i-1}`), :math:`W_i \approx Y_i = \Delta s\sum_{j\le i}K_j`; keeping the
  diagonal blocks,

  .. math::

      \hat S^{-1} = -B^{-\top}\,\mathrm{diag}\big(B_{11}^\top\hat X_1^{-1}B_{11},
          \dots, B_{NN}^\top\hat X_N^{-1}B_{NN}\big)\,B^{-1},\qquad
          \hat X_i = Y_i + B_{ii}\Lambda_i^{-1}B_{ii}^\top,

  two sweeps (:math:`2N` block solves, GMRES + ILU, options ``sweep_``) and
  :math:`N` solves with the :math:`\hat X_i`, symmetric positive definite operators
  of implicit-Euler type (CG + GAMG, options ``reduced_``).  The approximation is
  exact in :math:`\Lambda` (where the barrier is weak) and, for the first slice, in
  :math:`C`.  An earlier form used :math:`B_{ii} \approx M` as well,
  :math:`\hat X_i = Y_i + M\Lambda_i^{-1}M` between :math:`M`'s: it degrades where
  transport is strong against the mass matrix (:math:`\Delta s|\nabla\phi|/h`, which
  grows with refinement) and breaks down where a block is nearly singular (strong
  compression far from the solution): the cold step of
  ``benchmarks/variant_growth.py`` on :math:`96^2` cells needed 192 outer iterations
  at its fifth Newton iterate with *exact* inner solves, against 51 now (8 with the
  exact Schur complement); 64 against 39 at the same iterate on :math:`24^2`.
  Measured (that step, KL to :math:`N(0,I)` on :math:`[-3,3]^2`, four slices, cold,
  preset ``"sweep"``, outer relative tolerance :math:`10^{-6}`): 20 Newton
  iterations on :math:`24^2` and :math:`96^2` cells as with MUMPS, 31 and 36 outer
  FGMRES iterations per Newton step, with peaks of 65--134 at a barrier decrease or
  an indefinite block (issue 15).  Block solves measure the *true* residual (right
  preconditioning): with left preconditioning, ILU(0) of an indefinite block
  reached the tolerance in the preconditioned norm with a true residual near the
  right-hand side, and the outer FGMRES stagnated at :math:`10^{-3}`.  The
  reduced solves' multigrid smooths with SOR: with the default Jacobi the
  Chebyshev smoother made CG report an indefinite preconditioner (:math:`96^2`,
  eleventh iterate).
  Safeguard: :math:`\Lambda` is bounded below by :attr:`TransportSweepPC.kappa`
  :math:`^{-1}` times its central-path value :math:`\mu\,\Delta s\,w\,m/\rho^2`
  (public :attr:`~jkoflow.solvers.BenamouBrenier.barrier_target` and
  ``barrier_weight``): a dual far below the central path would otherwise make
  :math:`\Lambda^{-1}` huge and amplify the preconditioner's inexactness.
  A sweep block whose Krylov solve fails is solved by its LU from then on, logged
  (options ``sweep_fallback_``; far from the solution a block can be strongly
  indefinite, see :meth:`TransportSweepPC._solve`).  An outer solve that fails
  nonetheless is rescued by two Newton steps with MUMPS, after which this
  preconditioner takes over again (:func:`~jkoflow.solvers.common.solve_or_raise`,
  logged): the cold step on :math:`144^2` cells, whose fourth Newton iterate the
  Schur approximation cannot handle (FGMRES at :math:`10^{-3}` after 200
  iterations, even with every block solved by LU), then converges in 20 Newton
  iterations, as with MUMPS.
  Free end, :math:`P_1` only.
* :class:`TransportSchurPC` (preset ``"schur-amg"``) assembles :math:`-S`, a
  space--time elliptic operator, ordered node by node with block size :math:`N`, and
  solves it with CG + GAMG (options ``schur_``).  Robust outer iterations (11--14),
  but near the end of the barrier path the transport-time couplings
  :math:`\rho^2/\mu` dwarf the spatial ones and CG needs 100--300 iterations: 15--60
  times slower than MUMPS at the sizes measured; kept for comparison.  (An augmented
  Lagrangian does not help: because :math:`C \neq 0` its Schur complement's relative
  error :math:`\sim\eta\,\Delta s/h^2` does not shrink with the penalty.)

Both count their inner Krylov iterations in ``inner_iterations`` and their
applications in ``applications``; both need density unknowns (with log-densities the
rows of :math:`S` scale like :math:`\rho` and vanish in the tails) and an assembled
Jacobian; :meth:`~jkoflow.solvers.BenamouBrenier.check_preconditioner` says so.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from firedrake.petsc import PETSc
from firedrake.preconditioners.base import PCBase

from .common import logger

__all__ = ["KKTPreconditioner", "TransportSweepPC", "TransportSchurPC", "InnerSolveFailed"]


class InnerSolveFailed(RuntimeError):
    """An inner Krylov solve of a KKT preconditioner did not converge."""


class KKTPreconditioner(PCBase):
    """Base of the JKO-step KKT preconditioners: finds the
    :class:`~jkoflow.solvers.BenamouBrenier` solver (application context key
    ``"jko_transport"``), checks its requirements, builds index sets and condenses the
    duals.  Subclasses implement :meth:`setup` (once) and :meth:`assemble_blocks`
    (every Jacobian), and ``apply``."""

    needs_python_pmat = False
    #: A failed outer solve is rescued by a few direct Newton steps
    #: (:func:`~jkoflow.solvers.common.solve_or_raise`).
    rescue_with_direct_solve = True

    def initialize(self, pc):
        name = type(self).__name__
        _, P = pc.getOperators()
        transport = self.get_appctx(pc).get("jko_transport")
        if transport is None:
            raise ValueError(f"{name} needs the BenamouBrenier solver in the application "
                             "context under 'jko_transport'")
        transport.check_preconditioner(name)
        if P.getType() == "python":
            raise ValueError(f"{name} needs an assembled Jacobian (solver parameter "
                             "'mat_type': 'aij')")
        self.transport, self.N, self.comm = transport, transport.N, pc.comm
        self.prefix = pc.getOptionsPrefix() or ""
        self.applications = 0
        self.defaults: dict[str, str] = {}
        with self.inserted_defaults():
            self.setup(pc, P)

    def update(self, pc):
        # A failed reason stays on the PC until cleared, and KSPSetUp stops the next
        # solve at once (DIVERGED_PC_FAILED) if it finds one: clear it for the new
        # Jacobian (the continuation after a failure, the next step), as in apply.
        pc.setFailedReason(PETSc.PC.FailedReason.NOERROR)
        _, P = pc.getOperators()
        with self.inserted_defaults():
            self.assemble_blocks(P)

    # ---------------------------------------------------------------- hooks
    def setup(self, pc, P):
        raise NotImplementedError

    def assemble_blocks(self, P):
        raise NotImplementedError

    # -------------------------------------------------------------- helpers
    def index_set(self, fields: slice) -> PETSc.IS:
        """The global index set of the given fields of the state (e.g.
        ``transport.rho_fields`` or ``slice(k, k + 1)``)."""
        idx = self.transport.field_indices(fields).astype(PETSc.IntType)
        return PETSc.IS().createGeneral(idx, comm=self.comm)

    def set_defaults(self, prefix: str, defaults: dict):
        """Default options of the inner solvers under ``<outer prefix><prefix>``, in
        PETSc's options database now and whenever this PC works (see
        :meth:`inserted_defaults`)."""
        opts = PETSc.Options()
        for key, value in defaults.items():
            name = f"{self.prefix}{prefix}{key}"
            self.defaults[name] = str(value)
            if not opts.hasName(name):
                opts.setValue(name, value)
                self._inserted.append(name)

    @contextmanager
    def inserted_defaults(self):
        """Put the recorded defaults into PETSc's options database for the duration of
        the block, each only if no one set it (the command line or the solver
        parameters, which Firedrake inserts around the solve), and take them out
        again afterwards.

        The inner solvers read their options in ``setFromOptions`` and, for
        multigrid levels, at their first set-up inside a solve; outside this PC's
        work the defaults must not stay in the database: Firedrake does not override
        options it finds there, so a later solver with the same prefix could not set
        them through its solver parameters.
        """
        self._inserted: list[str] = []
        opts = PETSc.Options()
        for name, value in self.defaults.items():
            if not opts.hasName(name):
                opts.setValue(name, value)
                self._inserted.append(name)
        try:
            yield
        finally:
            for name in self._inserted:
                opts.delValue(name)
            self._inserted = []

    def krylov(self, prefix: str) -> PETSc.KSP:
        """An inner KSP with options prefix ``<outer prefix><prefix>``."""
        ksp = PETSc.KSP().create(comm=self.comm)
        ksp.setOptionsPrefix(self.prefix + prefix)
        return ksp

    @staticmethod
    def condensed_diagonal(P, is_rho, is_z, floor=None):
        r"""The condensed density diagonal
        :math:`\Lambda = \mathrm{diag}(A_{\rho\rho}) - A_{\rho z}A_{zz}^{-1}A_{z\rho}`
        (all dual blocks are diagonal: vertex quadrature).

        Returns ``(Lambda^-1, A_zz^-1, diag A_rho_z, diag A_z_rho)``; ``floor(auz,
        azz_inv)``, if given, returns a lower bound for :math:`\Lambda`.

        Raises
        ------
        ValueError
            If :math:`\Lambda` has a non-positive entry.
        """
        sub = P.createSubMatrix
        lam = sub(is_rho, is_rho).getDiagonal()
        auz = sub(is_rho, is_z).getDiagonal()
        azu = sub(is_z, is_rho).getDiagonal()
        azz_inv = sub(is_z, is_z).getDiagonal()
        azz_inv.reciprocal()
        d = auz.copy()
        d.pointwiseMult(d, azu)
        d.pointwiseMult(d, azz_inv)
        lam.axpy(-1.0, d)
        if floor is not None:
            lam.pointwiseMax(lam, floor(auz, azz_inv))
        lo = lam.min()[1]
        if not lo > 0:
            raise ValueError("the condensed density block has a non-positive diagonal "
                             f"entry ({lo:.3g}); use the direct solver")
        lam.reciprocal()
        return lam, azz_inv, auz, azu

    def apply(self, pc, x, y):
        """Apply the preconditioner (:meth:`apply_blocks`).  If an inner solve fails,
        the PC is marked failed (``SUBPC_ERROR``) and ``y`` set to infinity, so that the
        outer Krylov solve stops with ``DIVERGED_PC_FAILED`` and Newton with
        ``DIVERGED_LINEAR_SOLVE``: a :class:`~jkoflow.solvers.SolverDivergedError`
        with the history, not a crash inside PETSc."""
        pc.setFailedReason(PETSc.PC.FailedReason.NOERROR)
        try:
            with self.inserted_defaults():
                self.apply_blocks(pc, x, y)
        except InnerSolveFailed as err:
            logger.warning("%s; the outer Krylov solve stops (DIVERGED_PC_FAILED)", err)
            y.set(np.inf)
            pc.setFailedReason(PETSc.PC.FailedReason.SUBPC_ERROR)

    def apply_blocks(self, pc, x, y):
        raise NotImplementedError

    @staticmethod
    def check_inner_solve(ksp: PETSc.KSP, what: str) -> int:
        """The iterations of the inner solve ``ksp`` just did; raises
        :class:`InnerSolveFailed` (which :meth:`apply` turns into a failed PC) if it
        did not converge."""
        reason = ksp.getConvergedReason()
        if reason < 0:
            raise InnerSolveFailed(f"{what} failed (KSP reason {reason}, "
                                   f"{ksp.getIterationNumber()} iterations)")
        return ksp.getIterationNumber()

    def view(self, pc, viewer=None):
        super().view(pc, viewer)
        if viewer is not None:
            viewer.printfASCII(f"  {type(self).__name__}: block LDU of the JKO-step KKT "
                               "system (see jkoflow.solvers.preconditioners)\n")

    def applyTranspose(self, pc, x, y):
        raise NotImplementedError(f"{type(self).__name__} has no transpose")


class TransportSweepPC(KKTPreconditioner):
    r"""Block LDU with the transport-sweep Schur complement (module docstring).

    Counters: :attr:`applications`, :attr:`sweep_iterations`,
    :attr:`reduced_iterations` and their sum :attr:`inner_iterations`;
    :attr:`block_fallbacks`: sweep blocks solved by their LU because their Krylov
    solve failed (see :meth:`_solve`).
    """

    #: Lower bound of the barrier curvature, relative to its central value.
    kappa = 1e4

    def setup(self, pc, P):
        tr, N = self.transport, self.N
        r0, p0, z0 = tr.rho_fields.start, tr.phi_fields.start, tr.dual_fields.start
        self.is_rho = [self.index_set(slice(r0 + k, r0 + k + 1)) for k in range(N)]
        self.is_phi = [self.index_set(slice(p0 + k, p0 + k + 1)) for k in range(N)]
        self.is_z = [self.index_set(slice(z0 + k, z0 + k + 1)) for k in range(N)]
        # Right preconditioning: the tolerance bounds the true residual of a block
        # solve.  With the default left preconditioning ILU(0) of a strongly
        # indefinite block (far from the solution) reached the preconditioned
        # tolerance with a true residual near the right-hand side, and the outer
        # FGMRES stagnated at 1e-3 (cold step, 96^2 cells); now such a solve fails
        # and the block is solved by its LU (see _solve).
        self.set_defaults("sweep_", {"ksp_type": "gmres", "ksp_rtol": 1e-8,
                                     "ksp_atol": 0.0, "ksp_max_it": 100,
                                     "ksp_pc_side": "right",
                                     "ksp_norm_type": "unpreconditioned",
                                     "pc_type": "bjacobi"})
        self.set_defaults("reduced_", {"ksp_type": "cg", "ksp_rtol": 1e-4,
                                       "pc_type": "gamg", "mg_levels_pc_type": "sor"})
        self.set_defaults("sweep_fallback_", {"ksp_type": "preonly", "pc_type": "lu",
                                              "pc_factor_mat_solver_type": "mumps"})
        self.ksp_fwd = [self.krylov("sweep_") for _ in range(N)]
        self.ksp_bwd = [self.krylov("sweep_") for _ in range(N)]
        self.ksp_red = [self.krylov("reduced_") for _ in range(N)]
        self.ksp_lu: dict[int, PETSc.KSP] = {}
        self.factored: set[int] = set()
        self.sweep_iterations = self.reduced_iterations = self.block_fallbacks = 0
        self.assemble_blocks(P)
        for k in self.ksp_fwd + self.ksp_bwd + self.ksp_red:
            k.setFromOptions()
        self.work = [self.Bd[0].createVecs()[1] for _ in range(4 * N + 3)]

    def assemble_blocks(self, P):
        N, sub = self.N, P.createSubMatrix
        self.Bd = [sub(self.is_phi[k], self.is_rho[k]) for k in range(N)]
        self.Bl = [sub(self.is_phi[k + 1], self.is_rho[k]) for k in range(N - 1)]
        blocks = [self.condensed_diagonal(P, self.is_rho[k], self.is_z[k],
                                          self._central_curvature) for k in range(N)]
        self.lam_inv, self.azz_inv, self.auz, self.azu = map(list, zip(*blocks))
        self.Bdt = [b.transpose(PETSc.Mat()) for b in self.Bd]
        # X_k = sum_{j <= k} (-C_jj) + B_kk Lambda_k^-1 B_kk^T.
        Y, self.X = None, []
        for k in range(N):
            Ck = sub(self.is_phi[k], self.is_phi[k])
            Ck.scale(-1.0)
            if Y is None:
                Y = Ck
            else:
                Y = Y.copy()
                Y.axpy(1.0, Ck, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
            LBt = self.Bdt[k].copy()
            LBt.diagonalScale(L=self.lam_inv[k])
            Xk = self.Bd[k].matMult(LBt)
            Xk.axpy(1.0, Y, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
            Xk.setOption(PETSc.Mat.Option.SPD, True)
            self.X.append(Xk)
        for k in range(N):
            self.ksp_fwd[k].setOperators(self.Bd[k])
            self.ksp_bwd[k].setOperators(self.Bdt[k])
            self.ksp_red[k].setOperators(self.X[k])
        # Blocks whose Krylov solve has failed use their LU, refactored here.
        for j, ksp in self.ksp_lu.items():
            ksp.setOperators(self.block(j))

    @property
    def inner_iterations(self) -> int:
        """All inner Krylov iterations: block solves plus reduced solves."""
        return self.sweep_iterations + self.reduced_iterations

    def _central_curvature(self, auz, azz_inv):
        r""":math:`\kappa^{-1}` times the central-path barrier curvature
        :math:`\mu\,\Delta s\,w\,m/\rho^2` (:math:`m = -A_{\rho z}`,
        :math:`\rho = A_{zz}/m`)."""
        m = auz.copy()
        m.scale(-1.0)
        rho = azz_inv.copy()
        rho.reciprocal()
        rho.pointwiseDivide(rho, m)
        out = m.copy()
        with self.transport.barrier_weight.dat.vec_ro as w:
            out.pointwiseMult(out, w)
        out.scale(self.transport.barrier_target / self.kappa)
        out.pointwiseDivide(out, rho)
        out.pointwiseDivide(out, rho)
        return out

    # ---------------------------------------------------------------- sweeps
    def block(self, j: int) -> PETSc.Mat:
        """Block ``j`` of the sweeps: :math:`B_{jj}` for ``j < N`` (forward),
        :math:`B_{j-N,j-N}^\top` otherwise (backward)."""
        return self.Bd[j] if j < self.N else self.Bdt[j - self.N]

    def _solve(self, j, b, x):
        r"""Solve with block ``j`` (:meth:`block`): GMRES + ILU, or the block's LU
        (options ``sweep_fallback_``, MUMPS) once its Krylov solve has failed, for
        every later Jacobian too.  Far from the solution a block can be strongly
        indefinite (its symmetric part is :math:`M - \tfrac{\Delta s}{4}M_{\Delta\phi}`,
        negative where the potential compresses strongly), and ILU(0) then breaks down
        (measured: a cold step on :math:`96^2` cells, GMRES reason -5 with the residual
        500 times the right-hand side, while the LU solves it to 1e-16).  Such a block
        failed again at every later Newton step of that solve, each time after 100
        wasted GMRES iterations, so its LU is kept (refactored with each Jacobian;
        at these sizes a block's LU costs less than GMRES + ILU on it).  The fallback
        is logged once per block and counted in :attr:`block_fallbacks`."""
        if j not in self.factored:
            ksp = (self.ksp_fwd + self.ksp_bwd)[j]
            ksp.solve(b, x)
            reason = ksp.getConvergedReason()
            self.sweep_iterations += ksp.getIterationNumber()
            if reason >= 0:
                return
            logger.warning("TransportSweepPC: the Krylov solve of %s sweep block %d failed "
                           "(KSP reason %d, %d iterations); from now on it is solved "
                           "by its LU (options 'sweep_fallback_')",
                           "forward" if j < self.N else "backward", j % self.N, reason,
                           ksp.getIterationNumber())
            self.factored.add(j)
            self.block_fallbacks += 1
        if j not in self.ksp_lu:
            self.ksp_lu[j] = self.krylov("sweep_fallback_")
            self.ksp_lu[j].setOperators(self.block(j))
            self.ksp_lu[j].setFromOptions()
        self.ksp_lu[j].solve(b, x)
        self.check_inner_solve(self.ksp_lu[j], "TransportSweepPC: the LU of a sweep block")

    def _forward(self, r, out):
        r"""Solve :math:`B\,out = r` slice by slice, first to last."""
        t = self.work[-1]
        for k in range(self.N):
            if k == 0:
                r[0].copy(t)
            else:
                self.Bl[k - 1].mult(out[k - 1], t)
                t.aypx(-1.0, r[k])
            self._solve(k, t, out[k])

    def _backward(self, g, out):
        r"""Solve :math:`B^\top out = g` slice by slice, last to first."""
        t = self.work[-1]
        for k in reversed(range(self.N)):
            if k == self.N - 1:
                g[k].copy(t)
            else:
                self.Bl[k].multTranspose(out[k + 1], t)
                t.aypx(-1.0, g[k])
            self._solve(self.N + k, t, out[k])

    def _schur_inverse(self, rhs, out):
        r"""``out`` :math:`= \hat S^{-1}` ``rhs``."""
        N, w = self.N, self.work
        a = w[3 * N:4 * N]
        self._forward(rhs, a)
        t, s = w[-2], w[-3]
        for k in range(N):
            ksp = self.ksp_red[k]
            self.Bd[k].mult(a[k], t)
            ksp.solve(t, s)
            self.reduced_iterations += self.check_inner_solve(
                ksp, "TransportSweepPC: a reduced solve")
            self.Bd[k].multTranspose(s, a[k])
        self._backward(a, out)
        for o in out:
            o.scale(-1.0)

    def apply_blocks(self, pc, x, y):
        r"""Condense the duals;
        :math:`y_\phi = \hat S^{-1}(r_\phi - B\Lambda^{-1}r_\rho)`,
        :math:`y_\rho = \Lambda^{-1}(r_\rho - B^\top y_\phi)`; recover the duals."""
        N, w = self.N, self.work
        r_rho, r_phi, y_phi = w[:N], w[N:2 * N], w[2 * N:3 * N]
        t = w[-1]
        for k in range(N):
            for iset, out in ((self.is_rho[k], r_rho[k]), (self.is_phi[k], r_phi[k])):
                xs = x.getSubVector(iset)
                xs.copy(out)
                x.restoreSubVector(iset, xs)
            rz = x.getSubVector(self.is_z[k])
            t.pointwiseMult(rz, self.azz_inv[k])
            x.restoreSubVector(self.is_z[k], rz)
            t.pointwiseMult(t, self.auz[k])
            r_rho[k].axpy(-1.0, t)
        lr = w[3 * N:4 * N]
        for k in range(N):
            lr[k].pointwiseMult(self.lam_inv[k], r_rho[k])
        for k in range(N):
            self.Bd[k].mult(lr[k], t)
            r_phi[k].axpy(-1.0, t)
            if k > 0:
                self.Bl[k - 1].mult(lr[k - 1], t)
                r_phi[k].axpy(-1.0, t)
        self._schur_inverse(r_phi, y_phi)
        for k in range(N):
            self.Bd[k].multTranspose(y_phi[k], t)
            r_rho[k].axpy(-1.0, t)
            if k < N - 1:
                self.Bl[k].multTranspose(y_phi[k + 1], t)
                r_rho[k].axpy(-1.0, t)
            r_rho[k].pointwiseMult(r_rho[k], self.lam_inv[k])
            for iset, val in ((self.is_phi[k], y_phi[k]), (self.is_rho[k], r_rho[k])):
                ys = y.getSubVector(iset)
                val.copy(ys)
                y.restoreSubVector(iset, ys)
            rz = x.getSubVector(self.is_z[k])
            ys = y.getSubVector(self.is_z[k])
            ys.pointwiseMult(self.azu[k], r_rho[k])
            ys.aypx(-1.0, rz)
            ys.pointwiseMult(ys, self.azz_inv[k])
            y.restoreSubVector(self.is_z[k], ys)
            x.restoreSubVector(self.is_z[k], rz)
        self.applications += 1


class TransportSchurPC(KKTPreconditioner):
    r"""Block LDU with the assembled Schur complement solved by CG + GAMG (module
    docstring); options ``schur_`` after the outer prefix."""

    def setup(self, pc, P):
        tr = self.transport
        self.is_u = self.index_set(tr.rho_fields)
        self.is_phi = self.index_set(tr.phi_fields)
        self.is_z = self.index_set(tr.dual_fields)
        self.set_defaults("schur_", {"ksp_type": "cg", "ksp_rtol": 1e-8, "ksp_max_it": 2000,
                                     "pc_type": "gamg", "mg_levels_pc_type": "sor"})
        self.ksp = self.krylov("schur_")
        self.inner_iterations = 0
        self.assemble_blocks(P)
        self.ksp.setFromOptions()
        self.t_u = self.Bt.createVecs()[1]
        self.t_phi = self.B.createVecs()[1]
        self.s_rhs, self.s_sol = self.S.createVecs()
        self.y_z = self.azz_inv.duplicate()

    def assemble_blocks(self, P):
        r"""Blocks of the assembled Jacobian, :math:`\Lambda^{-1}` and :math:`-S`."""
        self.Bt = P.createSubMatrix(self.is_u, self.is_phi)
        self.B = P.createSubMatrix(self.is_phi, self.is_u)
        C = P.createSubMatrix(self.is_phi, self.is_phi)
        self.lam_inv, self.azz_inv, self.auz, self.azu = self.condensed_diagonal(
            P, self.is_u, self.is_z)
        LBt = self.Bt.copy()
        LBt.diagonalScale(L=self.lam_inv)
        S = self.B.matMult(LBt)
        S.axpy(-1.0, C, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
        self.S = self._node_major(S)
        self.ksp.setOperators(self.S)

    def _node_major(self, S):
        """Reorder :math:`S` node by node (all slices of a vertex together) with block
        size :math:`N`: multigrid then coarsens in space only and its point-block
        smoothers treat the strong transport-time couplings exactly."""
        N = self.N
        rstart, rend = S.getOwnershipRange()
        n_loc = (rend - rstart) // N
        perm = (rstart + (np.arange(N)[None, :] * n_loc
                          + np.arange(n_loc)[:, None])).ravel().astype(PETSc.IntType)
        iperm = PETSc.IS().createGeneral(perm, comm=S.comm)
        Sp = S.createSubMatrix(iperm, iperm)
        ia, ja, a = Sp.getValuesCSR()
        out = PETSc.Mat().createAIJ(Sp.getSizes(), bsize=N, csr=(ia, ja, a), comm=S.comm)
        out.setOption(PETSc.Mat.Option.SPD, True)
        self._n_loc = n_loc
        return out

    def apply_blocks(self, pc, x, y):
        r"""Condense the duals; :math:`y_\phi = S^{-1}(r_\phi - B\Lambda^{-1}r_u)`,
        :math:`y_u = \Lambda^{-1}(r_u - B^\top y_\phi)`; recover the duals."""
        r_u, r_phi = x.getSubVector(self.is_u), x.getSubVector(self.is_phi)
        r_z = x.getSubVector(self.is_z)
        y_u, y_phi = y.getSubVector(self.is_u), y.getSubVector(self.is_phi)
        t_u, t_phi = self.t_u, self.t_phi
        # Condensed right-hand side r_u - A_uz A_zz^{-1} r_z (diagonal blocks).
        self.y_z.pointwiseMult(self.azz_inv, r_z)
        self.y_z.pointwiseMult(self.y_z, self.auz)
        r_u.copy(t_u)
        t_u.axpy(-1.0, self.y_z)
        # y_phi = -(-S)^{-1} (r_phi - B Lambda^{-1} r_u), S ordered node by node.
        y_u.pointwiseMult(self.lam_inv, t_u)
        self.B.mult(y_u, t_phi)
        t_phi.aypx(-1.0, r_phi)
        n = self._n_loc
        self.s_rhs.setArray(t_phi.getArray(readonly=True).reshape(self.N, n).T.ravel())
        self.ksp.solve(self.s_rhs, self.s_sol)
        y_phi.setArray(self.s_sol.getArray(readonly=True).reshape(n, self.N).T.ravel())
        y_phi.scale(-1.0)
        self.applications += 1
        self.inner_iterations += self.ksp.getIterationNumber()
        # y_u = Lambda^{-1} (r_u - B^T y_phi); y_z = A_zz^{-1} (r_z - A_zu y_u).
        self.Bt.mult(y_phi, y_u)
        y_u.aypx(-1.0, t_u)
        y_u.pointwiseMult(self.lam_inv, y_u)
        y_z = y.getSubVector(self.is_z)
        y_z.pointwiseMult(self.azu, y_u)
        y_z.aypx(-1.0, r_z)
        y_z.pointwiseMult(self.azz_inv, y_z)
        for vec, iset, sub in ((y, self.is_z, y_z), (y, self.is_u, y_u),
                               (y, self.is_phi, y_phi), (x, self.is_z, r_z),
                               (x, self.is_u, r_u), (x, self.is_phi, r_phi)):
            vec.restoreSubVector(iset, sub)
        # checked once the sub-vectors are restored
        self.check_inner_solve(self.ksp, "TransportSchurPC: the Schur complement solve")
