"""Energies: values, first variations, metric curvature I_J and its first variation.

Every built-in is compared with hand-derived formulas (docs/maths/setting.rst,
implicit_bias.rst) on the unit square with a smooth density whose flux has zero
normal component, so that the weak first variation of I_J (UFL's ``derivative``) equals the strong formula.
"""
import numpy as np
import pytest
import ufl
from firedrake import Function, FunctionSpace, assemble
from mpi4py import MPI

from jkoflow.meshes import unit_square
from jkoflow.solvers import (Energy, entropy, fokker_planck, kl, porous_medium,
                             potential_energy)

from conftest import rates


def fields(geom):
    """A smooth positive density and a potential with zero normal derivatives."""
    x, y = geom.x
    rho = 1.0 + 0.5 * ufl.cos(ufl.pi * x) * ufl.cos(ufl.pi * y)
    V = 0.3 * ufl.cos(ufl.pi * x) * ufl.cos(2 * ufl.pi * y) + 0.2 * ufl.cos(ufl.pi * y)
    return rho, V


def builtins(geom, V):
    """(energy, U'' by hand, g = dJ/drho by hand) for each built-in."""
    return {
        "entropy": (entropy(geom), lambda r: 1 / r, lambda r: ufl.ln(r) + 1),
        "kl": (kl(geom, V), lambda r: 1 / r, lambda r: ufl.ln(r) + 1 + V),
        "pme2": (porous_medium(geom, 2.0), lambda r: 2.0, lambda r: 2 * r),
        "pme3_V": (porous_medium(geom, 3.0, V=V), lambda r: 3 * r,
                   lambda r: 1.5 * r ** 2 + V),
        "potential": (potential_energy(geom, V), lambda r: 0.0, lambda r: V),
    }


def l2(geom, expr):
    return np.sqrt(abs(geom.integrate(expr ** 2, degree=10)))


@pytest.mark.parametrize("name", ["entropy", "kl", "pme2", "pme3_V", "potential"])
def test_first_variation_and_curvature_match_hand_formulas(name):
    geom = unit_square(6)
    rho, V = fields(geom)
    energy, _, g_hand = builtins(geom, V)[name]
    # dJ/drho from UFL equals the table in docs/maths/setting.rst
    g = energy.first_variation(rho)
    assert l2(geom, g - g_hand(rho)) < 1e-12 * l2(geom, g_hand(rho))
    # J itself
    U = {"entropy": rho * ufl.ln(rho), "kl": rho * ufl.ln(rho) + V * rho,
         "pme2": rho ** 2, "pme3_V": rho ** 3 / 2 + V * rho, "potential": V * rho}[name]
    assert abs(energy.value(rho) - geom.integrate(U, degree=10)) < 1e-12
    # I_J: Fisher information, relative Fisher, m^2 rho^(2m-3)|grad rho|^2, kinetic energy
    gr, gV = ufl.grad(rho), ufl.grad(V)
    hand = {"entropy": ufl.inner(gr, gr) / rho,
            "kl": ufl.inner(gr / rho + gV, gr / rho + gV) * rho,
            "pme2": 4 * rho * ufl.inner(gr, gr),
            "pme3_V": ufl.inner(3 * rho * gr + gV, 3 * rho * gr + gV) * rho,
            "potential": ufl.inner(gV, gV) * rho}[name]
    I_hand = geom.integrate(hand, degree=10)
    assert I_hand > 0
    assert abs(energy.curvature(rho) - I_hand) < 1e-12 * I_hand
    # the flux rho grad g, and its log-density form (rho = e^l)
    flux_hand = rho * ufl.grad(g_hand(rho))
    assert l2(geom, ufl.sqrt(ufl.inner(energy.flux(rho) - flux_hand,
                                       energy.flux(rho) - flux_hand))) < 1e-12
    if name in ("entropy", "kl"):
        l = ufl.ln(rho)
        fl = energy.flux(ufl.exp(l), log_rho=l)
        assert l2(geom, ufl.sqrt(ufl.inner(fl - flux_hand, fl - flux_hand))) < 1e-12


@pytest.mark.parametrize("name", ["entropy", "kl", "pme2", "pme3_V", "potential"])
def test_curvature_variation_weak_equals_strong(name):
    r"""UFL's derivative of I_J equals |grad g|^2 - 2 U''(rho) div(rho grad g).

    rho_h is a CG4 interpolant of a smooth density; the directional derivative in a
    direction phi is compared with the integral of the strong form (hand-derived
    second derivatives of the exact rho) against phi.  The difference is the
    interpolation error, which must fall at the expected rate (order 3 or better
    in h: second derivatives of a P4 interpolant).
    """
    errs = []
    for n in (4, 8):
        geom = unit_square(n)
        rho_ex, V = fields(geom)
        energy, d2U, g_hand = builtins(geom, V)[name]
        x, y = geom.x
        phi = x ** 2 + 0.5 * y + ufl.sin(2 * y)
        rho_h = Function(FunctionSpace(geom.mesh, "CG", 4)).interpolate(rho_ex)
        weak = float(assemble(ufl.derivative(energy.curvature_form(rho_h), rho_h,
                                             Function(rho_h.function_space()).interpolate(phi))))
        gg = g_hand(rho_ex)
        strong_hand = (ufl.inner(ufl.grad(gg), ufl.grad(gg))
                       - 2 * d2U(rho_ex) * ufl.div(rho_ex * ufl.grad(gg)))
        strong = geom.integrate(strong_hand * phi, degree=12)
        # the generic strong formula of Energy agrees with the hand-derived one
        generic = geom.integrate(energy.curvature_variation_strong(rho_ex) * phi, degree=12)
        assert abs(generic - strong) < 1e-10 * max(1.0, abs(strong))
        errs.append(abs(weak - strong) / max(abs(strong), 1.0))
    assert errs[-1] < 1e-4, errs
    # (the potential energy's variation |grad V|^2 has no rho in it: exact to round-off)
    assert errs[-1] < 1e-11 or rates(errs)[-1] > 3.0, (errs, rates(errs))


def test_entropy_fisher_variation_matches_textbook_formula():
    """For the entropy, dI/drho = -|grad log rho|^2 - 2 Lap log rho (Fisher information)."""
    geom = unit_square(4)
    rho, _ = fields(geom)
    lr = ufl.ln(rho)
    textbook = -ufl.inner(ufl.grad(lr), ufl.grad(lr)) - 2 * ufl.div(ufl.grad(lr))
    diff = entropy(geom).curvature_variation_strong(rho) - textbook
    assert l2(geom, diff) < 1e-10


def test_user_defined_energy_and_modified_form():
    """User U and V as UFL; J^eta = J - eta/4 I_J; entropic diffusivity is 1 exactly."""
    geom = unit_square(4)
    rho, V = fields(geom)
    user = Energy(geom, lambda r: r * ufl.ln(r) - r, lambda x: 0.5 * x[0] ** 2, entropic=True)
    x = geom.x
    g = user.first_variation(rho)
    assert l2(geom, g - (ufl.ln(rho) + 0.5 * x[0] ** 2)) < 1e-12
    assert user.diffusivity(rho) == ufl.as_ufl(1.0)
    assert l2(geom, rho * user.second_derivative(rho) - 1.0) < 1e-12
    eta = 0.1
    Jeta = float(assemble(user.modified_form(rho, eta)))
    assert abs(Jeta - (user.value(rho) - eta / 4 * user.curvature(rho))) < 1e-12
    assert fokker_planck is kl


def test_bad_energy_parameters():
    geom = unit_square(2)
    with pytest.raises(ValueError, match="m > 1"):
        porous_medium(geom, 1.0)
    with pytest.raises(ValueError, match="needs a potential"):
        potential_energy(geom, None)


@pytest.mark.parallel(nprocs=2)
def test_energies_parallel_match_serial():
    """J, I_J and dI_J on 2 ranks equal the same numbers computed on one rank."""
    out = []
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        geom = unit_square(6, comm=comm)
        rho, V = fields(geom)
        e = kl(geom, V)
        rho_h = Function(FunctionSpace(geom.mesh, "CG", 2)).interpolate(rho)
        dI = float(assemble(ufl.derivative(e.curvature_form(rho_h), rho_h,
                                           Function(rho_h.function_space()).assign(1.0))))
        out.append(np.array([e.value(rho_h), e.curvature(rho_h), dI]))
    assert np.allclose(out[0], out[1], rtol=1e-12, atol=1e-13), out
