r"""A Schur-complement preconditioner for the Benamou--Brenier KKT system.

Each Newton step of a :class:`~jkoflow.solvers.BenamouBrenier` solve is a saddle-point
system in the unknown density slices :math:`u` (log-densities or densities), the
interior-point duals :math:`z` (density unknowns only) and the potentials
:math:`\phi`.  After the duals are eliminated it reads

.. math::

    \begin{pmatrix} A & B^\top_\phi \\ B & C \end{pmatrix}
    \begin{pmatrix} \delta u \\ \delta\phi \end{pmatrix} =
    \begin{pmatrix} r_u \\ r_\phi \end{pmatrix},

with :math:`B` the linearised discrete continuity equation (time differences of mass
matrices plus a transport term), :math:`B^\top_\phi` its counterpart in the
Hamilton--Jacobi rows, :math:`C = -\Delta s\,K(\rho_{i-1/2})` a block-diagonal weighted
stiffness matrix, and :math:`A` the Hessian of the Lagrangian in the densities: the
barrier term :math:`Z R^{-1}` (vertex-lumped, so diagonal) at every slice, the terminal
energy's Hessian :math:`\eta J''(\rho_N)` at the last one, and for log unknowns the
curvature of the geometric slice mean.

The preconditioner is the block LDU factorisation with :math:`A` replaced by its
diagonal :math:`\Lambda`, i.e. PETSc's ``selfp`` Schur approximation, but with the
duals condensed first and the Schur complement

.. math::

    S = C - B\Lambda^{-1}B^\top_\phi

*assembled* and solved by a Krylov method with algebraic multigrid (CG + GAMG).
:math:`-S` is a space--time elliptic operator: :math:`\Delta s\,K` in space and,
through :math:`B\Lambda^{-1}B^\top_\phi`, a second difference in transport time
weighted by :math:`\rho/z` --- the structure exploited by Facca, Todeschi, Natale &
Benzi (SISC 2023) for finite volumes.

Measured (2D KL step from a Gaussian bump, P1, N = 4, eta = 0.05, density
unknowns): the outer FGMRES needs 11--14 iterations per Newton step on 8x8, 16x16 and
24x24 meshes, with an exact or an iterative :math:`S` solve, so the approximation
:math:`A\approx\Lambda` is robust under refinement.  The cost is in :math:`S`: near the
end of the barrier schedule (:math:`\mu \to 10^{-10}`) its time couplings
:math:`\rho/z \sim \rho^2/(\mu\,\Delta s\,w)` exceed the spatial ones by many orders
of magnitude and vary by as many across the domain; CG + GAMG then needs 100--300
iterations per solve (ordering :math:`S` node by node with block size :math:`N`, SOR
smoothing, halves the count; a loose inner tolerance makes the outer iteration
stall).  At the sizes that fit this machine the direct solver is 15--60 times faster.
For JKO steps use the transport-sweep preconditioner of
:mod:`jkoflow.solvers.sweep_preconditioner` instead (the ``"schur"`` preset), which
never assembles :math:`S` and beats the direct solver from about 25k unknowns.  This
one is kept for comparison (``"schur-amg"`` preset); all ``-jko_schur_*`` options
reach its :math:`S` solver.  Density unknowns only: with
log-densities the rows of :math:`S` scale like :math:`\rho` and vanish in the tails.

Why not an augmented Lagrangian?  Adding :math:`\gamma B^\top_\phi W^{-1}` times the
continuity rows to the Hamilton--Jacobi rows makes the Schur complement tend to
:math:`-W/\gamma\,(I - B_\phi^{-\top}AB^{-1}C)`, not to :math:`-W/\gamma`: because
:math:`C\neq 0` the relative error :math:`B_\phi^{-\top}AB^{-1}C \sim
\eta\,\Delta s/h^2` does not shrink with :math:`\gamma` (measured: hundreds of GMRES
iterations even with exact inner solves).

Use it through the ``"schur-amg"`` preset of :mod:`jkoflow.solvers.presets`, i.e.

.. code-block:: text

    -jko_ksp_type fgmres -jko_pc_type python
    -jko_pc_python_type jkoflow.solvers.preconditioners.TransportSchurPC
    -jko_schur_ksp_type cg -jko_schur_pc_type gamg     # the S solver (defaults;
    -jko_schur_mg_levels_pc_type sor                   #  S is ordered node by node)
"""
from __future__ import annotations

import numpy as np
from firedrake.petsc import PETSc
from firedrake.preconditioners.base import PCBase

__all__ = ["TransportSchurPC", "kkt_transport"]


def kkt_transport(pcbase: PCBase, pc):
    """The :class:`~jkoflow.solvers.BenamouBrenier` solver behind a KKT preconditioner
    and the assembled Jacobian, after the checks every such preconditioner needs.

    Raises
    ------
    ValueError
        If the solver is not in the application context (``"jko_transport"``), does
        not meet the preconditioner's requirements
        (:meth:`~jkoflow.solvers.BenamouBrenier.check_preconditioner`), or the
        Jacobian is not assembled.
    """
    name = type(pcbase).__name__
    _, P = pc.getOperators()
    transport = pcbase.get_appctx(pc).get("jko_transport")
    if transport is None:
        raise ValueError(f"{name} needs the BenamouBrenier solver in the application "
                         "context under 'jko_transport'")
    transport.check_preconditioner(name)
    if P.getType() == "python":
        raise ValueError(f"{name} needs an assembled Jacobian (solver parameter "
                         "'mat_type': 'aij')")
    return transport, P


class TransportSchurPC(PCBase):
    r"""Diagonal-:math:`A` Schur-complement preconditioner (see the module docstring).

    The :class:`~jkoflow.solvers.BenamouBrenier` solver puts itself in the
    application context under ``"jko_transport"``; the field layout (density,
    potential and dual slices) is read from it.  The Schur complement solver has the
    options prefix of the outer solver followed by ``schur_`` (default: one V-cycle of
    CG + GAMG on :math:`-S`).  The numbers of Schur solves and of their Krylov
    iterations are counted in :attr:`applications` and :attr:`inner_iterations`.
    """

    _prefix = "schur_"
    needs_python_pmat = False

    def initialize(self, pc):
        transport, P = kkt_transport(self, pc)
        self.N = transport.N
        comm = pc.comm

        def index_set(fields):
            idx = transport.field_indices(fields).astype(PETSc.IntType)
            return PETSc.IS().createGeneral(idx, comm=comm)

        self.is_u = index_set(transport.rho_fields)
        self.is_phi = index_set(transport.phi_fields)
        self.is_z = index_set(transport.dual_fields) if transport.n_dual else None

        prefix = (pc.getOptionsPrefix() or "") + self._prefix
        opts = PETSc.Options(prefix)
        defaults = {"ksp_type": "cg", "ksp_rtol": 1e-8, "ksp_max_it": 2000, "pc_type": "gamg",
                    "mg_levels_pc_type": "sor"}
        for key, value in defaults.items():
            if not opts.hasName(key):
                opts.setValue(key, value)
        self.ksp = PETSc.KSP().create(comm=comm)
        self.ksp.setOptionsPrefix(prefix)
        self.applications = 0
        self.inner_iterations = 0
        self._assemble(P)
        self.ksp.setOperators(self.S)
        self.ksp.setFromOptions()
        self.t_u = self.Bt.createVecs()[1]
        self.t_phi = self.B.createVecs()[1]
        self.s_rhs, self.s_sol = self.S.createVecs()
        if self.is_z is not None:
            self.y_z = self.Azz_inv.duplicate()

    def _assemble(self, P):
        r"""Blocks of the assembled Jacobian, :math:`\Lambda^{-1}` and :math:`-S`."""
        self.Bt = P.createSubMatrix(self.is_u, self.is_phi)
        self.B = P.createSubMatrix(self.is_phi, self.is_u)
        C = P.createSubMatrix(self.is_phi, self.is_phi)
        lam = P.createSubMatrix(self.is_u, self.is_u).getDiagonal()
        if self.is_z is not None:
            # Condense the duals: their blocks are diagonal (vertex quadrature), and
            # Lambda = diag(A_uu) - diag(A_uz) diag(A_zz)^{-1} diag(A_zu).
            self.Auz = P.createSubMatrix(self.is_u, self.is_z)
            self.Azu = P.createSubMatrix(self.is_z, self.is_u)
            self.Azz_inv = P.createSubMatrix(self.is_z, self.is_z).getDiagonal()
            self.Azz_inv.reciprocal()
            duz, dzu = self.Auz.getDiagonal(), self.Azu.getDiagonal()
            duz.pointwiseMult(duz, dzu)
            duz.pointwiseMult(duz, self.Azz_inv)
            lam.axpy(-1.0, duz)
        lo = lam.min()[1]
        if not lo > 0:
            raise ValueError("TransportSchurPC: the condensed density block has a "
                             f"non-positive diagonal entry ({lo:.3g}); use the direct solver")
        lam.reciprocal()
        self.lam_inv = lam
        LBt = self.Bt.copy()
        LBt.diagonalScale(L=lam)
        S = self.B.matMult(LBt)
        S.axpy(-1.0, C, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
        self.S = self._node_major(S)

    def _node_major(self, S):
        """Reorder :math:`S` node by node (all slices of a vertex together) with block
        size :math:`N`, so that multigrid coarsens in space only and its point-block
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

    def _to_node_major(self, v, out):
        out.setArray(v.getArray(readonly=True).reshape(self.N, self._n_loc).T.ravel())

    def _to_slice_major(self, v, out):
        out.setArray(v.getArray(readonly=True).reshape(self._n_loc, self.N).T.ravel())

    def update(self, pc):
        _, P = pc.getOperators()
        self._assemble(P)
        self.ksp.setOperators(self.S)

    def apply(self, pc, x, y):
        r"""One block-LDU solve: condense the duals, then
        :math:`y_\phi = S^{-1}(r_\phi - B\Lambda^{-1}r_u)`,
        :math:`y_u = \Lambda^{-1}(r_u - B^\top_\phi y_\phi)`, then recover the duals."""
        r_u, r_phi = x.getSubVector(self.is_u), x.getSubVector(self.is_phi)
        y_u, y_phi = y.getSubVector(self.is_u), y.getSubVector(self.is_phi)
        t_u, t_phi = self.t_u, self.t_phi
        r_u.copy(t_u)
        if self.is_z is not None:
            # Condensed right-hand side r_u - A_uz A_zz^{-1} r_z.
            r_z = x.getSubVector(self.is_z)
            self.y_z.pointwiseMult(self.Azz_inv, r_z)
            self.Auz.mult(self.y_z, y_u)
            t_u.axpy(-1.0, y_u)
        # y_phi = -(-S)^{-1} (r_phi - B Lambda^{-1} r_u)
        y_u.pointwiseMult(self.lam_inv, t_u)
        self.B.mult(y_u, t_phi)
        t_phi.aypx(-1.0, r_phi)
        self._to_node_major(t_phi, self.s_rhs)
        self.ksp.solve(self.s_rhs, self.s_sol)
        self._to_slice_major(self.s_sol, y_phi)
        y_phi.scale(-1.0)
        self.applications += 1
        self.inner_iterations += self.ksp.getIterationNumber()
        # y_u = Lambda^{-1} (r_u - Bt y_phi)
        self.Bt.mult(y_phi, y_u)
        y_u.aypx(-1.0, t_u)
        y_u.pointwiseMult(self.lam_inv, y_u)
        if self.is_z is not None:
            # y_z = A_zz^{-1} (r_z - A_zu y_u)
            y_z = y.getSubVector(self.is_z)
            self.Azu.mult(y_u, y_z)
            y_z.aypx(-1.0, r_z)
            y_z.pointwiseMult(self.Azz_inv, y_z)
            y.restoreSubVector(self.is_z, y_z)
            x.restoreSubVector(self.is_z, r_z)
        y.restoreSubVector(self.is_u, y_u)
        y.restoreSubVector(self.is_phi, y_phi)
        x.restoreSubVector(self.is_u, r_u)
        x.restoreSubVector(self.is_phi, r_phi)

    def applyTranspose(self, pc, x, y):
        raise NotImplementedError("TransportSchurPC has no transpose")

    def view(self, pc, viewer=None):
        super().view(pc, viewer)
        if viewer is not None:
            viewer.printfASCII("  Schur complement C - B diag(A)^{-1} B^T, solved with:\n")
            self.ksp.view(viewer)
