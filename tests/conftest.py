"""Test configuration: quiet PETSc options checks, headless plotting, shared helpers."""
import os

os.environ.setdefault("FIREDRAKE_DISABLE_OPTIONS_LEFT", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def rates(errors, factor=2.0):
    """Observed convergence orders between successive refinements."""
    e = np.asarray(errors, dtype=float)
    return np.log(e[:-1] / e[1:]) / np.log(factor)


@pytest.fixture
def convergence_rates():
    return rates


def pytest_sessionfinish(session, exitstatus):
    """Destroy PETSc objects collectively before the interpreter exits.

    PETSc defers the destruction of parallel objects to a collective "garbage
    cleanup"; if the ranks reach ``PetscFinalize`` with different garbage, one rank
    waits in that cleanup's allreduce while the other is already in
    ``MPI_Finalize``: a hang at exit (observed under ``mpiexec -n 2`` with a cold
    kernel cache).  Collecting and cleaning up here, where every rank is, avoids it.
    """
    import gc

    from firedrake import COMM_WORLD
    from firedrake.petsc import PETSc
    gc.collect()
    PETSc.garbage_cleanup(COMM_WORLD)
