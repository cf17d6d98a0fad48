r"""Choosing the unknowns of a JKO step from the data: log-densities or densities.

A JKO step (:class:`~jkoflow.solvers.JKOStep`) represents its density slices either
by their logarithms (``variable="log"``) or by the densities themselves
(``variable="density"``, the primal--dual interior point).  The two have opposite
strengths:

* **Log unknowns** keep every slice positive by construction, have fewer unknowns
  (no dual variables) and a better-conditioned Newton system, and their
  :math:`\eta \to 0` limit is a Wasserstein gradient flow on the same space
  (:meth:`~jkoflow.solvers.JKOStep.limit_energy`).  But Newton linearises
  :math:`e^{l}`, so a step in which :math:`l` must move by many units somewhere
  needs many iterations: each one changes a nodal log-density by at most
  ``max_log_step`` (clipping, :mod:`~jkoflow.solvers.benamou_brenier`), and steps
  that move tails by hundreds of units fail.  They need :math:`\rho > 0`.
* **Density unknowns** take densities that vanish on open sets and steep tails alike,
  in a Newton count that hardly depends on the data (the barrier floors the tails),
  but each iteration is dearer.

Only entropic energies have a choice: the others need density unknowns (their
first variation :math:`U'(\rho)` is finite at :math:`\rho = 0`, and the data may
vanish).  For an entropic energy the deciding quantity is how far a step must move
the log-density.  Along the Wasserstein gradient flow,

.. math::

    \partial_t l = \frac{\operatorname{div}_g(\rho\nabla_g u)}{\rho}
                 = \Delta_g u + \langle\nabla_g l, \nabla_g u\rangle_g,
    \qquad u = \frac{\delta J}{\delta\rho}, \quad l = \log\rho ,

and in the tails the transport term dominates: a steep log-density carried by a
strong drift (:math:`|\nabla l|\,|\nabla u|` large) changes fastest there.
:func:`predicted_log_change` evaluates :math:`\Lambda = \eta\max_M
|\langle\nabla_g l, \nabla_g u\rangle_g|` at the data (on the cells, exact for the
interpolated :math:`l` and :math:`V`; it does not depend on the mesh), and it tracks
the largest change of :math:`l` in the step: measured 4.0, 11.2, 75 and 12.6
against actual changes of 3.8, 9.3, 47 and 8.8 (1D Gaussians, P2; 2D Gaussian bump,
P1).

:func:`choose_variable` takes density unknowns when the data vanish somewhere or
:math:`\Lambda >` :data:`LOG_CHANGE_LIMIT` (= 100), log unknowns otherwise.  The
limit comes from one cold KL step (``benchmarks/results/representation_choice.md``):
from 1D Gaussians, log unknowns take 10 Newton iterations at :math:`\Lambda = 4`,
25--33 at 8--42 (with continuation from about 14), 50 at 75, and fail at 119; from a
2D Gaussian (P2), 40 with continuation at 54.  Density unknowns take 15--24
throughout, but each of their iterations costs 3--5 times more (duals, more
unknowns), so in CPU seconds log unknowns are cheaper up to :math:`\Lambda = 42`
and 30 % dearer at 75; and they keep what only they have (Gaussians exact with
:math:`P_2`, the limit energy).  The limit therefore sits where log unknowns stop
converging.  Tails steepen, so one judgement at :math:`\rho_0` is not enough: on the
steep-tails cases at :math:`\eta = 0.05`, :math:`\Lambda` is 92--96 at :math:`\rho_0`
and 175--2400 after one step, and log unknowns kept throughout need up to 181
iterations in a later step, or fail on the coarsest mesh
(``benchmarks/results/steep_tails.md``).  :class:`~jkoflow.solvers.JKOScheme`
therefore judges its log unknowns again before every step and changes to density
unknowns, for good, once :math:`\Lambda` exceeds the limit; its default then takes
every warm step of those runs in 17--19 Newton iterations.  A limit of 50 (the cost
crossover) was tried and reverted: it also took density unknowns for 1D Gaussians on
a wide box at :math:`\eta = T/8`, where log unknowns are exact with :math:`P_2` and a
second-order test needs them.  The steep-tails cases of the issue tracker
(double well and quartic from :math:`N(0.5, 0.25)`, :math:`\eta = 0.1`) have
:math:`\Lambda \approx 190`; a smooth 2D KL step from a Gaussian bump 12.6.

One exception: with :math:`P_k`, :math:`k \ge 2`, on triangles (2D domains,
surfaces) log unknowns are kept whatever :math:`\Lambda`, with a warning when it
exceeds the limit, because the interior point is refused there
(:class:`~jkoflow.solvers.BenamouBrenier` raises): its barrier rows use the full
quadrature rule (there is no positive nodal rule for :math:`P_2` on triangles), and
KL and porous-medium steps failed with it even from smooth positive data, while log
unknowns took the 2D Gaussian step.  Data that vanish somewhere, and non-entropic
energies, still get density unknowns, and with them the error that names the remedy
(:math:`P_1`).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import ufl
from firedrake import Function, FunctionSpace, assemble, interpolate

from .benamou_brenier import density_unknowns_supported
from .common import check_density, global_max, global_min, logger

__all__ = ["choose_variable", "predicted_log_change", "recorded_variable", "LOG_CHANGE_LIMIT"]

#: The representation a checkpointed run chose (set while :func:`recorded_variable`).
_RECORDED: ContextVar[str | None] = ContextVar("jkoflow_recorded_variable", default=None)

#: Largest predicted change of the log-density in one step (:func:`predicted_log_change`)
#: for which :func:`choose_variable` keeps log unknowns.
LOG_CHANGE_LIMIT = 100.0


def predicted_log_change(energy, log_rho: Function, eta: float) -> float:
    r""":math:`\Lambda = \eta\max_M|\langle\nabla_g l, \nabla_g u\rangle_g|`, the rate at
    which the transport term changes the log-density :math:`l` at the data, times the
    step (module docstring): about the largest change of :math:`l` in one JKO step.

    Parameters
    ----------
    energy
        An entropic :class:`~jkoflow.solvers.Energy` (:math:`u = l + U'(1) + V`).
    log_rho
        :math:`l = \log\rho_k`, a ``Function`` in :math:`P_k` on the energy's mesh.
    eta
        The step size.

    Returns
    -------
    float
        :math:`\Lambda`, evaluated at the equispaced nodes (vertices included) of a
        discontinuous :math:`P_{2k-2}` field (cellwise constant for :math:`P_1`);
        collective.

    Raises
    ------
    ValueError
        For a non-entropic energy (it has no log representation).
    """
    if not energy.entropic:
        raise ValueError(f"predicted_log_change needs an entropic energy, not {energy.name!r}")
    geom = energy.geometry
    degree = log_rho.function_space().ufl_element().degree()
    # equispaced nodes include the cells' vertices, where steep tails peak
    D = FunctionSpace(geom.mesh, "DG", max(2 * degree - 2, 0), variant="equispaced")
    u = energy.first_variation(ufl.exp(log_rho), log_rho=log_rho)
    rate = assemble(interpolate(eta * geom.dot_grad(log_rho, u), D))
    return max(global_max(rate), -global_min(rate))


@contextmanager
def recorded_variable(variable: str | None):
    """Within this context :func:`choose_variable` returns ``variable`` (``"log"`` or
    ``"density"``) for entropic energies instead of judging the data.

    :func:`~jkoflow.solvers.restart` rebuilds a solver from the *restored* density,
    which the rule may judge differently from the run's initial one (smoother later);
    it wraps the user's ``build`` in this context with the restored snapshot's
    representation, so that a scheme built without ``variable`` continues in the
    unknowns that snapshot was taken in.  ``None`` or another value: no effect.
    """
    token = _RECORDED.set(variable if variable in ("log", "density") else None)
    try:
        yield
    finally:
        _RECORDED.reset(token)


def choose_variable(energy, eta: float, rho: Function | None = None, *,
                    log_rho: Function | None = None, degree: int = 1,
                    what: str = "JKO step") -> str:
    r"""The unknowns for JKO steps of size ``eta`` from ``rho`` (or ``log_rho``):
    ``"density"`` for a non-entropic energy, for data that vanish somewhere, and for
    data whose predicted log-density change :math:`\Lambda` exceeds
    :data:`LOG_CHANGE_LIMIT` (except :math:`P_k`, :math:`k \ge 2`, on triangles:
    module docstring); ``"log"`` otherwise.  Density unknowns for an entropic
    energy are logged at ``INFO``, log unknowns at ``DEBUG``.

    Parameters
    ----------
    energy
        The energy.
    eta
        The step size.
    rho, log_rho
        The data: a density, or its logarithm.
    degree
        The :math:`P_k` degree of the steps (the data are interpolated into it).
    what
        The solver's name, for the log message.

    Raises
    ------
    ValueError
        If neither ``rho`` nor ``log_rho`` is given, or for an invalid density
        (NaN, negative values, zero mass: :func:`~jkoflow.solvers.common.check_density`).
    """
    if not energy.entropic:
        return "density"
    recorded = _RECORDED.get()
    if recorded is not None:
        logger.debug("%s: %s unknowns, as recorded in the checkpoint", what, recorded)
        return recorded
    geom = energy.geometry
    if log_rho is None:
        if rho is None:
            raise ValueError("choose_variable needs the data: rho or log_rho")
        check_density(geom, rho, what=f"density of the {what}")
        if not global_min(rho) > 0:
            logger.info("%s: density unknowns (the data vanish somewhere)", what)
            return "density"
        V = FunctionSpace(geom.mesh, "CG", degree)
        log_rho = assemble(interpolate(ufl.ln(rho), V))
    change = predicted_log_change(energy, log_rho, eta)
    variable = "log" if change <= LOG_CHANGE_LIMIT else "density"
    if variable == "density" and not density_unknowns_supported(geom, degree):
        logger.warning("%s: log unknowns kept although the predicted change of the "
                       "log-density in one step, %.3g, exceeds %g (steep tails): density "
                       "unknowns are not reliable with P%d on triangles; a smaller step "
                       "or P1 density unknowns may be needed", what, change,
                       LOG_CHANGE_LIMIT, degree)
        return "log"
    # a density-unknown entropic step is the notable choice
    logger.log(20 if variable == "density" else 10,
               "%s: %s unknowns (predicted change of the log-density in one step %.3g, "
               "limit %g for log unknowns)", what, variable, change, LOG_CHANGE_LIMIT)
    return variable
