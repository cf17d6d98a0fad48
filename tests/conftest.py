"""Test configuration: quiet PETSc options checks, headless plotting, shared helpers."""
import os

os.environ.setdefault("FIREDRAKE_DISABLE_OPTIONS_LEFT", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import logging  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jkoflow.solvers import logger as jkoflow_logger  # noqa: E402


def rates(errors, factor=2.0):
    """Observed convergence orders between successive refinements."""
    e = np.asarray(errors, dtype=float)
    return np.log(e[:-1] / e[1:]) / np.log(factor)


@pytest.fixture
def convergence_rates():
    return rates


class Records(logging.Handler):
    """Collect the ``jkoflow`` logger's records (``with Records() as rec:``; the
    logger does not propagate, so pytest's ``caplog`` does not see them)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        jkoflow_logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        jkoflow_logger.removeHandler(self)

    def messages(self, level=logging.WARNING):
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``mpiexec`` a test that fails on some ranks only leaves the others
    waiting in a collective forever: print the failure and abort the whole job
    instead of hanging (every rank's report is printed before the abort)."""
    outcome = yield
    report = outcome.get_result()
    if call.when == "call" and report.failed:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        if comm.size > 1:
            import sys
            sys.stderr.write(f"\n[rank {comm.rank}] {item.nodeid} FAILED:\n"
                             f"{report.longreprtext}\n")
            sys.stderr.flush()
            comm.Abort(1)
