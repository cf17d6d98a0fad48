"""Named PETSc solver presets, and the one rule by which every solver takes options.

Each preset is a nested dict in Firedrake's style (flags as ``None``).  Always take a
copy with :func:`preset` before changing one::

    params = preset("direct")
    params["snes_rtol"] = 1e-12

The options rule (as in G-ADOPT), the same for every jkoflow solver
(:func:`resolve_parameters`):

``solver_parameters``
    ``None`` (the solver's default), the **name** of a preset (``"direct"``,
    ``"iterative"``, ...), which the solver adapts to its formulation (e.g. the
    log-density flows take full Newton steps), or a **complete dict**, used as given:
    it *replaces* the defaults.
``solver_parameters_extra``
    A dict that *updates* whatever the first argument selected (e.g.
    ``{"snes_monitor": None}``).

Options given on the command line with the solver's prefix (``-wgf_snes_max_it 5``)
take precedence over both, as everywhere in Firedrake.
"""
from __future__ import annotations

import copy

__all__ = ["PRESETS", "ALIASES", "preset", "resolve_parameters"]

# MUMPS LU; ICNTL(24) detects null pivots, so singular systems with a known null
# space (e.g. potentials defined up to a constant) factor too.
_lu = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps",
       "mat_mumps_icntl_14": 200, "mat_mumps_icntl_24": 1}

# Newton with a backtracking line search, to tight tolerances.
_newton = {"snes_type": "newtonls", "snes_linesearch_type": "bt", "snes_rtol": 1e-10,
           "snes_atol": 1e-12, "snes_stol": 0.0, "snes_max_it": 50}

# The outer Krylov method of the preconditioned KKT solves.
_fgmres = {"ksp_type": "fgmres", "ksp_rtol": 1e-9, "ksp_gmres_restart": 100,
           "ksp_max_it": 200}

PRESETS: dict[str, dict] = {
    # Newton with a backtracking line search and a MUMPS LU solve: the robust default.
    "direct": {
        "mat_type": "aij",
        **_newton,
        **_lu,
    },
    # Newton for linear problems: one step, exact solve.
    "linear": {
        "mat_type": "aij",
        "snes_type": "ksponly",
        **_lu,
    },
    # Newton-Krylov for the scalar flows (WGF, JKO-Flow): GMRES with an algebraic
    # multigrid preconditioner on the whole system.  Not for the saddle-point KKT
    # system of a JKO step: use "sweep" there.
    "iterative": {
        "mat_type": "aij",
        **_newton,
        "ksp_type": "gmres",
        "ksp_rtol": 1e-10,
        "ksp_gmres_restart": 200,
        "ksp_max_it": 1000,
        "pc_type": "gamg",
    },
    # Newton-Krylov for a JKO step (density unknowns, P1): FGMRES preconditioned by
    # the block factorisation whose Schur complement is applied by two transport
    # sweeps through the slices and one AMG-preconditioned implicit-Euler-type solve
    # (jkoflow.solvers.preconditioners.TransportSweepPC).  The recommended
    # iterative option for large JKO steps ("schur" is an alias).  Outer relative
    # tolerance 1e-6, not 1e-9: same Newton counts and answers (to 1e-15) on the
    # 2D KL step at 24^2 and 96^2 cells, 40 % fewer outer iterations; at 1e-9 FGMRES
    # stalled near 1e-8 for 100 iterations on 96^2 cells (after four Newton steps,
    # even with exact inner solves).
    "sweep": {
        "mat_type": "aij",
        **_newton,
        "snes_linesearch_type": "basic",
        "snes_max_it": 100,
        **_fgmres,
        "ksp_rtol": 1e-6,
        "pc_type": "python",
        "pc_python_type": "jkoflow.solvers.preconditioners.TransportSweepPC",
    },
    # Newton with an exact solve for log-density steps with quadrature="vertex": MUMPS's
    # symmetric indefinite LDL^T of the Jacobian with its log-density rows scaled by
    # the nodal densities (jkoflow.solvers.symmetric_solve.ScaledLDLTPC), the same
    # Newton steps as "direct" for about two thirds of the factorisation's time.
    "ldlt": {
        "mat_type": "aij",
        **_newton,
        "ksp_type": "preonly",
        "pc_type": "python",
        "pc_python_type": "jkoflow.solvers.symmetric_solve.ScaledLDLTPC",
    },
    # The same outer iteration with the Schur complement on the potentials assembled
    # and solved by CG + GAMG (jkoflow.solvers.preconditioners.TransportSchurPC): the
    # earlier variant, kept for comparison; far slower (100-300 inner iterations per
    # application).
    "schur-amg": {
        "mat_type": "aij",
        **_newton,
        "snes_linesearch_type": "basic",
        "snes_max_it": 100,
        **_fgmres,
        "pc_type": "python",
        "pc_python_type": "jkoflow.solvers.preconditioners.TransportSchurPC",
        "schur_ksp_type": "cg",
        "schur_ksp_rtol": 1e-8,
        "schur_pc_type": "gamg",
        "schur_mg_levels_pc_type": "sor",
    },
}


#: Older names of presets.
ALIASES = {"schur": "sweep"}


def preset(name: str, **overrides) -> dict:
    """A deep copy of the named preset, with ``overrides`` applied on top.

    Raises
    ------
    ValueError
        If ``name`` is not a known preset (the message lists the valid ones).
    """
    name = ALIASES.get(name, name)
    if name not in PRESETS:
        raise ValueError(f"unknown solver preset {name!r}; valid: "
                         f"{sorted(PRESETS) + sorted(ALIASES)}")
    params = copy.deepcopy(PRESETS[name])
    params.update(overrides)
    return params


def resolve_parameters(solver_parameters=None, extra: dict | None = None, default="direct",
                       tune=None) -> dict:
    """The solver options by the one rule of jkoflow (see the module notes).

    Parameters
    ----------
    solver_parameters
        ``None`` (use ``default``), a preset name, or a complete dict (copied, used as
        given: it replaces the defaults).
    extra
        A dict applied on top (``solver_parameters_extra``).
    default
        The solver's default: a preset name or a dict.
    tune
        Optional ``tune(params) -> params`` applied to *named* presets only (including a
        named default): the solver's adaptation of a generic preset to its formulation.

    Returns
    -------
    dict
        A fresh dict (never aliases the caller's).

    Raises
    ------
    ValueError
        For an unknown preset name.
    TypeError
        If ``solver_parameters`` is neither ``None``, a name nor a dict, or ``extra`` is
        not a dict.
    """
    if solver_parameters is None:
        solver_parameters = default
    if isinstance(solver_parameters, str):
        params = preset(solver_parameters)
        if tune is not None:
            params = tune(params)
    elif isinstance(solver_parameters, dict):
        params = copy.deepcopy(solver_parameters)
    else:
        raise TypeError("solver_parameters must be a preset name "
                        f"({', '.join(map(repr, sorted(PRESETS)))}) or a dict, got "
                        f"{type(solver_parameters).__name__}")
    if extra is not None:
        if not isinstance(extra, dict):
            raise TypeError(f"solver_parameters_extra must be a dict, got {type(extra).__name__}")
        params.update(copy.deepcopy(extra))
    return params
