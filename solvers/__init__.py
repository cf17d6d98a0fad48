"""jkoflow solvers: energies, the Wasserstein gradient flow, the JKO step and the JKO-Flow.

The evolution solvers (:class:`JKOScheme`, :class:`WassersteinGradientFlow`,
:class:`JKOFlow`) share one time-stepping protocol (:mod:`~jkoflow.solvers.protocol`):
observers ``obs(solver)``, :class:`Checkpointer` and :func:`restart`, progress and
warnings through the ``jkoflow`` logger (:func:`set_log_level`), and one options rule
(:func:`resolve_parameters`).
"""
from .common import SolverDivergedError, log_handler, logger, set_log_level  # noqa: F401
from .energies import *  # noqa: F401,F403
from .presets import PRESETS, preset, resolve_parameters  # noqa: F401
from .protocol import Stepper  # noqa: F401
from .checkpointing import (CheckpointError, Checkpointer, Snapshot, read_checkpoint,  # noqa: F401
                            restart)
from .timestepping import *  # noqa: F401,F403
from .density_flow import DensityFlow  # noqa: F401
from .wgf import *  # noqa: F401,F403
from .benamou_brenier import BenamouBrenier, TransportResult  # noqa: F401
from .jko import CORRECTIONS, JKOStep, W2Geodesic, wasserstein_distance  # noqa: F401
from .predictor import LogIncrementPredictor  # noqa: F401
from .representation import choose_variable, predicted_log_change  # noqa: F401
from .jko_scheme import JKOScheme, load_checkpoint  # noqa: F401
from .exact import (barenblatt, barenblatt_constants, barenblatt_jko_time,  # noqa: F401
                    gaussian_jko_step)
from .jkoflow import *  # noqa: F401,F403
