r"""Exact solutions used to validate the solvers.

The **Barenblatt profile** of the porous medium energy
:math:`J(\rho) = \int\rho^m/(m-1)`, :math:`m > 1`, in :math:`\mathbb{R}^d`:

.. math::

    B(t)(x) = t^{-\alpha}\big(C - k\,|x - c|^2\,t^{-2\beta}\big)_+^{1/(m-1)},
    \qquad \alpha = \frac{d}{d(m-1)+2},\quad \beta = \frac{\alpha}{d},\quad
    k = \frac{\alpha(m-1)}{2md},

is the self-similar solution of :math:`\partial_t\rho = \Delta\rho^m`; its support
:math:`|x - c| \le (C/k)^{1/2}t^\beta` spreads at finite speed, so on a bounded domain
that contains the support the no-flux problem has the same solution.

**Its JKO recursion is exact too.**  Two Barenblatt profiles are dilations of each
other about :math:`c`: the map :math:`S(y) = c + \lambda(y - c)`,
:math:`\lambda = (s/s')^\beta`, pushes :math:`B(s')` forward to :math:`B(s)`, and as
the gradient of a convex function it is the optimal map.  The optimality condition of
the JKO step :math:`\rho_{k+1} = \mathrm{argmin}\, W_2^2(\rho_k, \rho)/(2\tau) + J(\rho)`
reads, on the support of :math:`\rho_{k+1}`,
:math:`(y - S(y))/\tau = -\nabla\,\delta J/\delta\rho(\rho_{k+1})(y)`.  For
:math:`\rho_k = B(s)`, :math:`\rho_{k+1} = B(s')`: the left side is
:math:`(1-\lambda)(y - c)/\tau`, and since :math:`\delta J/\delta\rho =
\tfrac{m}{m-1}\rho^{m-1}` the right side is
:math:`\tfrac{2km}{m-1}\,s'^{-2\beta-\alpha(m-1)}(y - c) = \beta\,(y-c)/s'`
(:math:`2\beta + \alpha(m-1) = 1`, :math:`2km/(m-1) = \beta`).  Both are linear in
:math:`y - c`: the condition holds everywhere on the support iff
:math:`1 - \lambda = \beta\tau/s'`, i.e.

.. math:: \Big(\frac{s_k}{s_{k+1}}\Big)^\beta = 1 - \frac{\beta\tau}{s_{k+1}} ,

and off the support (:math:`\rho_{k+1} = 0`) the inequality form holds because the
pressure vanishes there.  So a JKO step maps :math:`B(s_k)` exactly onto
:math:`B(s_{k+1})`.

:func:`barenblatt_jko_time` solves it for :math:`s_{k+1}` (the left side minus the
right one decreases in :math:`s_{k+1}`; bisection).  The discrete time
:math:`s_k` lags :math:`t_0 + k\tau` by :math:`O(\tau)`.

The **JKO step of a Gaussian** for the relative entropy to :math:`N(0, 1/a)` on the
line (:math:`V = a x^2/2`) is a Gaussian as well (derived in the documentation's
*Reference solutions*, :doc:`/maths/reference_solutions`):

.. math::

    m_{k+1} = \frac{m_k}{1 + a\eta}, \qquad
    s_{k+1} = \frac{s_k + \sqrt{s_k^2 + 4\eta(1 + a\eta)}}{2(1 + a\eta)}

(:func:`gaussian_jko_step`).
"""
from __future__ import annotations

import ufl

__all__ = ["barenblatt_constants", "barenblatt", "barenblatt_jko_time",
           "gaussian_jko_step"]


def barenblatt_constants(m: float, d: int) -> tuple[float, float, float]:
    r""":math:`(\alpha, \beta, k)` of the Barenblatt profile (module docstring)."""
    if not m > 1:
        raise ValueError(f"the Barenblatt profile needs m > 1, got m = {m!r}")
    alpha = d / (d * (m - 1) + 2)
    return alpha, alpha / d, alpha * (m - 1) / (2 * m * d)


def barenblatt(x, t, C: float, m: float, centre=None):
    r"""The Barenblatt profile :math:`B(t)` at the spatial coordinate ``x`` (UFL; a
    scalar coordinate or a vector of length :math:`d`), centred at ``centre``
    (default the origin)."""
    xs = [x] if x.ufl_shape == () else [x[i] for i in range(x.ufl_shape[0])]
    d = len(xs)
    centre = (0.0,) * d if centre is None else tuple(centre)
    if len(centre) != d:
        raise ValueError(f"centre has {len(centre)} coordinates, the space {d}")
    alpha, beta, k = barenblatt_constants(m, d)
    r2 = sum((xi - ci) ** 2 for xi, ci in zip(xs, centre))
    return t ** (-alpha) * ufl.max_value(C - k * r2 * t ** (-2 * beta), 0) ** (1 / (m - 1))


def barenblatt_jko_time(s: float, tau: float, m: float, d: int) -> float:
    r"""The time :math:`s' > s` of the JKO step of size ``tau`` from :math:`B(s)`:
    :math:`(s/s')^\beta = 1 - \beta\tau/s'` (bisection to round-off)."""
    if not (s > 0 and tau > 0):
        raise ValueError(f"need s > 0 and tau > 0, got s = {s!r}, tau = {tau!r}")
    _, beta, _ = barenblatt_constants(m, d)
    lo, hi = s, s + 2 * tau
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if (s / mid) ** beta - 1 + beta * tau / mid > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def gaussian_jko_step(mean: float, std: float, eta: float,
                      a: float = 1.0) -> tuple[float, float]:
    r"""Mean and standard deviation after one exact JKO step of size ``eta`` from
    :math:`N(m, s^2)` (``mean``, ``std``) for the relative entropy to
    :math:`N(0, 1/a)` on the line (module docstring).

    Raises
    ------
    ValueError
        For ``std <= 0``, ``eta <= 0`` or ``a <= 0``.
    """
    if not (std > 0 and eta > 0 and a > 0):
        raise ValueError(f"the Gaussian JKO step needs std > 0, eta > 0 and a > 0, got "
                         f"std = {std!r}, eta = {eta!r}, a = {a!r}")
    c = 1 + a * eta
    return mean / c, (std + (std ** 2 + 4 * eta * c) ** 0.5) / (2 * c)
