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
