"""The time-stepping protocol shared by the JKO scheme, the WGF and the JKO-Flow.

* one observer signature and one set of VTK field names for all three;
* one checkpoint format and one restart entry point: restart exact to round-off for
  every solver (serial and 2 ranks), checkpoints recording representation, energy,
  space and step parameters, mismatched restarts and overwrites refused, truncated or
  foreign files reported with file name and cause, densities (never the bare log
  state) returned;
* one options rule (preset name or full dict, plus an extra dict), options prefixes
  and command-line options reaching every solver, eta a Constant in the JKO-Flow;
* one quadrature policy (geometry default, solver override) for the JKO step and the
  flows, and JKO -> WGF at first order on a torus with a non-polynomial potential;
* the ``jkoflow`` logger: retries and continuation as warnings, progress reports,
  bad potentials rejected.
"""
import logging
import math
import os

import numpy as np
import pytest
import ufl
from firedrake import (COMM_SELF, COMM_WORLD, CheckpointFile, Constant, Function,
                       FunctionSpace, TestFunctions, assemble, split)
from firedrake.petsc import PETSc
from irksome import Dt

from conftest import Records, rates
from jkoflow.meshes import Geometry, interval, torus
from jkoflow.solvers import (CheckpointError, Checkpointer, JKOFlow, JKOScheme, JKOStep,
                             TimeSeries, W2Geodesic, WassersteinGradientFlow, common, kl,
                             porous_medium, preset, read_checkpoint, resolve_parameters,
                             restart, set_log_level)

A, M0, S0 = 1.0, 0.5, 1.0
BOX = (-4.0, 4.5)
SOLVERS = ("jko", "wgf", "jkoflow")


def gaussian(x):
    return ufl.exp(-(x - M0) ** 2 / (2 * S0)) / math.sqrt(2 * math.pi * S0)


def make(kind, geom, rho0, **kw):
    """A small solver of each kind for KL to N(0, 1) (log representation), dt = eta = 0.1."""
    energy = kl(geom, A * geom.x[0] ** 2 / 2)
    if kind == "jko":
        return JKOScheme(energy, rho0, 0.1, kw.pop("N", 2), degree=1, **kw)
    if kind == "wgf":
        return WassersteinGradientFlow(energy, rho0, 0.1, stages=2, **kw)
    return JKOFlow(energy, rho0, kw.pop("eta", 0.1), 0.1, stages=2, **kw)


def start(kind, comm=COMM_WORLD, n=24):
    geom = interval(n, *BOX, comm=comm)
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate(gaussian(geom.x[0]))
    return geom, rho0


def summary(solver):
    """Mass, energy, mean and second moment (mesh-numbering independent)."""
    x, r, dx = solver.geometry.x[0], solver.rho_expr, solver.geometry.dx(degree=4)
    return np.array([solver.mass(), solver.energy_value(), float(assemble(x * r * dx)),
                     float(assemble(x * x * r * dx))])


# ------------------------------------------------- observers and output names
@pytest.mark.parametrize("kind", SOLVERS)
def test_one_observer_signature_and_field_names(kind, tmp_path):
    geom, rho0 = start(kind)
    solver = make(kind, geom, rho0)
    seen = []
    solver.add_observer(lambda s: seen.append((s.step_number, s.t)))
    series = solver.add_observer(TimeSeries())
    assert solver.advance_to(0.2) == 0.2 and solver.t == 0.2
    assert seen == [(0, 0.0), (1, 0.1), (2, 0.2)] or np.allclose(
        np.array(seen), [(0, 0), (1, 0.1), (2, 0.2)], atol=1e-14), seen
    assert len(series) == 3
    assert np.allclose(series["mass"], series["mass"][0], rtol=1e-11)
    assert np.all(np.diff(series["energy"]) < 0)
    names = [f.name() for f in solver.output_functions()]
    extra = {"jko": "transport_potential", "wgf": None, "jkoflow": "chemical_potential"}[kind]
    assert names == ["density", "log_density"] + ([extra] if extra else []), names
    assert solver.variable == "log" and solver.rho.name() == "density"
    assert solver.solver_stats()[0] == 2


# ------------------------------------------------------ checkpoint / restart
def run_and_restart(kind, tmp_path, comm=COMM_WORLD):
    """Uninterrupted 4 steps against 2 steps + restart + 2 steps (resuming the file)."""
    path = comm.bcast(str(tmp_path / f"{kind}.h5") if comm.rank == 0 else None)
    geom, rho0 = start(kind, comm)
    straight = make(kind, geom, rho0)
    straight.advance_to(0.4)
    first = make(kind, geom, rho0)
    first.add_observer(Checkpointer(path))
    first.advance_to(0.2)
    del first

    def build(mesh, rho):
        return make(kind, Geometry(mesh, name="restart"), rho)

    resumed = restart(path, build, comm=comm)
    assert resumed.step_number == 2 and abs(resumed.t - 0.2) < 1e-15
    resumed.add_observer(Checkpointer(path, mode="resume"))
    resumed.advance_to(0.4)
    snap = read_checkpoint(path, comm=comm)
    assert snap.step == 4 and abs(snap.t - 0.4) < 1e-14
    a, b = summary(straight), summary(resumed)
    return np.max(np.abs(a - b) / np.abs(a))


@pytest.mark.parametrize("kind", SOLVERS)
def test_restart_is_exact(kind, tmp_path):
    diff = run_and_restart(kind, tmp_path)
    PETSc.Sys.Print(f"{kind}: restart vs uninterrupted, max relative difference {diff:.2e}")
    assert diff < 1e-12, diff


@pytest.mark.parallel(nprocs=2)
def test_restart_is_exact_parallel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("restart")
    for kind in SOLVERS:
        diff = run_and_restart(kind, tmp)
        PETSc.Sys.Print(f"{kind} (2 ranks): restart vs uninterrupted, max relative "
                        f"difference {diff:.2e}")
        assert diff < 1e-12, (kind, diff)


def test_checkpoint_records_and_returns_densities(tmp_path):
    """The record names the representation; read_checkpoint returns the density (not the
    log-density the solver stores), with the solver's mass."""
    geom, rho0 = start("wgf")
    flow = make("wgf", geom, rho0)
    path = str(tmp_path / "wgf.h5")
    flow.add_observer(Checkpointer(path))
    flow.step()
    snap = read_checkpoint(path)
    meta = snap.metadata
    assert meta["representation"] == "log" and meta["solver"] == "WassersteinGradientFlow"
    assert meta["energy"] == "kl" and meta["space"] == "P1" and meta["form"] == "log"
    assert meta["dt"] == 0.1 and meta["stages"] == 2
    assert snap.step == 1 and abs(snap.t - 0.1) < 1e-15
    assert snap.rho.name() == "density" and snap.log_rho is not None
    m = snap.rho.function_space().mesh()
    # the nodal density of e^l on coarse P1: within interpolation error of the mass
    assert abs(Geometry(m).integrate(snap.rho) / flow.mass() - 1) < 3e-2
    assert abs(snap.info["mass"] - flow.mass()) < 1e-14
    assert float(snap.rho.dat.data_ro.min()) > 0
    assert np.allclose(snap.rho.dat.data_ro, np.exp(snap.log_rho.dat.data_ro), rtol=1e-14)


def test_restart_refuses_mismatch(tmp_path):
    geom, rho0 = start("jko")
    path = str(tmp_path / "jko.h5")
    scheme = make("jko", geom, rho0, checkpoint=path, variable="log")
    scheme.step()

    def build(**kw):
        def b(mesh, rho):
            g = Geometry(mesh)
            V = kw.get("V", lambda x: A * x[0] ** 2 / 2)(g.x)
            if "solver" in kw:
                return kw["solver"](kl(g, V), rho)
            return JKOScheme(kl(g, V), rho, kw.get("eta", 0.1), kw.get("N", 2), degree=1,
                             variable=kw.get("variable", "log"))
        return b

    with pytest.raises(CheckpointError, match="N: checkpoint 2, solver 3"):
        restart(path, build(N=3))
    with pytest.raises(CheckpointError, match="eta: checkpoint 0.1, solver 0.2"):
        restart(path, build(eta=0.2))
    with pytest.raises(CheckpointError, match="representation: checkpoint 'log', solver 'density'"):
        restart(path, build(variable="density"))
    # a scheme that chooses its unknowns continues a fixed-unknowns file in its unknowns
    # (as files written before per-snapshot records), but cannot append to it
    resumed = restart(path, build(variable=None))
    assert resumed.variable == "log" and resumed.chooses_variable
    with pytest.raises(CheckpointError, match="variable='log' to continue this file"):
        resumed.add_observer(Checkpointer(path, mode="resume"))
    with pytest.raises(CheckpointError, match="solver: checkpoint 'JKOScheme'"):
        restart(path, build(solver=lambda e, r: WassersteinGradientFlow(e, r, 0.1)))
    # another potential: the recorded energy at the restored state differs
    with pytest.raises(CheckpointError, match="energy is .* recorded"):
        restart(path, build(V=lambda x: A * x[0] ** 2))
    # but a different eta may be allowed explicitly
    s = restart(path, build(eta=0.2), ignore=("eta",))
    assert s.eta == 0.2 and s.step_number == 1


def test_checkpoints_are_never_overwritten_silently(tmp_path):
    geom, rho0 = start("wgf")
    path = str(tmp_path / "run.h5")
    flow = make("wgf", geom, rho0)
    flow.add_observer(Checkpointer(path))
    flow.advance_to(0.2)
    size = os.path.getsize(path)
    with pytest.raises(CheckpointError, match="already exists: refusing to overwrite"):
        make("wgf", geom, rho0).add_observer(Checkpointer(path))
    with pytest.raises(CheckpointError, match="already exists"):
        make("jko", geom, rho0, checkpoint=path)
    assert os.path.getsize(path) == size
    # resuming a run from an earlier step would rewrite its history
    resumed = restart(path, lambda m, r: make("wgf", Geometry(m), r), step=1)
    resumed.add_observer(Checkpointer(path, mode="resume"))
    with pytest.raises(CheckpointError, match="already holds step 2"):
        resumed.step()
    # resuming with another solver, or a missing file, is refused
    with pytest.raises(CheckpointError, match="different run"):
        make("jkoflow", resumed.geometry, resumed.rho).add_observer(
            Checkpointer(path, mode="resume"))
    with pytest.raises(CheckpointError, match="fields: checkpoint 1, solver 2"):
        restart(path, lambda m, r: make("jkoflow", Geometry(m), r),
                ignore=("solver", "form", "eta", "state"))
    with pytest.raises(CheckpointError, match="does not exist"):
        make("wgf", geom, rho0).add_observer(Checkpointer(str(tmp_path / "no.h5"),
                                                          mode="resume"))
    # overwrite is explicit
    make("wgf", geom, rho0).add_observer(Checkpointer(path, mode="overwrite"))
    assert read_checkpoint(path).step == 0


def test_corrupt_checkpoints_give_clear_errors(tmp_path):
    geom, rho0 = start("wgf")
    path = str(tmp_path / "good.h5")
    flow = make("wgf", geom, rho0)
    flow.add_observer(Checkpointer(path))
    flow.step()
    data = open(path, "rb").read()
    cases = {"truncated.h5": (data[:len(data) // 2], "truncated or corrupt"),
             "empty.h5": (b"", "empty"),
             "garbage.h5": (b"not a checkpoint at all" * 10, "not an HDF5 file")}
    for name, (content, msg) in cases.items():
        bad = str(tmp_path / name)
        with open(bad, "wb") as fh:
            fh.write(content)
        with pytest.raises(CheckpointError, match=msg) as info:
            restart(bad, lambda m, r: None)
        assert bad in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(str(tmp_path / "missing.h5"))
    foreign = str(tmp_path / "foreign.h5")
    with CheckpointFile(foreign, "w") as f:
        f.save_mesh(geom.mesh)
    with pytest.raises(CheckpointError, match="not a jkoflow checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no step 7"):
        read_checkpoint(path, step=7)


def test_old_entry_points_are_gone_or_deprecated(tmp_path):
    from jkoflow.solvers import load_checkpoint, load_checkpoint_mesh
    with pytest.raises(NotImplementedError, match="restart"):
        load_checkpoint("any.h5")
    geom, rho0 = start("wgf")
    path = str(tmp_path / "w.h5")
    flow = make("wgf", geom, rho0)
    flow.add_observer(Checkpointer(path))
    flow.step()
    with pytest.warns(DeprecationWarning):
        mesh = load_checkpoint_mesh(path)
    other = make("wgf", Geometry(mesh), Function(FunctionSpace(mesh, "CG", 1)).assign(0.1))
    with pytest.warns(DeprecationWarning):
        assert abs(other.load_checkpoint(path) - 0.1) < 1e-15
    assert abs(other.mass() / flow.mass() - 1) < 1e-12
    bad = make("jkoflow", Geometry(mesh), Function(FunctionSpace(mesh, "CG", 1)).assign(0.1))
    with pytest.warns(DeprecationWarning), pytest.raises(CheckpointError, match="solver"):
        bad.load_checkpoint(path)


# ------------------------------------------------------------------ options
def test_resolve_parameters_rule():
    assert resolve_parameters(None, None, "direct") == preset("direct")
    d = {"snes_type": "ksponly"}
    p = resolve_parameters(d, {"snes_monitor": None})
    assert p == {"snes_type": "ksponly", "snes_monitor": None} and d == {"snes_type": "ksponly"}
    p = resolve_parameters("iterative", {"pc_type": "ilu"}, tune=lambda q: {**q, "x": 1})
    assert p["pc_type"] == "ilu" and p["x"] == 1 and p["ksp_type"] == "gmres"
    assert "x" not in resolve_parameters({"a": 1}, tune=lambda q: {**q, "x": 1})
    with pytest.raises(ValueError, match="valid"):
        resolve_parameters("fastest")
    with pytest.raises(TypeError, match="preset name"):
        resolve_parameters(3)
    with pytest.raises(TypeError, match="extra"):
        resolve_parameters(None, [("snes_max_it", 1)])


def test_options_rule_in_the_flows():
    """A name is tuned to the formulation, a dict replaces the defaults, the extra dict
    updates; every solver builds with a named preset."""
    geom, rho0 = start("wgf")
    e = kl(geom, A * geom.x[0] ** 2 / 2)
    tuned = WassersteinGradientFlow(e, rho0, 0.1, solver_parameters="iterative", stages=1)
    assert tuned.solver_parameters["snes_linesearch_type"] == "basic"
    assert tuned.solver_parameters["pc_type"] == "gamg"
    assert tuned.solver.snes.getTolerances()[:2] == (1e-12, 1e-11)
    full = {"mat_type": "aij", "snes_type": "newtonls", "ksp_type": "preonly",
            "pc_type": "lu"}
    plain = WassersteinGradientFlow(e, rho0, 0.1, solver_parameters=full, stages=1,
                                    solver_parameters_extra={"snes_max_it": 13})
    assert plain.solver_parameters == {**full, "snes_max_it": 13}
    assert plain.solver.snes.getTolerances()[0] == 1e-8   # PETSc's default: replaced
    assert plain.solver.snes.getTolerances()[3] == 13
    flow = JKOFlow(e, rho0, 0.1, 0.1, stages=1, solver_parameters_extra={"snes_max_it": 11})
    assert flow.solver.snes.getTolerances()[3] == 11 and flow.solver_parameters["snes_atol"] == 1e-11
    step = JKOStep(e, 0.1, 2, solver_parameters="direct",
                   solver_parameters_extra={"snes_max_it": 9})
    assert step.solver.snes.getTolerances()[3] == 9


def test_prefixes_and_command_line_options_reach_every_solver():
    geom, rho0 = start("wgf")
    e = kl(geom, A * geom.x[0] ** 2 / 2)
    opts = PETSc.Options()
    builders = {
        "wgf": lambda: WassersteinGradientFlow(e, rho0, 0.1, stages=1).solver,
        "jkoflow": lambda: JKOFlow(e, rho0, 0.1, 0.1, stages=1).solver,
        "jko": lambda: JKOStep(e, 0.1, 2).solver,
        "geodesic": lambda: W2Geodesic(geom, 2).solver,
        "scheme_jko": lambda: JKOScheme(e, rho0, 0.1, 2, options_prefix="scheme_jko").jko.solver,
        "my_wgf": lambda: WassersteinGradientFlow(e, rho0, 0.1, stages=1,
                                                  options_prefix="my_wgf").solver,
    }
    for k, (prefix, build) in enumerate(builders.items()):
        opts[f"{prefix}_snes_max_it"] = 31 + k
        opts[f"{prefix}_ksp_type"] = "preonly"
        try:
            solver = build()
            assert solver.snes.getOptionsPrefix() == f"{prefix}_"
            assert solver.snes.getTolerances()[3] == 31 + k, prefix   # the command line wins
        finally:
            opts.delValue(f"{prefix}_snes_max_it")
            opts.delValue(f"{prefix}_ksp_type")


def test_eta_is_a_constant_in_the_jkoflow():
    """Flows with different eta have the same form signature (so share their kernels)."""
    geom, rho0 = start("jkoflow")
    flows = [make("jkoflow", geom, rho0, eta=eta) for eta in (0.1, 0.2)]
    sigs = []
    for flow in flows:
        assert isinstance(flow.eta_constant, Constant)
        u, mu = split(flow.u)
        q, v = TestFunctions(flow.W)
        sigs.append(flow.residual(u, mu, q, v, Dt).signature())
    assert sigs[0] == sigs[1]
    assert flows[1].eta == 0.2


# -------------------------------------------------------------- quadrature
def test_one_quadrature_policy():
    geom = torus(6, 3, degree=1, quadrature_degree=5)
    assert geom.quadrature_degree_for(1) == 5 and geom.quadrature_degree_for(1, 3) == 3
    plain = interval(4)
    assert plain.quadrature_degree_for(2) == 6 and plain.quadrature_degree_for(1, 7) == 7
    with pytest.raises(ValueError, match="quadrature_degree"):
        plain.quadrature_degree_for(1, 0)
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).assign(1.0)
    e = kl(geom, ufl.exp(geom.x[0]))
    wgf = WassersteinGradientFlow(e, rho0, 0.1, stages=1)
    step = JKOStep(e, 0.1, 2)
    flow = JKOFlow(e, rho0, 0.1, 0.1, stages=1, quadrature_degree=4)
    assert wgf.quadrature_degree == 5 and flow.quadrature_degree == 4
    assert step.dx.measure.metadata()["quadrature_degree"] == 5
    # every integral of the JKO step's and the WGF's residuals has that degree
    for form in (*step.solver.rows, wgf.stepper.F if hasattr(wgf.stepper, "F") else None):
        if form is not None:
            degs = {itg.metadata().get("quadrature_degree") for itg in form.integrals()}
            assert degs <= {5}, degs


def torus_flows(n_major, T):
    """KL with a non-polynomial potential on a coarse P1 torus: the WGF in both
    semi-discretisations (flux form: WassersteinGradientFlow; chemical-potential form:
    JKOFlow with eta = 0) at time T, and what the JKO scheme needs."""
    geom = torus(n_major, n_major // 2, degree=1)
    x = geom.x
    energy = kl(geom, ufl.exp(0.5 * x[0]) + ufl.sin(2 * x[1]))
    space = FunctionSpace(geom.mesh, "CG", 1)
    rho0 = geom.normalise(Function(space).interpolate(1 + 0.5 * x[2] + 0.3 * x[0]))
    wgf = WassersteinGradientFlow(energy, rho0, T / 16)
    wgf.advance_to(T)
    mixed = JKOFlow(energy, rho0, 0.0, T / 16)
    mixed.advance_to(T)

    def dist(a, b):
        return math.sqrt(float(assemble((a - b) ** 2 * wgf.dx)))
    return energy, rho0, wgf, mixed, dist


def test_jko_to_wgf_first_order_on_torus():
    r"""KL with V = exp(x1/2) + sin(2 x2) on a coarse P1 torus, T = 0.2: the JKO iterates
    converge to the WGF at first order in eta, with no floor: the JKO step, the WGF and
    the JKO-Flow integrate J by the same rule.  The JKO step's limit is the WGF with the
    chemical potential mu = Pi_h(delta J/delta rho) (JKOFlow, eta = 0); the flux-form WGF
    differs from it by an eta-independent spatial offset that is O(h^2)."""
    T = 0.2
    energy, rho0, wgf, mixed, dist = torus_flows(12, T)
    errs = []
    for n in (2, 4, 8):
        scheme = JKOScheme(energy, rho0, T / n, 2)
        scheme.advance_to(T)
        errs.append(dist(scheme.rho_expr, mixed.rho_expr))
    r = rates(errs)
    offset = dist(wgf.rho_expr, mixed.rho_expr)
    offset_fine = (lambda f: f[4](f[2].rho_expr, f[3].rho_expr))(torus_flows(24, T))
    PETSc.Sys.Print(f"torus |JKO - WGF|: {errs}, rates {r}; flux-form offset "
                    f"{offset:.3e} -> {offset_fine:.3e} under h -> h/2")
    assert np.all(np.abs(r - 1) < 0.15), (errs, r)
    assert math.log2(offset / offset_fine) > 1.5, (offset, offset_fine)


# ------------------------------------------------------- logging, diagnostics
def test_retries_and_progress_are_logged(monkeypatch):
    geom = interval(20, -6.0, 7.0)
    x = geom.x[0]
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate(
        ufl.exp(-(x - 2.0) ** 2 / (2 * 0.5)))
    with Records() as rec:
        flow = WassersteinGradientFlow(kl(geom, x ** 2 / 2), rho0, 1.0, stages=1,
                                       solver_parameters_extra={"snes_max_it": 3,
                                                                "snes_rtol": 1e-8})
        flow.advance_to(1.0)
    assert flow.num_retries >= 1
    warnings = rec.messages()
    assert len(warnings) == flow.num_retries and "retrying with dt" in warnings[0], warnings
    monkeypatch.setattr(common, "PROGRESS_INTERVAL", 0.0)
    with Records() as rec:
        flow.advance_to(1.5)
    infos = rec.messages(logging.INFO)
    assert any("of 1.5" in m for m in infos) and "done" in infos[-1], infos
    set_log_level("WARNING")
    try:
        with Records() as rec:
            flow.advance_to(2.0)
        assert not [r for r in rec.records if r.levelno < logging.WARNING]
    finally:
        set_log_level("INFO")
    with pytest.raises(ValueError, match="log level"):
        set_log_level("LOUD")


def test_continuation_is_logged():
    geom = interval(40, -3.0, 3.0)
    x = geom.x[0]
    rho0 = Function(FunctionSpace(geom.mesh, "CG", 1)).interpolate(ufl.exp(-x ** 2 / 0.5))
    params = preset("direct", snes_max_it=4, snes_linesearch_type="l2")
    with Records() as rec:
        scheme = JKOScheme(kl(geom, x ** 2 / 2), rho0, 0.5, 2, solver_parameters=params)
        scheme.step()
    assert scheme.jko.continuation_path
    assert any("continuation" in m for m in rec.messages()), rec.messages()


def test_bad_potentials_are_rejected():
    geom = interval(8, 0.0, 1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        kl(geom, ufl.ln(geom.x[0]))
    other = interval(8, 0.0, 1.0)
    with pytest.raises(ValueError, match="different mesh"):
        kl(geom, other.x[0])
    f = Function(FunctionSpace(other.mesh, "CG", 1)).assign(1.0)
    with pytest.raises(ValueError, match="different mesh"):
        porous_medium(geom, 2.0, V=f)
    with pytest.raises(ValueError, match="scalar"):
        kl(geom, ufl.as_vector([geom.x[0], 1.0]))
    kl(geom, 1 + geom.x[0] ** 2)     # a good one passes


@pytest.mark.parallel(nprocs=2)
def test_parallel_checkpoint_errors(tmp_path_factory):
    """Every rank raises the same clear error for a corrupt file (no hang)."""
    comm = COMM_WORLD
    tmp = comm.bcast(str(tmp_path_factory.mktemp("bad")) if comm.rank == 0 else None)
    bad = os.path.join(tmp, "bad.h5")
    if comm.rank == 0:
        with open(bad, "wb") as fh:
            fh.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    comm.barrier()
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(bad)
    assert COMM_SELF.size == 1
