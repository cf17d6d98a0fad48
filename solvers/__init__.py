"""jkoflow solvers: energies, the Wasserstein gradient flow, the JKO step and the JKO-Flow."""
from .common import SolverDivergedError  # noqa: F401
from .energies import *  # noqa: F401,F403
from .presets import PRESETS, preset  # noqa: F401
from .timestepping import *  # noqa: F401,F403
from .wgf import *  # noqa: F401,F403
from .benamou_brenier import BenamouBrenier, TransportResult  # noqa: F401
from .jko import JKOStep, W2Geodesic, wasserstein_distance  # noqa: F401
from .jko_scheme import JKOScheme, load_checkpoint  # noqa: F401
from .jkoflow import *  # noqa: F401,F403
