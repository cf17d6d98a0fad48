r"""A predictor of the log-density increment of a JKO step: one linearly implicit Euler
step of the Wasserstein gradient flow.

Newton's method for a JKO step with log-density unknowns needs a starting guess for
the slices :math:`l_1, \dots, l_N` of the transport.  Copies of :math:`l_k` are a poor
one when the density must change by orders of magnitude in the step: far in the tails of
a narrow Gaussian :math:`l` rises by tens of units in a single step of size
:math:`\eta = 0.2`, and Newton from :math:`l_i = l_k` failed there and fell back on
continuation in :math:`\eta` (67--74 Newton iterations on the 2D workload of
``benchmarks/cold_start.py``).

A JKO step is, to first order in :math:`\eta`, an implicit Euler step of the gradient
flow :math:`\partial_t\rho = \operatorname{div}_g(\rho\nabla_g g)`,
:math:`g = \delta J/\delta\rho`.  With the mobility frozen at :math:`\rho_k = e^{l_k}`,
that step in :math:`l = \log\rho` reads

.. math::

    \int_M (e^{l'} - e^{l_k})\,v\,\mathrm{dvol}
    + \eta\int_M \rho_k\,\langle \nabla_g g(l'), \nabla_g v\rangle_g\,\mathrm{dvol} = 0
    \qquad \forall v ,

and one Newton step of it from :math:`l' = l_k` is a *linear* problem for the
increment :math:`\delta` in the same finite element space:

.. math::

    \int_M \rho_k\,\delta\,v\,\mathrm{dvol}
    + \eta\int_M \rho_k\,\langle \nabla_g (g'(l_k)[\delta]), \nabla_g v\rangle_g
    \,\mathrm{dvol}
    = -\eta\int_M \rho_k\,\langle \nabla_g g(l_k), \nabla_g v\rangle_g\,\mathrm{dvol},

with :math:`g'` derived by UFL (for KL, :math:`g = l + V + 1` and
:math:`g'[\delta] = \delta`).  The diffusion is implicit, so the step is stable for any
:math:`\eta` and mesh; testing with :math:`v = 1` gives
:math:`\int\rho_k\delta = 0`, the linearised mass balance; and :math:`\delta/\eta`
tends to :math:`\partial_t l` at first order in :math:`\eta` (tested against the
Ornstein--Uhlenbeck flow of a Gaussian).  In the tails
:math:`\delta \approx \delta\rho/\rho` is large exactly where the log-density has to
rise a lot.  Linearising the mobility as well (:math:`e^{l_k+\delta} \approx
\rho_k(1+\delta)` in the flux) adds an advection term :math:`\rho_k\delta\nabla_g g`
that is meaningless for such :math:`\delta`: with it, the 2D bump's cold steps failed
again and needed continuation.

:class:`~jkoflow.solvers.JKOStep` starts its slices on the line
:math:`l_i = l_k + \tfrac{i}{N}\delta` (with :math:`\delta` bounded below, where tails
fall).  The cost is one scalar linear solve on the space of a single slice (the KKT
system has :math:`2N` such fields), MUMPS by default.
"""
from __future__ import annotations

import ufl
from firedrake import (Constant, Function, LinearVariationalProblem,
                       LinearVariationalSolver, TestFunction, TrialFunction)

from .presets import preset

__all__ = ["LogIncrementPredictor"]


class LogIncrementPredictor:
    r"""The linearly implicit Euler increment :math:`\delta` of a log-density
    (module docstring), for a fixed start ``log_rho`` and step size ``eta``.

    The problem is built once; :meth:`solve` recomputes :math:`\delta` for the present
    values of ``log_rho`` and ``eta`` (a ``Function`` and a ``Constant`` that the
    caller updates).

    Parameters
    ----------
    energy
        The energy :math:`J` (:class:`~jkoflow.solvers.energies.Energy`); its
        first variation is linearised in the log-density.
    log_rho
        The start :math:`l_k` (a ``Function``; its space is the increment's).
    eta
        The step size.
    dx
        The measure (quadrature rule) of the weak form.
    options_prefix
        PETSc options prefix of the linear solve (MUMPS LU by default).
    solver_parameters
        Replaces the default (:func:`~jkoflow.solvers.preset` ``"linear"``).
    """

    def __init__(self, energy, log_rho: Function, eta: Constant, dx, *,
                 options_prefix: str = "predictor_",
                 solver_parameters: dict | None = None):
        if not isinstance(eta, Constant):
            raise TypeError("eta must be a firedrake Constant (the step size changes "
                            "without rebuilding the predictor)")
        V = log_rho.function_space()
        geom = energy.geometry
        self.increment = Function(V, name="predicted_log_increment")
        delta, v = TrialFunction(V), TestFunction(V)
        rho = ufl.exp(log_rho)
        g = energy.first_variation(rho, log_rho if energy.entropic else None)
        a = (rho * delta * v * dx
             + eta * rho * geom.dot_grad(ufl.derivative(g, log_rho, delta), v) * dx)
        L = -eta * rho * geom.dot_grad(g, v) * dx
        problem = LinearVariationalProblem(a, L, self.increment)
        params = preset("linear") if solver_parameters is None else solver_parameters
        self.solver = LinearVariationalSolver(problem, solver_parameters=params,
                                              options_prefix=options_prefix)

    def solve(self) -> Function:
        r"""The increment :math:`\delta` for the present start and step size."""
        self.solver.solve()
        return self.increment
