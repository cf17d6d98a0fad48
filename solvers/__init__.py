"""jkoflow solvers: energies, the Wasserstein gradient flow, the JKO step and the JKO-Flow."""
from .common import SolverDivergedError  # noqa: F401
from .energies import *  # noqa: F401,F403
from .presets import PRESETS, preset  # noqa: F401
