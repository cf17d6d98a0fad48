r"""Why the transport sweep does not carry over to log-density unknowns: a measurement.

Issue 15 asks for an iterative KKT solve of the JKO step with log-density unknowns (the
default for entropic energies).  This script measures the obvious candidate on small
meshes, where everything can be formed exactly, to see where it breaks.

The Newton system of a log step (:mod:`jkoflow.solvers.benamou_brenier`), in the
log-densities :math:`l_1..l_N` and potentials :math:`\phi_1..\phi_N`, is

.. math::

    \begin{pmatrix} A & G \\ B & C \end{pmatrix}
    \begin{pmatrix} \delta l \\ \delta\phi \end{pmatrix} =
    \begin{pmatrix} g \\ f \end{pmatrix},

with :math:`G` (Hamilton--Jacobi rows against the potentials) block *upper*
bidiagonal in transport time, :math:`B` (continuity rows against the log-densities)
block *lower* bidiagonal, :math:`C` block diagonal (weighted stiffness matrices), and
:math:`A` (Hamilton--Jacobi rows against the log-densities) block tridiagonal: small
curvature terms of the geometric slice mean, :math:`O(\Delta s|\nabla\phi|^2)`, plus,
in the last slice, the energy's Hessian :math:`\eta\,\rho J''(\rho)` (for KL,
:math:`\eta M`).  Unlike density unknowns there is no barrier: :math:`A` is nearly
zero except in the last slice.

Without :math:`A` the system is solved *exactly* by two sweeps,
:math:`\delta\phi = G^{-1}g` (last slice to first) and
:math:`\delta l = B^{-1}(f - C\delta\phi)` (first to last).  Keeping :math:`A` in the
last slice only, the exact solve needs in addition the terminal *capacitance*
:math:`I - HA_{NN}`, :math:`H = E^\top B^{-1}CG^{-1}E` (the last log-density's response
to a forcing of the last Hamilton--Jacobi row; :math:`E` picks the last slice), a
dense :math:`n\times n` operator applied by two more sweeps.  Its cheap model, with
the time transfers :math:`B_{i,i-1}B_{i-1,i-1}^{-1} \approx -I` as in the density
sweep, is :math:`B_{NN}^{-1}Q`, :math:`Q = B_{NN} - \bar C D_G^{-1}A_{NN}`
(:math:`\bar C = \sum_i C_{ii}`, :math:`D_G` the row sums of :math:`G_{NN}`): an
implicit-Euler-type operator for AMG.

Measured per Newton iterate of a cold and a warm step (KL to :math:`N(0, I)` on
:math:`[-3,3]^2` from a Gaussian bump, P1, N = 4, :math:`\eta = 0.05`, the workload of
``variant_growth.py``), with every block solved by LU and the capacitance formed
densely:

* outer FGMRES iterations (relative :math:`10^{-6}`) with the preconditioner that
  drops :math:`A` (two sweeps) and with the one that keeps its last slice (exact
  capacitance): what the sweep structure can reach at best;
* the condition number of the capacitance and the range of :math:`|\lambda|` of the
  capacitance preconditioned by its model :math:`Q`: whether the cheap model is good.

A second table measures a cheaper idea on a larger mesh: GMRES around a *lagged* LU
(the factorisation of an earlier Newton iterate, refactored when GMRES needed more than
10 iterations), against a fresh LU at every Newton step (the default): Newton and GMRES
iterations, refactorisations and CPU seconds of three chained steps.

A third table tries a different structure, algebraic multigrid on the whole KKT
system: the :math:`2N` fields reordered node by node into point blocks (an
:math:`8\times 8` block per vertex for N = 4), GAMG with unsmoothed aggregation of
the vertices (``InterlacedAMGPC``), three GMRES iterations preconditioned by point-block
Jacobi as smoother on every level, one V-cycle per outer FGMRES iteration (relative
:math:`10^{-6}`).  Reported per mesh (16² to 128² cells): Newton and outer iterations
of a cold and a warm step, and their CPU seconds against MUMPS's in the same run.

Serial only (dense matrices of the mesh's size).  Run:
``"$(make -s env-path)/bin/python" benchmarks/log_kkt_capacitance.py`` (``--quick``:
one small mesh).  Results: ``benchmarks/results/log_kkt_capacitance.md``.
"""
import argparse
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
from firedrake import COMM_WORLD
from firedrake.petsc import PETSc

from jkoflow.solvers import JKOStep, preset, set_log_level
from jkoflow.solvers.preconditioners import KKTPreconditioner

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import write_table  # noqa: E402
from _workloads import bump_case  # noqa: E402

#: Diagnostics of the current run, one dict per preconditioner application set-up.
RECORD: list = []


def dense(mat) -> np.ndarray:
    """A sequential PETSc matrix as a dense array (small meshes only)."""
    return mat.convert("dense").getDenseArray().copy()


class SweepDiagnosticPC(KKTPreconditioner):
    """Two (``keep_terminal = False``) or four sweeps around the exact terminal
    capacitance, every block by LU; records the capacitance's spectra per Jacobian."""

    keep_terminal = True

    def setup(self, pc, P):
        tr, N = self.transport, self.N
        self.is_l = [self.index_set(slice(tr.rho_fields.start + k, tr.rho_fields.start + k + 1))
                     for k in range(N)]
        self.is_p = [self.index_set(slice(tr.phi_fields.start + k, tr.phi_fields.start + k + 1))
                     for k in range(N)]
        self.ksps = [self.krylov("diag_") for _ in range(2 * N)]
        for k in self.ksps:
            k.setType("preonly")
            k.getPC().setType("lu")
        self.assemble_blocks(P)
        self.vecs = [self.B[0].createVecs()[1] for _ in range(4 * N + 2)]

    def assemble_blocks(self, P):
        N, sub = self.N, P.createSubMatrix
        il, ip = self.is_l, self.is_p
        self.B = [sub(ip[k], il[k]) for k in range(N)]
        self.Bl = [sub(ip[k + 1], il[k]) for k in range(N - 1)]
        self.G = [sub(il[k], ip[k]) for k in range(N)]
        self.Gu = [sub(il[k], ip[k + 1]) for k in range(N - 1)]
        self.C = [sub(ip[k], ip[k]) for k in range(N)]
        self.Ann = sub(il[N - 1], il[N - 1])
        # Continuity rows scale like rho (tails): row-scale the B blocks for the LU.
        self.scale = []
        for k in range(N):
            b = self.B[k].copy()
            ia, _, a = b.getValuesCSR()
            d = b.createVecs()[1]
            d.setArray(1.0 / np.add.reduceat(np.abs(a), ia[:-1]))
            b.diagonalScale(L=d)
            self.scale.append(d)
            self.ksps[k].setOperators(b)
            self.ksps[N + k].setOperators(self.G[k])
        if self.keep_terminal:
            self._capacitance()

    def _back(self, g, out):
        t = self.B[0].createVecs()[1]
        for k in reversed(range(self.N)):
            g[k].copy(t)
            if k < self.N - 1:
                t.axpy(-1.0, self.Gu[k] * out[k + 1])
            self.ksps[self.N + k].solve(t, out[k])

    def _fwd(self, f, out):
        t = self.B[0].createVecs()[1]
        for k in range(self.N):
            f[k].copy(t)
            if k > 0:
                t.axpy(-1.0, self.Bl[k - 1] * out[k - 1])
            t.pointwiseMult(t, self.scale[k])
            self.ksps[k].solve(t, out[k])

    def _pair(self, g, f, phi, l):
        self._back(g, phi)
        self._fwd([f[k] - self.C[k] * phi[k] for k in range(self.N)], l)

    def _capacitance(self):
        N = self.N
        n = self.B[0].getSize()[0]
        zero = [self.B[0].createVecs()[1] for _ in range(N)]
        phi = [v.duplicate() for v in zero]
        l = [v.duplicate() for v in zero]
        H = np.zeros((n, n))
        for j in range(n):
            for v in zero:
                v.set(0.0)
            zero[N - 1].setValue(j, 1.0)
            zero[N - 1].assemble()
            self._back(zero, phi)
            for v in zero:
                v.set(0.0)
            self._fwd([v - self.C[k] * phi[k] for k, v in enumerate(zero)], l)
            H[:, j] = -l[N - 1].getArray()
        A = dense(self.Ann)
        cap = np.eye(n) - H @ A
        self.cap_inv = np.linalg.inv(cap)
        Cbar = sum(dense(c) for c in self.C)
        Gnn = dense(self.G[N - 1])
        Bnn = dense(self.B[N - 1])
        Q = Bnn - Cbar @ (A / Gnn.sum(axis=1)[:, None])
        lam = np.abs(np.linalg.eigvals(np.linalg.solve(Q, Bnn @ cap)))
        RECORD.append({"cond": np.linalg.cond(cap), "lo": lam.min(), "hi": lam.max()})

    def apply_blocks(self, pc, x, y):
        N, v = self.N, self.vecs
        g, f, phi, l = v[:N], v[N:2 * N], v[2 * N:3 * N], v[3 * N:4 * N]
        for k in range(N):
            for iset, out in ((self.is_l[k], g[k]), (self.is_p[k], f[k])):
                xs = x.getSubVector(iset)
                xs.copy(out)
                x.restoreSubVector(iset, xs)
        self._pair(g, f, phi, l)
        if self.keep_terminal:
            yN = l[N - 1].duplicate()
            yN.setArray(self.cap_inv @ l[N - 1].getArray())
            g[N - 1].axpy(-1.0, self.Ann * yN)
            self._pair(g, f, phi, l)
        for k in range(N):
            for iset, val in ((self.is_l[k], l[k]), (self.is_p[k], phi[k])):
                ys = y.getSubVector(iset)
                val.copy(ys)
                y.restoreSubVector(iset, ys)
        self.applications += 1


class TwoSweepPC(SweepDiagnosticPC):
    """The two sweeps alone: the exact inverse of the system without :math:`A`."""
    keep_terminal = False


def params(pc: str) -> dict:
    """Newton as for the direct log step (full steps, rtol 1e-12), FGMRES around the
    diagnostic preconditioner ``pc`` (a class of this module)."""
    return {"mat_type": "aij", "snes_type": "newtonls", "snes_linesearch_type": "basic",
            "snes_max_it": 60, "snes_rtol": 1e-12, "snes_atol": 1e-12, "snes_stol": 0.0,
            "ksp_type": "fgmres", "ksp_rtol": 1e-6,
            "ksp_gmres_restart": 300, "ksp_max_it": 300, "pc_type": "python",
            "pc_python_type": f"{__name__}.{pc}"}


class InterlacedAMGPC:
    """Monolithic AMG for the KKT Jacobian (serial): the fields' dofs reordered node by
    node, so that each vertex carries a point block of all 2N fields, then one V-cycle
    of GAMG with that block size (options prefix ``amg_``, defaults below)."""

    DEFAULTS = {"ksp_type": "preonly", "pc_type": "gamg", "pc_gamg_agg_nsmooths": 0,
                "mg_levels_ksp_type": "gmres", "mg_levels_ksp_max_it": 3,
                "mg_levels_pc_type": "pbjacobi"}
    #: Fields of the KKT system: 2N for the N = 4 steps of this script.
    fields = 8

    def setUp(self, pc):
        _, P = pc.getOperators()
        n, nf = P.getSize()[0], self.fields
        m = n // nf
        old = np.arange(n)
        if not hasattr(self, "ksp"):
            # field-major (f, j) -> node-major j*nf + f
            self.to_new = (old % m) * nf + old // m
            self.to_old = np.empty(n, dtype=np.int64)
            self.to_old[self.to_new] = old
            self.ksp = PETSc.KSP().create(comm=PETSc.COMM_SELF)
            self.ksp.setOptionsPrefix("amg_")
            opts = PETSc.Options()
            for k, v in self.DEFAULTS.items():
                opts.setValue("amg_" + k, v)
            self.ksp.setFromOptions()
            self.applications = []
        ai, aj, av = P.getValuesCSR()
        A = sp.csr_matrix((av, aj, ai), shape=(n, n))[self.to_old][:, self.to_old].tocsr()
        A.sort_indices()
        self.A = PETSc.Mat().createAIJ(size=(n, n), bsize=nf, comm=PETSc.COMM_SELF,
                                       csr=(A.indptr.astype(PETSc.IntType),
                                            A.indices.astype(PETSc.IntType), A.data))
        self.ksp.setOperators(self.A)
        self.ksp.setUp()
        self.x, self.y = self.A.createVecs()

    def apply(self, pc, x, y):
        self.x.setArray(x.getArray(readonly=True)[self.to_old])
        self.ksp.solve(self.x, self.y)
        y.setArray(self.y.getArray(readonly=True)[self.to_new])


def monolithic_amg(n: int) -> list:
    """Cold and warm step with MUMPS and with :class:`InterlacedAMGPC` (FGMRES 1e-6)."""
    _, _, energy, rho0 = bump_case(n)
    rows = []
    for name, sp_params in (("MUMPS", None), ("AMG", params("InterlacedAMGPC"))):
        step = JKOStep(energy, 0.05, 4, solver_parameters=sp_params,
                       options_prefix=f"lkc_amg_{name}_{n}_")
        outer = count_outer(step) if sp_params else []
        step.solve(rho0)                            # compiles the kernels
        for stage in ("cold", "warm"):
            outer.clear()
            c0 = time.process_time()
            if stage == "cold":
                res = first = step.solve(rho0, warm_start=False)
            else:
                res = step.solve(log_rho_k=first.log_rho)
            rows.append({"n": n, "solver": name, "stage": stage, "its": res.snes_iterations,
                         "outer": list(outer), "cpu": time.process_time() - c0,
                         "unknowns": step.W.dim()})
            PETSc.Sys.Print(f"{n} {name} {stage}: Newton {res.snes_iterations}, outer "
                            f"{rows[-1]['outer']}, {rows[-1]['cpu']:.1f} s")
    return rows


def count_outer(step) -> list:
    """A list that receives the outer Krylov iterations of every linear solve of
    ``step``, failed ones included (a KSP monitor: a new entry at iteration 0)."""
    counts = []

    def monitor(ksp, it, rnorm):
        if it == 0:
            counts.append(0)
        counts[-1] = it
    step.solver.snes.getKSP().setMonitor(monitor)
    return counts


def run(n: int) -> list:
    _, _, energy, rho0 = bump_case(n)
    rows = []
    direct = JKOStep(energy, 0.05, 4, options_prefix=f"lkc_direct_{n}_")
    first = direct.solve(rho0)
    warm = direct.solve(log_rho_k=first.log_rho)
    counts = {"cold": first.snes_iterations, "warm": warm.snes_iterations}
    for pc in ("TwoSweepPC", "SweepDiagnosticPC"):
        RECORD.clear()
        step = JKOStep(energy, 0.05, 4, options_prefix=f"lkc_{pc}_{n}_",
                       solver_parameters=params(pc))
        outer = count_outer(step)
        stages = {}
        for stage in ("cold", "warm"):
            start = len(RECORD)
            outer.clear()
            res = (step.solve(rho0) if stage == "cold"
                   else step.solve(log_rho_k=stages["cold"].log_rho))
            stages[stage] = res
            rows.append({"n": n, "pc": pc, "stage": stage, "its": res.snes_iterations,
                         "direct_its": counts[stage],
                         "outer": list(outer),
                         "cap": RECORD[start:]})
            PETSc.Sys.Print(f"{n} {pc} {stage}: Newton {res.snes_iterations} "
                            f"(direct {counts[stage]}), outer {rows[-1]['outer']}")
    return rows


def lagged_lu(n: int, lagged: bool, refactor_above: int = 10) -> dict:
    """Three chained steps (cold, warm, warm) with MUMPS refactored at every Newton
    step, or (``lagged``) GMRES around the last factorisation, refactored once GMRES
    needed more than ``refactor_above`` iterations (``snes_lag_preconditioner -2``:
    factor once, then the SNES monitor resets the PC when GMRES struggled)."""
    _, _, energy, rho0 = bump_case(n)
    params = None
    if lagged:
        params = preset("direct", snes_linesearch_type="basic", snes_rtol=1e-12,
                        ksp_type="gmres", ksp_rtol=1e-10, ksp_atol=0.0, ksp_max_it=30,
                        ksp_gmres_restart=30, ksp_converged_maxits=True,
                        snes_lag_preconditioner=-2, snes_lag_preconditioner_persists=True)
    step = JKOStep(energy, 0.05, 4, solver_parameters=params,
                   options_prefix=f"lkc_lag_{n}_{int(lagged)}_")
    snes = step.solver.snes
    gmres, refactors = [], [1]

    def monitor(snes, it, fnorm):
        if it > 0:
            gmres.append(snes.getKSP().getIterationNumber())
            if lagged and gmres[-1] > refactor_above:
                snes.getKSP().getPC().reset()       # refactor at the next Jacobian
                refactors[0] += 1
    snes.setMonitor(monitor)
    step.solve(rho0)                                # compiles the kernels
    gmres.clear()
    refactors[0] = 1
    c0 = time.process_time()
    res, newton = step.solve(rho0), []
    newton.append(res.snes_iterations)
    for _ in range(2):
        res = step.solve(log_rho_k=res.log_rho)
        newton.append(res.snes_iterations)
    return {"cpu": time.process_time() - c0, "newton": newton, "gmres": list(gmres),
            "refactors": refactors[0] if lagged else sum(newton)}


def main(quick: bool):
    if COMM_WORLD.size > 1:
        raise SystemExit("log_kkt_capacitance.py is serial (dense capacitance matrices)")
    set_log_level("WARNING")
    sizes = (12,) if quick else (16, 32)
    lines = ["# Sweeps for log-density unknowns: the terminal capacitance", "",
             "2D KL to N(0, I) on [-3, 3]^2 from a Gaussian bump, P1, N = 4, eta = 0.05, "
             "squares cut along one diagonal; a cold step, then the warm step from its "
             "result.  Every sweep block by LU; capacitance I - H A_NN formed densely. "
             "Outer: FGMRES iterations (relative 1e-6) per Newton step; 300 is a failed outer "
             "solve, after which two Newton steps are taken by MUMPS (shown as 1). "
             "cond: condition number of the capacitance per Newton step; |lambda| (Q): "
             "range of |eigenvalues| of the capacitance preconditioned by its model Q.", "",
             "| cells per side | preconditioner | step | Newton its (direct) | outer its per "
             "Newton step | cond (capacitance) | abs(lambda) range (Q model) |",
             "|---|---|---|---|---|---|---|"]
    names = {"TwoSweepPC": "two sweeps (A dropped)",
             "SweepDiagnosticPC": "four sweeps + exact capacitance (A in last slice)"}
    for n in sizes:
        for r in run(n):
            cond = ", ".join(f"{c['cond']:.1e}" for c in r["cap"]) or "-"
            lam = ", ".join(f"{c['lo']:.2g}-{c['hi']:.2g}" for c in r["cap"]) or "-"
            lines.append(f"| {n} | {names[r['pc']]} | {r['stage']} | {r['its']} "
                         f"({r['direct_its']}) | {', '.join(map(str, r['outer']))} | "
                         f"{cond} | {lam} |")
    n = 24 if quick else 48
    lines += ["", f"## Lagged LU, {n}^2 cells, three chained steps (cold, warm, warm)", "",
              "| LU | Newton its per step | GMRES its per Newton step | factorisations | "
              "CPU s |", "|---|---|---|---|---|"]
    for lagged in (False, True):
        r = lagged_lu(n, lagged)
        lines.append(f"| {'lagged (refactor above 10 GMRES its)' if lagged else 'fresh'} | "
                     f"{', '.join(map(str, r['newton']))} | "
                     f"{', '.join(map(str, r['gmres']))} | {r['refactors']} | "
                     f"{r['cpu']:.2f} |")
    lines += ["", "## Monolithic AMG (interlaced point blocks), cold and warm step", "",
              "| cells per side | unknowns | step | Newton its (MUMPS) | CPU s (MUMPS) | "
              "Newton its (AMG) | outer its per Newton step (AMG) | CPU s (AMG) |",
              "|---|---|---|---|---|---|---|---|"]
    for n in ((12, 24) if quick else (16, 32, 64, 128)):
        r = monolithic_amg(n)
        for direct, amg in zip(r[:2], r[2:]):
            lines.append(f"| {n} | {amg['unknowns']} | {amg['stage']} | {direct['its']} | "
                         f"{direct['cpu']:.2f} | {amg['its']} | "
                         f"{', '.join(map(str, amg['outer']))} | {amg['cpu']:.2f} |")
    PETSc.Sys.Print("\n".join(lines))
    write_table("log_kkt_capacitance", lines, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small mesh")
    args, _ = parser.parse_known_args()
    main(args.quick)
