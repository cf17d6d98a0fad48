r"""A symmetric direct solve of the Newton system of a log-density step.

With log-density unknowns :math:`l_i` a JKO step (or geodesic) of
:mod:`~jkoflow.solvers.benamou_brenier` solves the stationarity of the discrete
Lagrangian :math:`L(\rho, \phi)` in the *densities*, at :math:`\rho = e^{l}`, with
Newton in :math:`(l, \phi)`.  Its Jacobian is the derivative of those rows with
respect to :math:`l`, which is not symmetric: a Hamilton--Jacobi row is a
derivative of :math:`L` with respect to the nodal density, but its column is a
derivative with respect to the nodal log-density, and with Gauss quadrature
:math:`e^{l}` varies inside a cell, so no nodal factor relates the two.

With the vertex rule for every integral (``quadrature="vertex"``, :math:`P_1`) the
densities enter :math:`L` only through their nodal values :math:`\rho_j = e^{l_j}`.
Then :math:`\partial/\partial l_j = \rho_j\,\partial/\partial\rho_j`, and the
Jacobian is exactly

.. math::

    J = \begin{pmatrix} H_{\rho\rho} D & H_{\rho\phi} \\
                        H_{\phi\rho} D & H_{\phi\phi} \end{pmatrix},
    \qquad D = \mathrm{diag}(\rho_j),

:math:`H` the Hessian of :math:`L` in :math:`(\rho, \phi)`, which is symmetric.
Scaling the Hamilton--Jacobi rows by the same :math:`D` gives
:math:`\mathrm{diag}(D, I)\,J`, the symmetric matrix
:math:`\begin{pmatrix} DH_{\rho\rho}D & DH_{\rho\phi} \\ H_{\phi\rho}D & H_{\phi\phi}
\end{pmatrix}` (indefinite: a saddle point).  :class:`ScaledLDLTPC` factorises it
with MUMPS's symmetric indefinite :math:`LDL^\top` and solves
:math:`J x = b` as :math:`(\mathrm{diag}(D, I)J)\,x = \mathrm{diag}(D, I)\,b`: the
same Newton step as an LU of :math:`J`, with half the factor entries and about
two thirds of the factorisation's time (``benchmarks/results/symmetric_factorisation.md``).
The Newton iteration itself is unchanged.  A corrected step's Fisher-information
term depends on :math:`\nabla l`, but with the vertex rule it is still a function of the
nodal values, and its row is taken as such
(:meth:`~jkoflow.solvers.JKOStep.nodal_terminal`), so the same holds for it.

A common factor of all rows changes nothing, so the rows are scaled by
:math:`\mathrm{diag}(D, I)/c`, :math:`c = e^{\max l}`, and :math:`D_j/c =
e^{l_j - \max l}` cannot overflow.
Where the log-densities span more than :data:`MAX_LOG_RANGE` units the smallest
:math:`D_j` would come close to underflow and the scaled matrix would lose its rows: that
Jacobian is then factorised by LU instead (logged).
"""
from __future__ import annotations

import numpy as np
from firedrake.petsc import PETSc
from mpi4py import MPI

from .common import logger
from .preconditioners import KKTPreconditioner
from .presets import preset

__all__ = ["ScaledLDLTPC", "MAX_LOG_RANGE"]

#: Largest spread :math:`\max l - \min l` of the log-densities for which the rows are
#: scaled (:math:`e^{-650} \approx 10^{-282}`: a margin above the smallest normal
#: double, :math:`e^{-708}`).
MAX_LOG_RANGE = 650.0


class ScaledLDLTPC(KKTPreconditioner):
    r"""The exact Newton solve of a log-density step with vertex quadrature by MUMPS's
    :math:`LDL^\top` of the row-scaled Jacobian (module docstring); preset
    ``"ldlt"``.

    Inner solvers: ``<prefix>ldlt_`` (MUMPS Cholesky, i.e. :math:`LDL^\top` for
    indefinite matrices, with the ``"direct"`` preset's MUMPS controls) and
    ``<prefix>ldlt_fallback_`` (MUMPS LU, for Jacobians whose log-densities span more
    than :data:`MAX_LOG_RANGE`).  ``fallbacks`` counts the latter.
    """

    rescue_with_direct_solve = False

    def setup(self, pc, P):
        """Create the inner solvers and the work vectors, then factorise ``P``."""
        t = self.transport
        mumps = {k: v for k, v in preset("direct").items() if k.startswith("mat_mumps")}
        self.set_defaults("ldlt_", {"ksp_type": "preonly", "pc_type": "cholesky",
                                    "pc_factor_mat_solver_type": "mumps", **mumps})
        self.set_defaults("ldlt_fallback_", {"ksp_type": "preonly", "pc_type": "lu",
                                             "pc_factor_mat_solver_type": "mumps", **mumps})
        self.ksp = self.krylov("ldlt_")
        self.ksp.setFromOptions()
        self.fallback = self.krylov("ldlt_fallback_")
        self.fallback.setFromOptions()
        self.log_rows = t.local_field_indices(t.rho_fields)
        self.scale = P.createVecLeft()
        self.work = P.createVecLeft()
        self.scaled = None
        self.fallbacks = 0
        self.assemble_blocks(P)

    def assemble_blocks(self, P):
        """Scale the rows of a copy of ``P`` and factorise it (or ``P`` by LU, when the
        log-densities span more than :data:`MAX_LOG_RANGE`)."""
        t = self.transport
        with t.w.dat.vec_ro as w:
            logs = w.getArray(readonly=True)[self.log_rows]
        comm = t.geometry.comm
        top = comm.allreduce(float(logs.max(initial=-np.inf)), MPI.MAX)
        bottom = comm.allreduce(float(logs.min(initial=np.inf)), MPI.MIN)
        self.use_fallback = top - bottom > MAX_LOG_RANGE
        if self.use_fallback:
            self.fallbacks += 1
            logger.info("ScaledLDLTPC: the log-densities span %.0f > %.0f units (the row "
                        "scaling would underflow): this Jacobian is factorised by LU",
                        top - bottom, MAX_LOG_RANGE)
            self.fallback.setOperators(P)
            self.fallback.setUp()
            return
        scale = self.scale.getArray()
        # diag(D, I) / c with c = exp(max l): every row scaled by 1/c keeps the
        # symmetry and D / c cannot overflow
        scale[:] = np.exp(-top)
        scale[self.log_rows] = np.exp(logs - top)
        self.scale.setArray(scale)
        if self.scaled is None:
            self.scaled = P.duplicate(copy=True)
        else:
            P.copy(self.scaled, structure=PETSc.Mat.Structure.SAME_NONZERO_PATTERN)
        self.scaled.diagonalScale(L=self.scale)
        self.scaled.setOption(PETSc.Mat.Option.SYMMETRIC, True)
        self.ksp.setOperators(self.scaled)
        self.ksp.setUp()

    def apply_blocks(self, pc, x, y):
        """``y`` = the Newton step for the right-hand side ``x``."""
        self.applications += 1
        if self.use_fallback:
            self.fallback.solve(x, y)
            self.check_inner_solve(self.fallback, "the fallback LU solve")
            return
        self.work.pointwiseMult(x, self.scale)
        self.ksp.solve(self.work, y)
        self.check_inner_solve(self.ksp, "the LDL^T solve")

    def view(self, pc, viewer=None):
        if viewer is not None:
            viewer.printfASCII("  ScaledLDLTPC: MUMPS LDL^T of the Jacobian with its "
                               "log-density rows scaled by the nodal densities\n")
