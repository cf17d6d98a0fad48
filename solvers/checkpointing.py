r"""One checkpoint format and one restart entry point for every evolution solver.

A checkpoint is a Firedrake ``CheckpointFile`` (HDF5) holding

* the mesh (once),
* the solver's exact state (``solver.state``: log-density or density, plus the
  chemical potential for the JKO-Flow) at every checkpointed step, indexed by the
  step number, with ``time``, ``dt`` (:math:`\eta` for the JKO scheme), ``step``,
  ``energy``, ``mass``, the conserved ``reference_mass`` and ``log_state`` (1 for a
  log-density, 0 for a density) of that step,
* a JSON record (root attribute ``jkoflow_metadata``) of what a restart must match:
  format version, solver class, **representation** (``"log"``/``"density"``, or
  ``"auto"`` for a JKO scheme that chooses its unknowns; each snapshot then records
  its own in ``log_state``), the name
  of the state, the energy (name, kind; its value is checked numerically on
  restart), the space, and the solver's parameters (``N``, ``degree``, ``eta``,
  ``dt``, form, method, quadrature degree, ...).

Write with the observer :class:`Checkpointer` (``mode="new"`` refuses an existing
file, ``"overwrite"`` replaces it, ``"resume"`` continues it after a restart), and
restart with :func:`restart`, which rebuilds the solver through a user callback on
the checkpoint's mesh, checks it against the record, restores the exact state and
returns the solver.  :func:`read_checkpoint` reads a snapshot as *densities* (for
post-processing); no function here returns the bare internal state.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import ufl
from firedrake import COMM_WORLD, CheckpointFile, Function
from firedrake.petsc import PETSc

from .common import check_int, logger, nodal_exp
from .representation import recorded_variable

__all__ = ["Checkpointer", "restart", "read_checkpoint", "Snapshot", "CheckpointError",
           "CHECKPOINT_VERSION"]

#: Version of the checkpoint layout written by :class:`Checkpointer`.
CHECKPOINT_VERSION = 1
_FORMAT = "jkoflow-checkpoint"
_META = "jkoflow_metadata"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MODES = ("new", "overwrite", "resume")


class CheckpointError(ValueError):
    """A checkpoint cannot be written, read or restarted from (the message says why)."""


# --------------------------------------------------------------- file checks
def _exists(path: str, comm) -> bool:
    return bool(comm.bcast(os.path.exists(path) if comm.rank == 0 else None, root=0))


def _check_readable(path: str, comm):
    """Raise :class:`CheckpointError` naming the file and the cause unless ``path`` is an
    existing, complete-looking HDF5 file (checked on rank 0, verdict shared)."""
    error = None
    if comm.rank == 0:
        if not os.path.exists(path):
            error = "the file does not exist"
        else:
            size = os.path.getsize(path)
            with open(path, "rb") as fh:
                head = fh.read(8)
            if size == 0:
                error = "the file is empty"
            elif head != _HDF5_SIGNATURE:
                error = f"not an HDF5 file ({size} bytes, no HDF5 signature): corrupt"
            else:
                # open it once serially: HDF5 failing inside PETSc's viewer would leave
                # an undestroyable viewer behind and a raw H5Fopen error
                import h5py
                try:
                    with h5py.File(path, "r") as h5:
                        h5.attrs.get(_META)
                except Exception as e:
                    error = (f"HDF5 cannot read it ({size} bytes): the file is truncated or "
                             f"corrupt (a run killed while writing?). Cause: {e}")
    error = comm.bcast(error, root=0)
    if error:
        raise CheckpointError(f"cannot read checkpoint {path!r}: {error}")


def _open(path: str, mode: str, comm) -> CheckpointFile:
    """Open a ``CheckpointFile``, turning HDF5/PETSc failures into a clear error."""
    try:
        return CheckpointFile(path, mode, comm=comm)
    except (PETSc.Error, OSError, RuntimeError, KeyError) as e:
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"cannot open checkpoint {path!r} (mode {mode!r}): HDF5 could not read it; the "
            f"file is probably truncated or corrupt (a run killed while writing?). "
            f"Cause: {cause}") from None


def _read_metadata(f: CheckpointFile, path: str) -> dict:
    # (ask first: a failed h5py attribute read leaves the file unclosable)
    if not f.has_attr("/", _META):
        raise CheckpointError(f"{path!r} is not a jkoflow checkpoint (no {_META!r} record): "
                              "written by another program or an older jkoflow")
    raw = f.get_attr("/", _META)
    meta = json.loads(raw if isinstance(raw, str) else bytes(raw).decode())
    if meta.get("format") != _FORMAT:
        raise CheckpointError(f"{path!r} is not a jkoflow checkpoint")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path!r} has layout version {meta.get('version')}, "
                              f"this jkoflow reads version {CHECKPOINT_VERSION}")
    return meta


def _history(f: CheckpointFile, mesh, name: str, path: str) -> dict:
    try:
        hist = f.get_timestepping_history(mesh, name)
    except Exception as e:  # h5py/PETSc errors of a damaged file
        raise CheckpointError(f"checkpoint {path!r}: cannot read the history of "
                              f"{name!r} ({type(e).__name__}: {e})") from None
    if not len(hist.get("index", ())):
        raise CheckpointError(f"checkpoint {path!r} holds no snapshot of {name!r}")
    return {k: np.asarray(v) for k, v in hist.items()}


def _metadata(solver) -> dict:
    meta = {"format": _FORMAT, "version": CHECKPOINT_VERSION,
            "state": solver.state.name(), "mesh": _mesh_of(solver.state).name}
    meta.update(solver.checkpoint_metadata())
    return json.loads(json.dumps(meta))  # normalise (tuples -> lists) for comparison


def _mesh_of(f: Function):
    # (for a mixed space the function space returns a mesh sequence)
    return ufl.domain.extract_unique_domain(f)


def _differences(recorded: dict, current: dict, ignore=()) -> list[str]:
    skip = {"format", "version", *ignore}
    keys = sorted((set(recorded) | set(current)) - skip)
    out = []
    for k in keys:
        a, b = recorded.get(k), current.get(k)
        if isinstance(a, float) and isinstance(b, float):
            same = math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
        else:
            same = a == b
        if not same:
            out.append(f"{k}: checkpoint {a!r}, solver {b!r}")
    return out


# ------------------------------------------------------------------ writing
class Checkpointer:
    """Observer saving the solver's exact state every ``every`` steps.

    Parameters
    ----------
    path
        The HDF5 file.
    every
        Save when the step number is a multiple of ``every`` (and at the start).
    mode
        ``"new"`` (default): refuse to touch an existing file; ``"overwrite"``: replace
        it; ``"resume"``: continue an existing checkpoint of the same run (its record
        must match the solver; steps already in it are never rewritten, except the one
        the solver was restarted from, which is skipped).

    Raises
    ------
    CheckpointError
        On the first call: the file exists (``"new"``), is missing or belongs to a
        different run (``"resume"``); later: a step already in the file would be
        rewritten.
    """

    def __init__(self, path: str, every: int = 1, mode: str = "new"):
        if mode not in _MODES:
            raise ValueError(f"unknown checkpoint mode {mode!r}; valid: {list(_MODES)}")
        self.path = os.fspath(path)
        self.every = check_int("every", every)
        self.mode = mode
        self._steps: dict[int, float] | None = None   # step -> time already in the file
        self._resumed_at = None

    def _start(self, solver, comm):
        exists = _exists(self.path, comm)
        meta = _metadata(solver)
        if self.mode == "resume":
            if not exists:
                raise CheckpointError(f"cannot resume checkpoint {self.path!r}: the file "
                                      "does not exist (use mode='new')")
            _check_readable(self.path, comm)
            with _open(self.path, "r", comm) as f:
                recorded = _read_metadata(f, self.path)
                hist = _history(f, _mesh_of(solver.state), recorded["state"], self.path)
                if meta.get("representation") == "auto" and "log_state" not in hist:
                    raise CheckpointError(
                        f"cannot resume checkpoint {self.path!r} with a JKO scheme that "
                        "chooses its unknowns: the file was written with fixed "
                        f"{recorded['representation']!r} unknowns and has no per-snapshot "
                        "record of them, which such a scheme needs (it may change them). "
                        f"Build the scheme with variable={recorded['representation']!r} to "
                        "continue this file, or write a new one")
                diff = _differences(recorded, meta)
                if diff:
                    raise CheckpointError(
                        f"cannot resume checkpoint {self.path!r} with this solver: it was "
                        "written by a different run:\n  " + "\n  ".join(diff))
            self._steps = {int(k): float(t) for k, t in zip(hist["index"], hist["time"])}
            self._resumed_at = solver.step_number
            return
        if exists and self.mode == "new":
            raise CheckpointError(
                f"checkpoint {self.path!r} already exists: refusing to overwrite it. Use "
                "Checkpointer(path, mode='resume') to continue it after restart(), "
                "mode='overwrite' to replace it, or another path")
        with _open(self.path, "w", comm) as f:
            f.save_mesh(_mesh_of(solver.state))
            f.set_attr("/", _META, json.dumps(meta))
        self._steps = {}

    def __call__(self, solver):
        k = solver.step_number
        if k % self.every:
            return
        comm = _mesh_of(solver.state).comm
        if self._steps is None:
            self._start(solver, comm)
        if k in self._steps:
            if k == self._resumed_at and math.isclose(self._steps[k], solver.t,
                                                      rel_tol=1e-12, abs_tol=1e-14):
                return   # the snapshot this run was restarted from
            raise CheckpointError(
                f"checkpoint {self.path!r} already holds step {k} (t = {self._steps[k]:g}); "
                f"this run is at t = {solver.t:g}: resuming from an earlier step would "
                "rewrite its history. Restart from the last step, or write to a new file")
        info = solver.snapshot_info()
        with _open(self.path, "a", comm) as f:
            f.save_function(solver.state, idx=k, timestepping_info=info)
        self._steps[k] = solver.t


# ------------------------------------------------------------------ reading
@dataclass
class Snapshot:
    """A checkpointed step, as densities.

    Attributes
    ----------
    mesh
        The mesh loaded from the file (build the geometry on it).
    rho
        The density (nodal values, named ``"density"``) on that mesh.
    log_rho
        The log-density for the log representation, else ``None``.
    representation
        The snapshot's state: ``"log"`` (a log-density) or ``"density"``.  A
        :class:`~jkoflow.solvers.JKOScheme` that chooses its unknowns (record
        ``"auto"``) may change from log to density unknowns along a run.
    t, step, dt
        Time, step number and step size (:math:`\\eta` for the JKO scheme).
    metadata
        The run's record (see the module notes).
    info
        All numbers stored with the snapshot (``energy``, ``mass``, ...).
    """

    mesh: object
    rho: Function
    log_rho: Function | None
    t: float
    step: int
    dt: float
    metadata: dict
    info: dict
    representation: str = "density"
    _state: Function = field(repr=False, default=None)


def read_checkpoint(path: str, step: int | None = None, comm=None, *,
                    mesh=None) -> Snapshot:
    """Read one snapshot of a checkpoint as densities.

    Parameters
    ----------
    path
        The checkpoint file.
    step
        The step number to read (default: the last one saved).
    comm
        Communicator (default ``COMM_WORLD``).
    mesh
        A mesh already loaded from this file (default: load it).

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupt, not a jkoflow checkpoint, or has no
        such step (the message names the file and the cause).
    """
    comm = comm or COMM_WORLD
    path = os.fspath(path)
    _check_readable(path, comm)
    with _open(path, "r", comm) as f:
        meta = _read_metadata(f, path)
        try:
            mesh = mesh or f.load_mesh(meta["mesh"])
        except Exception as e:
            raise CheckpointError(f"checkpoint {path!r}: cannot load its mesh "
                                  f"{meta['mesh']!r} ({type(e).__name__}: {e})") from None
        hist = _history(f, mesh, meta["state"], path)
        steps = [int(k) for k in hist["index"]]
        if step is None:
            step = steps[-1]
        if step not in steps:
            raise CheckpointError(f"checkpoint {path!r} has no step {step}; saved steps: "
                                  f"{steps}")
        pos = steps.index(step)
        info = {k: float(v[pos]) for k, v in hist.items() if k != "index"}
        try:
            state = f.load_function(mesh, meta["state"], idx=step)
        except Exception as e:
            raise CheckpointError(f"checkpoint {path!r}: cannot load step {step} "
                                  f"({type(e).__name__}: {e})") from None
    u = state.subfunctions[0] if len(state.function_space()) > 1 else state
    rho = Function(u.function_space(), name="density")
    log_rho = None
    # each snapshot records its representation (a run may change it); older files
    # record it once, for the run
    if "log_state" in info:
        representation = "log" if info["log_state"] > 0.5 else "density"
    else:
        representation = meta["representation"]
    if representation == "log":
        nodal_exp(u, rho)
        log_rho = Function(u.function_space(), name="log_density").assign(u)
    else:
        rho.assign(u)
    return Snapshot(mesh=mesh, rho=rho, log_rho=log_rho, t=info["time"], step=step,
                    dt=info["dt"], metadata=meta, info=info, representation=representation,
                    _state=state)


def restart(path: str, build, *, step: int | None = None, comm=None, ignore=(),
            energy_rtol: float = 1e-8):
    """Rebuild a solver from a checkpoint: the one restart entry point.

    Parameters
    ----------
    path
        The checkpoint written by a :class:`Checkpointer`.
    build
        ``build(mesh, rho0) -> solver``: construct the solver (any of
        :class:`~jkoflow.solvers.JKOScheme`,
        :class:`~jkoflow.solvers.WassersteinGradientFlow`,
        :class:`~jkoflow.solvers.JKOFlow`) on a geometry built on ``mesh`` (the
        checkpoint's), from the *density* ``rho0``, with the run's parameters.  A
        :class:`~jkoflow.solvers.JKOScheme` built without ``variable`` takes the
        restored snapshot's unknowns
        (:func:`~jkoflow.solvers.representation.recorded_variable`), not a fresh
        choice from the restored density.
    step
        Step number to restart from (default: the last saved).
    comm
        Communicator (default ``COMM_WORLD``).
    ignore
        Record entries allowed to differ (e.g. ``("dt",)`` to continue with another
        step size).
    energy_rtol
        Relative tolerance of the check that the rebuilt energy and mass at the
        restored state equal the recorded ones.

    Returns
    -------
    solver
        The solver at the checkpointed state (exactly, in its own representation),
        time, step number, step size and conserved mass; its density is
        ``solver.rho``.  Add ``Checkpointer(path, mode="resume")`` to keep writing.

    Raises
    ------
    CheckpointError
        For an unreadable checkpoint (naming file and cause), a solver that does not
        match the record (listing every difference: representation, energy, space,
        ``N``, ``eta``, ``dt``, ...), or an energy/mass at the restored state that
        differs from the recorded one (a different potential or energy parameters).
    """
    snap = read_checkpoint(path, step, comm)
    # a scheme that chooses its unknowns from the data continues in the recorded ones
    with recorded_variable(snap.representation):
        solver = build(snap.mesh, snap.rho)
    for attr in ("state", "checkpoint_metadata", "restore"):
        if not hasattr(solver, attr):
            raise TypeError(f"restart: build() must return a jkoflow evolution solver, got "
                            f"{type(solver).__name__}")
    current = _metadata(solver)
    if current.get("representation") == "auto" and "log_state" not in snap.info:
        # a run with fixed unknowns (no per-snapshot record): a scheme that chooses its
        # unknowns was built in the recorded ones (recorded_variable) and continues so
        current["representation"] = solver.variable
    diff = _differences(snap.metadata, current, ignore)
    if diff:
        raise CheckpointError(f"cannot restart from {path!r}: the rebuilt solver does not "
                              "match the checkpoint:\n  " + "\n  ".join(diff))
    solver.restore(snap._state, snap.info)
    for what, now in (("energy", solver.energy_value()), ("mass", solver.mass())):
        rec = snap.info[what]
        if not math.isclose(now, rec, rel_tol=energy_rtol, abs_tol=1e-12):
            raise CheckpointError(
                f"cannot restart from {path!r}: at the restored state the rebuilt solver's "
                f"{what} is {now:.15g}, the checkpoint recorded {rec:.15g} (a different "
                "energy, potential or parameters than the run that wrote it)")
    logger.info("%s restarted from %s at step %d, t = %.8g", type(solver).__name__, path,
                snap.step, snap.t)
    return solver
