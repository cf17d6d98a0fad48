r"""Continuation in a parameter: the fallback of a dynamic-transport solve.

A JKO step (parameter: the step size :math:`\eta`) or a :math:`W_2` geodesic
(parameter: a homotopy of the end density) is first solved directly by Newton's
method.  If that started from a warm guess (the previous step's solution) and fails,
it is retried once from the trivial guess.  If Newton still fails, the parameter
scales the transport down to where the problem is close to the identity, and is then
walked back up to its target:

* the first solve is at a quarter of the target, from the trivial guess;
* each later solve starts from the last converged state, *extrapolated* to the new
  parameter (potentials linearly; densities geometrically about the start, so they
  stay positive), and the increment doubles after a success;
* a failed increment is halved; below 1/64 of the target the fallback gives up.

Every retry and continuation is logged as a warning, continuation with the path taken
(parameter, Newton iterations),
and the path is kept in the problem's ``continuation_path``.  The functions act on a
:class:`~jkoflow.solvers.BenamouBrenier` problem through its public methods only.
"""
from __future__ import annotations

import ufl

from .common import SolverDivergedError, logger

__all__ = ["extrapolate", "solve_with_continuation"]


def extrapolate(transport, ratio: float):
    """Scale the current transport of ``transport`` by ``ratio``: potentials linearly,
    densities geometrically about the start density (so they stay positive)."""
    us, phis = transport.unknown_slices()
    for p in phis:
        p.assign(ratio * p)
    for u in us:
        if transport.variable == "log":
            u.assign(transport.start + ratio * (u - transport.start))
        else:
            # Geometric about the (strictly positive) interior start.
            base = transport.interior_start(transport.start)
            u.interpolate(ufl.exp((1 - ratio) * ufl.ln(base) + ratio * ufl.ln(u)))


def solve_with_continuation(transport, what: str, set_parameter, target: float,
                            trivial_guess, warm: bool = False):
    """Solve ``transport`` at ``set_parameter(target)`` from its current state; if
    Newton fails, globalise by continuation in the parameter (module docstring).

    Parameters
    ----------
    transport
        A :class:`~jkoflow.solvers.BenamouBrenier` problem.
    what
        Describes the solve in messages.
    set_parameter
        ``set_parameter(value)`` sets the parameter (e.g. assigns :math:`\\eta`).
    target
        The parameter's value to reach.
    trivial_guess
        Sets the state to the guess for small parameters.
    warm
        Whether the current state is a warm guess; if Newton fails from it, it is
        retried once from ``trivial_guess()`` at the target before continuation.

    Returns
    -------
    TransportResult
        Of the solve at ``target``; iteration counts include the failed attempts and
        every continuation solve.

    Raises
    ------
    SolverDivergedError
        With the path taken and the first and last failures' histories.
    """
    set_parameter(target)
    spent = 0   # Newton iterations of failed attempts: they count
    try:
        return transport.run(what)
    except SolverDivergedError as err:
        first_error = err
        spent += max(len(err.history) - 1, 0)
    if warm:
        logger.warning("%s: Newton failed from the warm start (%d iterations, reason %s);"
                       " retrying from the cold start", what, len(first_error.history),
                       first_error.reason)
        trivial_guess()
        try:
            its, lits, lev = transport.solve_levels(f"{what}, cold start")
            return transport.result(spent + its, lits, lev)
        except SolverDivergedError as err:
            spent += max(len(err.history) - 1, 0)
    logger.warning("%s: Newton failed (%d iterations, reason %s); falling back to "
                   "continuation in the parameter from %.4g", what,
                   len(first_error.history), first_error.reason, target / 4)
    # No state to restore: the first stage starts from trivial_guess(), which sets
    # every slice and potential (the interior point resets its duals itself).
    reached, good, previous = 0.0, None, 0.0
    trial = target / 4
    snes_total, ksp_total, levels, path = spent, 0, [], []
    while reached < target:
        set_parameter(trial)
        if good is None:
            trivial_guess()
        else:
            transport.w.assign(good)
            extrapolate(transport, trial / reached)
        try:
            its, lits, lev = transport.solve_levels(f"{what}, continuation at {trial:.4g}")
        except SolverDivergedError as err:
            path.append((trial, "failed"))
            if trial - reached < target / 64:
                set_parameter(target)
                raise SolverDivergedError(
                    f"{what}: Newton failed, and so did continuation (path: {path})."
                    f"\nFirst failure:\n{first_error}\nLast failure:\n{err}",
                    history=err.history, reason=err.reason) from None
            trial = reached + 0.5 * (trial - reached)
            continue
        snes_total, ksp_total, levels = snes_total + its, ksp_total + lits, levels + lev
        path.append((trial, its))
        previous, reached, good = reached, trial, transport.w.copy(deepcopy=True)
        trial = min(target, reached + 2 * (reached - previous))
    transport.continuation_path = path
    logger.warning("%s: continuation path (parameter, Newton iterations): %s", what, path)
    return transport.result(snes_total, ksp_total, levels)
