r"""The 2D workload shared by the cost benchmarks: KL to :math:`N(0, I)` on
:math:`[-3, 3]^2` from a Gaussian bump centred at (0.5, 0), P1 on :math:`n\times n`
squares (cut along one diagonal unless ``diagonal`` says otherwise).

``direct_solver_growth``, ``variant_growth``, ``mpi_scaling``, ``log_kkt_capacitance``
and ``jko_step`` (crossed squares) time steps of this problem; the geodesic workloads
join the bump to its translates (:func:`bump` with a shift).
"""
import ufl
from firedrake import Function, FunctionSpace

from jkoflow.meshes import rectangle
from jkoflow.solvers import kl


def bump(geom, shift=(0.0, 0.0)):
    """The Gaussian bump translated by ``shift`` (a UFL expression)."""
    x, y = geom.x
    return ufl.exp(-((x - 0.5 - shift[0]) ** 2 + (y - shift[1]) ** 2) / 0.5)


def bump_case(n: int, diagonal: str = "left"):
    """``(geometry, P1 space, energy, rho_0)`` of the workload on ``n x n`` squares."""
    geom = rectangle(n, n, -3.0, 3.0, -3.0, 3.0, diagonal=diagonal)
    x, y = geom.x
    V = FunctionSpace(geom.mesh, "CG", 1)
    rho0 = Function(V).interpolate(bump(geom))
    return geom, V, kl(geom, (x ** 2 + y ** 2) / 2), rho0
