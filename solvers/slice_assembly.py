r"""Newton's method for a state made of copies of one space, assembled field by field.

A dynamic-transport problem with :math:`N` transport-time slices has :math:`2N` (or
:math:`3N`) unknown fields, all in the same :math:`P_k` space :math:`V`, coupled only to
their neighbours in transport time.  Written as one UFL form on the mixed space
:math:`V^{2N}`, every nonzero block of the residual and the Jacobian is compiled as its
own kernel, and each kernel packs more of the mixed state as :math:`N` grows: the
first-use compile time grew like :math:`N^{1.6}` (24 s for :math:`N = 4`, 673 s for
:math:`N = 32`, ``benchmarks/results/compile_time.md``).

Here the residual is given instead as one 1-form per field (a *row*), tested with a
:class:`~firedrake.ufl_expr.TestFunction` of :math:`V` and written in the fields'
``Function`` views (``w.subfunctions``).  The rows of interior slices are the same
form up to which ``Function`` s they read, so they have the same UFL signature and
share one compiled kernel; so do the Jacobian blocks
:math:`\partial F_i/\partial w_j` (derived by UFL, one per field ``j`` that row ``i``
reads).  A handful of kernels (first slice, interior slices, last slice) serve every
:math:`N`.

Each Newton iteration assembles the rows into the residual vector and the blocks into
:math:`V\times V` matrices, whose entries are then copied into one ``AIJ`` matrix with
the mixed space's layout (every rank's owned dofs field by field).  The copy is PETSc's
coordinate (COO) assembly: the position of every block entry in the big matrix is
computed once, when the matrix is built, and each Newton iteration passes the blocks'
values in that order (``MatSetValuesCOO``, a scatter).  Converting the block matrix
(``MATNEST``) instead cost three times more on two ranks than on one (0.47 s against
0.15 s over the eleven Jacobians of two warm steps at :math:`1.1\cdot10^5`
unknowns), because PETSc's conversion gathers every column index set on every rank.
The matrix is the one the monolithic form would assemble (``tests/test_slice_assembly.py``
checks that they agree to round-off, on one rank and on two), so direct solvers and the
KKT preconditioners see no difference.
"""
from __future__ import annotations

import numpy as np
import ufl
from firedrake import (Cofunction, TestFunctions, TrialFunction, dmhooks, solving_utils,
                       split)
from firedrake.assemble import get_assembler
from firedrake.petsc import DEFAULT_KSP_PARAMETERS, DEFAULT_SNES_PARAMETERS, PETSc
from petsctools import OptionsManager, flatten_parameters

__all__ = ["SliceAssembledSolver"]


class _AppContext:
    """What Firedrake's python preconditioners read from the DM (``.appctx``)."""

    def __init__(self, appctx: dict):
        self.appctx = appctx


class SliceAssembledSolver(OptionsManager):
    r"""Newton (PETSc SNES) for ``rows[i] = 0`` with ``w`` a ``Function`` on a mixed
    space of copies of one space :math:`V`, assembled field by field.

    The interface of Firedrake's ``NonlinearVariationalSolver`` that jkoflow uses:
    :attr:`snes`, :meth:`solve` (raises ``ConvergenceError``), :attr:`parameters`,
    ``set_default_parameter`` and options given with :attr:`options_prefix`.

    Parameters
    ----------
    w
        The state: a ``Function`` on ``MixedFunctionSpace([V] * n)``.
    rows
        ``n`` 1-forms; ``rows[i]`` is tested with a ``TestFunction`` of :math:`V` and
        reads the fields through ``w.subfunctions`` (never ``split(w)``).
    solver_parameters
        PETSc options (a dict, nested or flat).  The Jacobian is an assembled AIJ
        matrix: ``mat_type`` must be ``"aij"`` if given.
    options_prefix
        Prefix of the SNES's options.
    appctx
        The application context that python preconditioners find on the DM.
    nullspace
        Optional :class:`~firedrake.VectorSpaceBasis` of the Jacobian's null space.
    log_scaled_rows
        Optional ``{i: B_i}``: 1-forms (tested like the rows) that read field ``i``
        only, added to row ``i`` *nodally* scaled by :math:`e^{-w_i}`:
        :math:`F_i \mathrel{+}= e^{-w_i}\circ B_i(w_i)`, which no UFL form can express
        (the scale is the value at the test function's node).  Their Jacobian,
        :math:`\mathrm{diag}(e^{-w_i})\,\partial B_i/\partial w_i -
        \mathrm{diag}(e^{-w_i}\circ B_i)`, is added to block :math:`(i, i)`.  With
        :math:`B_i = \partial S/\partial l_i` this is the derivative of :math:`S`
        with respect to the nodal density :math:`e^{l_i}`
        (:mod:`~jkoflow.solvers.jko`, corrected steps with the vertex rule).
    """

    def __init__(self, w, rows, *, solver_parameters: dict | None = None,
                 options_prefix: str | None = None, appctx: dict | None = None,
                 nullspace=None, log_scaled_rows: dict | None = None):
        W = w.function_space()
        fields = w.subfunctions
        if len(rows) != len(fields):
            raise ValueError(f"one residual row per field: got {len(rows)} rows for "
                             f"{len(fields)} fields")
        element = fields[0].ufl_element()
        if any(f.ufl_element() != element for f in fields):
            raise ValueError("slice assembly needs every field in the same space")
        if any(not isinstance(row, ufl.Form) or len(row.arguments()) != 1 for row in rows):
            raise ValueError("every row must be a 1-form (a UFL Form with one argument)")
        tests = {row.arguments()[0].function_space() for row in rows}
        if len(tests) != 1:
            raise ValueError("every row must be tested in the same space V")
        V = tests.pop()
        if V.ufl_element() != element:
            raise ValueError(f"the rows are tested in {V.ufl_element()}, the fields are "
                             f"in {element}")
        params = flatten_parameters(solver_parameters or {})
        mat_type = params.pop("mat_type", "aij")
        if mat_type != "aij":
            raise ValueError(f"slice assembly builds an assembled AIJ Jacobian; "
                             f"mat_type {mat_type!r} is not supported")
        test = rows[0].arguments()[0]
        params = solving_utils.set_defaults(params, (test, test),
                                            ksp_defaults=DEFAULT_KSP_PARAMETERS,
                                            snes_defaults=DEFAULT_SNES_PARAMETERS)
        super().__init__(params, options_prefix, default_prefix="jkoflow")
        self.w, self.W, self.V = w, W, V
        #: The residual rows, one per field of the state.
        self.rows = list(rows)
        trial = TrialFunction(V)
        #: ``{(i, j): dF_i/dw_j}`` for every field ``j`` that row ``i`` reads.
        self.blocks = {}
        for i, row in enumerate(self.rows):
            read = set(row.coefficients())
            for j, f in enumerate(fields):
                if f in read:
                    self.blocks[i, j] = ufl.derivative(row, f, trial)
        #: ``{i: (B_i, dB_i/dw_i)}``, the nodally scaled parts of rows (parameter).
        self.log_scaled_rows = {}
        for i, B in (log_scaled_rows or {}).items():
            read = [j for j, f in enumerate(fields) if f in set(B.coefficients())]
            if read != [i] or (i, i) not in self.blocks:
                raise ValueError(f"a log-scaled part of row {i} must read field {i} only, "
                                 f"which row {i} must read too (it reads fields {read})")
            self.log_scaled_rows[i] = (B, ufl.derivative(B, fields[i], trial))
        self._scaled_assemblers = {
            i: (get_assembler(B), Cofunction(V.dual()), get_assembler(dB, mat_type="aij"))
            for i, (B, dB) in self.log_scaled_rows.items()}
        self._scaled_matrices: dict = {}
        self._row_assemblers = [get_assembler(row) for row in self.rows]
        self._row_values = [Cofunction(V.dual()) for _ in self.rows]
        self._block_assemblers = {ij: get_assembler(b, mat_type="aij")
                                  for ij, b in self.blocks.items()}
        self._block_values: dict = {}
        self._J = None
        self._coo_order: list = []
        self._nullspace = nullspace
        # Every rank owns its dofs of field 0, then of field 1, ...: the local
        # offsets of the fields in the state's Vec.
        layout = W.dof_dset.layout_vec
        first = layout.getOwnershipRange()[0]
        self._offsets = []
        for iset in W.dof_dset.field_ises:
            idx = iset.getIndices()
            if len(idx) and (idx[-1] - idx[0] + 1 != len(idx)):
                raise RuntimeError("a field's dofs are not contiguous on this rank")
            self._offsets.append((idx[0] - first) if len(idx) else 0)
        self._F = layout.duplicate()
        self._work = layout.duplicate()
        self._ctx = _AppContext(dict(appctx or {}))
        comm = W.mesh().comm
        self.snes = PETSc.SNES().create(comm=comm)
        self.snes.setDM(W.dm)
        with dmhooks.add_hooks(W.dm, self, appctx=self._ctx, save=False):
            self.set_from_options(self.snes)

    # ------------------------------------------------------------ assembly
    def _set_state(self, X) -> None:
        with self.w.dat.vec_wo as u:
            X.copy(u)

    def form_function(self, snes, X, F) -> None:
        """SNES residual callback: assemble every row into its block of ``F``."""
        self._set_state(X)
        with F as out:
            for asm, val, start in zip(self._row_assemblers, self._row_values,
                                       self._offsets):
                asm.assemble(tensor=val)
                data = val.dat.data_ro
                out[start:start + len(data)] = data
            for i, start in ((i, self._offsets[i]) for i in self._scaled_assemblers):
                scale, b = self._scaled_part(i)
                out[start:start + len(b)] += scale * b

    def _scaled_part(self, i: int) -> tuple:
        """:math:`e^{-w_i}` and :math:`B_i` at the current state (owned dofs)."""
        asm, val, _ = self._scaled_assemblers[i]
        asm.assemble(tensor=val)
        # e^-w is bounded at e^700 (no overflow); below w = -700 the scaled part is then
        # cut (its Jacobian there is approximate: such nodes carry densities < 1e-304)
        return np.exp(-np.maximum(self.w.subfunctions[i].dat.data_ro, -700.0)), val.dat.data_ro

    def _assemble_blocks(self) -> None:
        for ij, asm in self._block_assemblers.items():
            if ij in self._block_values:
                asm.assemble(tensor=self._block_values[ij])
            else:
                self._block_values[ij] = asm.assemble()
            self._block_values[ij].petscmat    # finishes the assembly (PyOP2 is lazy)
        for i, (_, _, dasm) in self._scaled_assemblers.items():
            # block (i, i) += diag(e^-w) dB/dw - diag(e^-w B)
            if i in self._scaled_matrices:
                dasm.assemble(tensor=self._scaled_matrices[i])
            else:
                self._scaled_matrices[i] = dasm.assemble()
            M = self._scaled_matrices[i].petscmat
            block = self._block_values[i, i].petscmat
            scale, b = self._scaled_part(i)
            d = M.createVecLeft()
            d.setArray(scale)
            M.diagonalScale(L=d)
            block.axpy(1.0, M, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
            d.setArray(-scale * b)
            block.setDiagonal(d, addv=PETSc.InsertMode.ADD_VALUES)

    def form_jacobian(self, snes, X, J, P) -> None:
        """SNES Jacobian callback: assemble the blocks and convert them into ``J``."""
        self._set_state(X)
        self.jacobian()

    def jacobian(self) -> PETSc.Mat:
        """The Jacobian at the current state (assembled now; the SNES's matrix)."""
        self._assemble_blocks()
        if self._J is None:
            self._J = self._coo_matrix()
            if self._nullspace is not None:
                self._J.setNullSpace(self._nullspace.nullspace())
        values = [self._block_values[ij].petscmat.getValuesCSR()[2]
                  for ij in self._coo_order]
        self._J.setValuesCOO(np.concatenate(values) if values else np.zeros(0),
                             addv=PETSc.InsertMode.INSERT_VALUES)
        return self._J

    def _coo_matrix(self) -> PETSc.Mat:
        """The AIJ matrix of the state's layout, preallocated for the blocks' entries
        in the order in which :meth:`jacobian` passes their values: the blocks in
        ``_coo_order`` (set here), the rows of each as ``getValuesCSR`` gives them."""
        comm = self.snes.comm
        V_ranges = np.asarray(self.V.dof_dset.layout_vec.getOwnershipRanges())
        W_ranges = np.asarray(self.W.dof_dset.layout_vec.getOwnershipRanges())
        v_local = np.diff(V_ranges)
        rank = comm.getRank()
        if any(off != j * v_local[rank] for j, off in enumerate(self._offsets)):
            raise RuntimeError("the fields of the state are not laid out one after "
                               "another on this rank")

        def state_index(v_index, field):
            # V's global numbering -> the state's, for a dof of `field`, on its owner.
            owner = np.searchsorted(V_ranges, v_index, side="right") - 1
            return W_ranges[owner] + field * v_local[owner] + v_index - V_ranges[owner]

        rows, cols = [], []
        self._coo_order = sorted(self._block_values)
        for i, j in self._coo_order:
            indptr, indices, _ = self._block_values[i, j].petscmat.getValuesCSR()
            local_rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            rows.append(state_index(local_rows + V_ranges[rank], i))
            cols.append(state_index(indices, j))
        n = W_ranges[rank + 1] - W_ranges[rank]
        J = PETSc.Mat().create(comm=comm)
        J.setSizes(((n, W_ranges[-1]), (n, W_ranges[-1])))
        J.setType(PETSc.Mat.Type.AIJ)
        J.setPreallocationCOO(np.concatenate(rows).astype(PETSc.IntType),
                              np.concatenate(cols).astype(PETSc.IntType))
        return J

    # --------------------------------------------------------------- solve
    def solve(self) -> None:
        """Newton from the current state; the state holds the last iterate.

        Raises
        ------
        firedrake.exceptions.ConvergenceError
            If SNES did not converge (as Firedrake's solvers do).
        """
        # The matrix is built (from assembled blocks, for its sparsity) once; SNES
        # assembles it at every Newton iteration.
        J = self._J if self._J is not None else self.jacobian()
        # The DM is shared by every solver on this mixed space: set the callbacks
        # every time, as Firedrake's solvers do.
        self.snes.setFunction(self.form_function, self._F)
        self.snes.setJacobian(self.form_jacobian, J, J)
        dm = self.snes.getDM()
        with self.w.dat.vec_ro as u:
            u.copy(self._work)
        with self.inserted_options(), dmhooks.add_hooks(dm, self, appctx=self._ctx):
            self.snes.solve(None, self._work)
        with self.w.dat.vec_wo as u:
            self.snes.getSolution().copy(u)
        solving_utils.check_snes_convergence(self.snes)

    def monolithic_residual(self) -> ufl.Form:
        """The residual as one UFL form on the mixed space (the rows with the mixed
        test functions and ``split(w)``): what slice assembly avoids compiling, for
        checks and for solvers that need a single form.  Not for nodally scaled rows
        (``log_scaled_rows``), which no form expresses: ``NotImplementedError``."""
        if self.log_scaled_rows:
            raise NotImplementedError("rows with nodally scaled parts have no monolithic form")
        subs = dict(zip(self.w.subfunctions, split(self.w)))
        form = 0
        for row, q in zip(self.rows, TestFunctions(self.W)):
            form += ufl.replace(row, {row.arguments()[0]: q, **subs})
        return form
