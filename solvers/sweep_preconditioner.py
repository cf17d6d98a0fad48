r"""A transport-sweep preconditioner for the JKO-step KKT system.

Each Newton step of a :class:`~jkoflow.solvers.JKOStep` with density unknowns is,
after the vertex-lumped interior-point duals are condensed, the saddle-point system

.. math::

    \begin{pmatrix} A & B^\top \\ B & C \end{pmatrix}
    \begin{pmatrix} \delta\rho \\ \delta\phi \end{pmatrix} =
    \begin{pmatrix} r_\rho \\ r_\phi \end{pmatrix}

in the density slices :math:`\rho_1..\rho_N` and the potentials :math:`\phi_1..\phi_N`:

* :math:`B` is the linearised discrete continuity equation, block *lower bidiagonal*
  in transport time: :math:`B_{ii} = M - \tfrac{\Delta s}{2}G_i`,
  :math:`B_{i,i-1} = -M - \tfrac{\Delta s}{2}G_i` (:math:`M` the mass matrix,
  :math:`G_i` transport by :math:`\nabla\phi_i`).  It is square and invertible;
  :math:`B^{-1}` is a forward *sweep* through the slices and :math:`B^{-\top}` a
  backward one, each :math:`N` mass-plus-transport solves.
* :math:`C = -\Delta s\,\mathrm{diag}(K_i)`, :math:`K_i` the stiffness matrix weighted
  by :math:`\rho_{i-1/2}`.
* :math:`A` is block diagonal: the barrier curvature :math:`\Lambda_i = Z_iR_i^{-1}M_L`
  (diagonal; it tends to zero with :math:`\mu`) on the intermediate slices, and
  :math:`A_N = \eta J''(\rho_N) + Z_NR_N^{-1}M_L` on the last one.

The preconditioner is the block LDU factorisation with :math:`A` replaced by its
diagonal :math:`\Lambda` and the Schur complement
:math:`S = C - B\Lambda^{-1}B^\top` replaced by :math:`\hat S`, built from

.. math::

    -S = B\,(\Lambda^{-1} + B^{-1}(-C)B^{-\top})\,B^\top .

On the intermediate slices :math:`\Lambda_i^{-1}` is huge (:math:`\sim\rho^2/\mu`), so
the middle factor is dominated by it there; on the last slice, with
:math:`B \approx D_t\otimes M` (:math:`D_t` the time difference),
:math:`B^{-1}(-C)B^{-\top}` is :math:`M^{-1}\bar K M^{-1}`, :math:`\bar K =
\Delta s\sum_i K_i`.  Hence

.. math::

    \hat S^{-1} = -B^{-\top}\,\mathrm{diag}\big(\Lambda_1, \dots, \Lambda_{N-1},\;
        M\hat X^{-1}M\big)\,B^{-1},\qquad
    \hat X = \bar K + M\Lambda_N^{-1}M .

:math:`\hat X` is the operator of one implicit Euler step of the gradient flow (a
:math:`\rho`-weighted Laplacian plus a positive reaction term): algebraic multigrid
solves it in a few iterations.  One application costs two sweeps (:math:`2N` block
solves with :math:`B_{ii}` or :math:`B_{ii}^\top`) and one :math:`\hat X` solve; no
space--time operator is ever assembled or factorised.  The *consistent* mass
matrix in :math:`M\hat X^{-1}M` matters: with the lumped one, a dense analysis of an
8x8 and a 16x16 step gives eigenvalues of :math:`\hat S^{-1}S` up to 20; with the
consistent one they lie in :math:`[0.5, 1.5]`, as do those of the whole
preconditioned KKT matrix (:math:`[0.51, 1.38]` on 16x16, the same as with the exact
:math:`S`).

Safeguard: after a poor Newton step the interior-point dual reset may leave a dual
variable up to :math:`10^{10}` below its central value :math:`\mu\,\Delta s\,w/\rho`
(:data:`~jkoflow.solvers.benamou_brenier.DEFAULT_BARRIER` ``kappa``), and then
:math:`\Lambda^{-1}` up to :math:`10^{17}`; the preconditioner's inexactness, amplified
by that factor, stalls the Krylov method.  :math:`\Lambda` is therefore bounded below
by :attr:`TransportSweepPC.kappa` :math:`^{-1}` times its central value (measured, 2D
KL step on 32x32: the outer iteration then converges in 20 iterations instead of
failing at 200, and the cold step needs the same 8 Newton iterations as the direct
solver).

Measured (2D KL step from a Gaussian bump, P1, N = 4, eta = 0.05, one core): 20--28
FGMRES iterations per Newton step on average from 8x8 to 128x128 cells, as many
Newton steps as with the direct solver, about 7 GMRES iterations per block solve and
4 CG iterations per :math:`\hat X` solve; per warm step 1.0 s against MUMPS 1.9 s at
25k unknowns, 3.5 s against 8.8 s at 100k and 15.7 s against 49.8 s at 400k
(``benchmarks/results/jko_step.md``).

Options (after the outer prefix, e.g. ``jko_``):

* ``sweep_`` for the :math:`B_{ii}` and :math:`B_{ii}^\top` solves (default GMRES with
  block Jacobi/ILU(0), relative tolerance :math:`10^{-8}`);
* ``reduced_`` for the :math:`\hat X` solve (default CG + GAMG, relative tolerance
  :math:`10^{-4}`).

Free end (a JKO step), density unknowns and :math:`P_1` only (the interior-point duals
must be vertex-lumped); other cases raise a ``ValueError`` naming the problem.
"""
from __future__ import annotations

from firedrake import TestFunction, TrialFunction, assemble
from firedrake.petsc import PETSc
from firedrake.preconditioners.base import PCBase

from .preconditioners import kkt_transport

__all__ = ["TransportSweepPC"]


def _set_defaults(prefix: str, defaults: dict):
    opts = PETSc.Options(prefix)
    for key, value in defaults.items():
        if not opts.hasName(key):
            opts.setValue(key, value)


class TransportSweepPC(PCBase):
    r"""Block-LDU preconditioner with a transport-sweep Schur complement (module
    docstring).

    The :class:`~jkoflow.solvers.BenamouBrenier` solver puts itself in the
    application context under ``"jko_transport"``.  Counters: :attr:`applications`,
    :attr:`sweep_iterations` (Krylov iterations of all block solves),
    :attr:`reduced_iterations` (of the :math:`\hat X` solves) and their sum
    :attr:`inner_iterations` (as :class:`~jkoflow.solvers.preconditioners.TransportSchurPC`
    counts its inner work).
    """

    needs_python_pmat = False
    #: Lower bound of the barrier curvature, relative to its central value.
    kappa = 1e4

    def initialize(self, pc):
        tr, P = kkt_transport(self, pc)
        self.N = N = tr.N
        self.tr = tr
        comm = pc.comm

        def field_is(k):
            idx = tr.field_indices(slice(k, k + 1)).astype(PETSc.IntType)
            return PETSc.IS().createGeneral(idx, comm=comm)

        r0, p0, z0 = tr.rho_fields.start, tr.phi_fields.start, tr.dual_fields.start
        self.is_rho = [field_is(r0 + k) for k in range(N)]
        self.is_phi = [field_is(p0 + k) for k in range(N)]
        self.is_z = [field_is(z0 + k) for k in range(N)]
        # The consistent mass matrix of the continuity equation's time difference.
        u, v = TrialFunction(tr.V), TestFunction(tr.V)
        self.M = assemble(u * v * tr.dx, mat_type="aij").petscmat
        prefix = pc.getOptionsPrefix() or ""
        _set_defaults(prefix + "sweep_", {"ksp_type": "gmres", "ksp_rtol": 1e-8,
                                          "ksp_atol": 0.0, "pc_type": "bjacobi"})
        _set_defaults(prefix + "reduced_", {"ksp_type": "cg", "ksp_rtol": 1e-4,
                                            "pc_type": "gamg"})

        def ksp(pfx):
            k = PETSc.KSP().create(comm=comm)
            k.setOptionsPrefix(prefix + pfx)
            return k

        self.ksp_fwd = [ksp("sweep_") for _ in range(N)]
        self.ksp_bwd = [ksp("sweep_") for _ in range(N)]
        self.ksp_red = ksp("reduced_")
        self.applications = self.sweep_iterations = self.reduced_iterations = 0
        self._assemble(P)
        for k in self.ksp_fwd + self.ksp_bwd + [self.ksp_red]:
            k.setFromOptions()
        self.work = [self.M.createVecs()[1] for _ in range(4 * N + 3)]

    # ------------------------------------------------------------- assembly
    def _assemble(self, P):
        N, sub = self.N, P.createSubMatrix
        self.Bd = [sub(self.is_phi[k], self.is_rho[k]) for k in range(N)]
        self.Bl = [sub(self.is_phi[k + 1], self.is_rho[k]) for k in range(N - 1)]
        # Lambda_k = diag(A_kk) - diag(A_uz A_zz^-1 A_zu) (all dual blocks are diagonal).
        self.lam_inv, self.azz_inv, self.auz, self.azu = [], [], [], []
        for k in range(N):
            lam = sub(self.is_rho[k], self.is_rho[k]).getDiagonal()
            auz = sub(self.is_rho[k], self.is_z[k]).getDiagonal()
            azu = sub(self.is_z[k], self.is_rho[k]).getDiagonal()
            azz = sub(self.is_z[k], self.is_z[k]).getDiagonal()
            azz.reciprocal()
            d = auz.copy()
            d.pointwiseMult(d, azu)
            d.pointwiseMult(d, azz)
            lam.axpy(-1.0, d)
            lam.pointwiseMax(lam, self._central_curvature(auz, azz))
            lo = lam.min()[1]
            if not lo > 0:
                raise ValueError("TransportSweepPC: the condensed density block of slice "
                                 f"{k + 1} has a non-positive diagonal entry ({lo:.3g}); "
                                 "use the direct solver")
            lam.reciprocal()
            self.lam_inv.append(lam)
            self.azz_inv.append(azz)
            self.auz.append(auz)
            self.azu.append(azu)
        # X = sum_k (-C_kk) + M Lambda_N^-1 M.
        X = None
        for k in range(N):
            Ck = sub(self.is_phi[k], self.is_phi[k])
            if X is None:
                X = Ck
            else:
                X.axpy(1.0, Ck, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
        X.scale(-1.0)
        LM = self.M.copy()
        LM.diagonalScale(L=self.lam_inv[-1])
        X.axpy(1.0, self.M.matMult(LM), structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
        X.setOption(PETSc.Mat.Option.SPD, True)
        self.X = X
        self.Bdt = [b.transpose(PETSc.Mat()) for b in self.Bd]
        for k in range(N):
            self.ksp_fwd[k].setOperators(self.Bd[k])
            self.ksp_bwd[k].setOperators(self.Bdt[k])
        self.ksp_red.setOperators(self.X)

    @property
    def inner_iterations(self) -> int:
        """All inner Krylov iterations: block solves plus reduced solves."""
        return self.sweep_iterations + self.reduced_iterations

    def _central_curvature(self, auz, azz):
        r""":math:`\kappa^{-1}` times the central-path barrier curvature
        :math:`\mu\,\Delta s\,w\,m/\rho^2` (:math:`m = -A_{uz}`, :math:`\rho = A_{zz}/m`)."""
        m = auz.copy()
        m.scale(-1.0)
        rho = azz.copy()
        rho.reciprocal()                        # azz holds 1 / A_zz here
        rho.pointwiseDivide(rho, m)
        out = m.copy()
        with self.tr.barrier_weight.dat.vec_ro as w:
            out.pointwiseMult(out, w)
        out.scale(self.tr._mu_ds() / self.kappa)
        out.pointwiseDivide(out, rho)
        out.pointwiseDivide(out, rho)
        return out

    def update(self, pc):
        _, P = pc.getOperators()
        self._assemble(P)

    # ---------------------------------------------------------------- sweeps
    def _solve(self, ksp, b, x):
        ksp.solve(b, x)
        if ksp.getConvergedReason() < 0:
            raise RuntimeError("TransportSweepPC: a transport-sweep solve failed "
                               f"(KSP reason {ksp.getConvergedReason()}, "
                               f"{ksp.getIterationNumber()} iterations)")
        self.sweep_iterations += ksp.getIterationNumber()

    def _forward(self, r, out):
        r"""Solve :math:`B\,out = r` slice by slice, first to last."""
        t = self.work[-1]
        for k in range(self.N):
            if k == 0:
                r[0].copy(t)
            else:
                self.Bl[k - 1].mult(out[k - 1], t)
                t.aypx(-1.0, r[k])
            self._solve(self.ksp_fwd[k], t, out[k])

    def _backward(self, g, out):
        r"""Solve :math:`B^\top out = g` slice by slice, last to first."""
        t = self.work[-1]
        for k in reversed(range(self.N)):
            if k == self.N - 1:
                g[k].copy(t)
            else:
                self.Bl[k].multTranspose(out[k + 1], t)
                t.aypx(-1.0, g[k])
            self._solve(self.ksp_bwd[k], t, out[k])

    def _schur_inverse(self, rhs, out):
        r"""``out`` :math:`= \hat S^{-1}` ``rhs`` with
        :math:`\hat S^{-1} = -B^{-\top}\,\mathrm{diag}(\Lambda_1, \dots,
        \Lambda_{N-1}, M\hat X^{-1}M)\,B^{-1}`."""
        N, w = self.N, self.work
        a = w[3 * N:4 * N]
        self._forward(rhs, a)
        for k in range(N - 1):
            a[k].pointwiseDivide(a[k], self.lam_inv[k])
        t, s = w[-2], w[-3]
        self.M.mult(a[-1], t)
        self.ksp_red.solve(t, s)
        if self.ksp_red.getConvergedReason() < 0:
            raise RuntimeError("TransportSweepPC: the reduced solve failed (KSP reason "
                               f"{self.ksp_red.getConvergedReason()})")
        self.reduced_iterations += self.ksp_red.getIterationNumber()
        self.M.mult(s, a[-1])
        self._backward(a, out)
        for o in out:
            o.scale(-1.0)

    def apply(self, pc, x, y):
        r"""Block-LDU solve: condense the duals;
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
            # Condensed density residual r_rho - Auz Azz^-1 r_z.
            rz = x.getSubVector(self.is_z[k])
            t.pointwiseMult(rz, self.azz_inv[k])
            x.restoreSubVector(self.is_z[k], rz)
            t.pointwiseMult(t, self.auz[k])
            r_rho[k].axpy(-1.0, t)
        # r_phi - B Lambda^-1 r_rho (B: diagonal and sub-diagonal slice blocks).
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
        # y_rho = Lambda^-1 (r_rho - B^T y_phi); y_z = Azz^-1 (r_z - Azu y_rho).
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

    def applyTranspose(self, pc, x, y):
        raise NotImplementedError("TransportSweepPC has no transpose")

    def view(self, pc, viewer=None):
        super().view(pc, viewer)
        if viewer is not None:
            viewer.printfASCII("  block LDU, Schur complement by transport sweeps; "
                               "reduced operator solved with:\n")
            self.ksp_red.view(viewer)
