"""Run every demo in ``--cheap`` mode, serially and on 2 MPI ranks.

The demos are discovered by glob: every ``demos/*.py`` not starting with ``_`` (those
are helpers) is run, so a new demo is tested without being registered.  Extra
arguments for one demo go into :data:`EXTRA_ARGS`; an entry there for a demo that no
longer exists fails :func:`test_extra_args_name_existing_demos`.

Each demo is run as a subprocess with this interpreter (``sys.executable``) into a
temporary output directory; the test checks the exit code and that a PNG figure and
at least one ``.pvd`` file were written.  The 2-rank runs are launched by
``mpiexec -n 2`` from an ordinary (serial) test, so they run under
``make test-serial``.  The demos' shared command line (``demos/_cli.py``) is tested
here too: unknown options are refused, PETSc options pass through.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DEMO_DIR = Path(__file__).resolve().parent.parent / "demos"

#: Every demo on disk, by glob (``_*.py`` are helpers, not demos).
DEMOS = sorted(p.name for p in DEMO_DIR.glob("*.py") if not p.name.startswith("_"))
#: Arguments beyond ``--cheap --output DIR`` for particular demos (none needed today).
EXTRA_ARGS: dict[str, list[str]] = {}
#: The flagship, whose printed slopes are checked too.
FLAGSHIP = "implicit_bias.py"

TIMEOUT = 900  # seconds per run: generous, for a cold kernel cache


def demo_env() -> dict:
    """The subprocess environment: ours (a clean copy of ``os.environ``, so no MPI
    singleton state of this process leaks in) plus the Makefile's run-time settings."""
    env = dict(os.environ)
    for key, value in {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                       "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                       "OMPI_MCA_rmaps_base_oversubscribe": "1",
                       "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
                       "FIREDRAKE_DISABLE_OPTIONS_LEFT": "1", "MPLBACKEND": "Agg"}.items():
        env.setdefault(key, value)
    return env


def mpiexec() -> str | None:
    """``mpiexec`` next to the interpreter if there is one, else on the PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def run_demo(name: str, out: Path, launcher=()):
    cmd = [*launcher, sys.executable, str(DEMO_DIR / name), "--cheap", "--output", str(out),
           *EXTRA_ARGS.get(name, [])]
    proc = subprocess.run(cmd, env=demo_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    log = f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, log
    pngs = list(out.rglob("*.png"))
    pvds = list(out.rglob("*.pvd"))
    assert pngs, f"{name} wrote no PNG figure into {out}\n{log}"
    assert pvds, f"{name} wrote no .pvd file into {out}\n{log}"
    assert all(p.stat().st_size > 0 for p in pngs + pvds), log
    return proc.stdout


def test_extra_args_name_existing_demos():
    assert DEMOS, f"no demos found in {DEMO_DIR}"
    stale = set(EXTRA_ARGS) - set(DEMOS)
    assert not stale, f"EXTRA_ARGS names demos that are not in demos/: {stale}"


def _cli():
    sys.path.insert(0, str(DEMO_DIR))
    try:
        import _cli
    finally:
        sys.path.remove(str(DEMO_DIR))
    return _cli


def test_cli_passes_petsc_options_and_rejects_typos(capsys):
    cli = _cli()
    p = cli.parser("A demo.\n===")
    p.add_argument("--refinement", type=int, default=3)
    p.add_argument("--cheap", action="store_true")
    args = cli.parse(p, ["--refinement", "4", "-jko_snes_monitor", "-wgf_ksp_type", "gmres",
                         "-jko_snes_rtol", "-1e-8", "--cheap", "-help", "-log_view"])
    assert args.refinement == 4 and args.cheap
    assert cli.petsc_options(["-jko_snes_monitor", "-wgf_ksp_type", "gmres", "-x_y", "-2"]) \
        == (["-jko_snes_monitor", "-wgf_ksp_type", "gmres", "-x_y", "-2"], [])
    for argv, bad, hint in ((["--refinment", "5"], "--refinment", "--refinement"),
                            (["--refinment=5"], "--refinment=5", "--refinement"),
                            (["-cheap"], "-cheap", "--cheap"),
                            (["--ref", "5"], "--ref", None),
                            (["stray"], "stray", None)):
        with pytest.raises(SystemExit) as err:
            cli.parse(p, argv)
        assert err.value.code == 2
        msg = capsys.readouterr().err
        assert repr(bad) in msg, msg
        assert (f"did you mean {hint}?" in msg) if hint else "did you mean" not in msg, msg


@pytest.mark.parametrize("name", DEMOS)
def test_demo_rejects_unknown_option(name, tmp_path):
    """Each demo parses its options with the shared helper (a typo stops it at once)."""
    cmd = [sys.executable, str(DEMO_DIR / name), "--cheap", "--output", str(tmp_path),
           "--no-such-option", "5"]
    proc = subprocess.run(cmd, env=demo_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, f"{name} accepted --no-such-option:\n{proc.stdout[-2000:]}"
    assert "unknown option '--no-such-option'" in proc.stderr, proc.stderr
    assert not list(tmp_path.rglob("*.png")), "the demo ran despite the bad option"


#: The flagship's per-step-size distances from the serial run, to compare the 2-rank
#: run with (filled by :func:`test_demo` when it runs first, as it does in file order).
FLAGSHIP_SERIAL: dict = {}


def check_implicit_bias(stdout: str) -> dict:
    r"""The flagship's measured result, from its ``--cheap`` output.

    For every case the observed slopes of :math:`|JKO - WGF|` and
    :math:`|JKO - JKO\text{-}Flow|` must be close to 1 and 2 (a missing or wrong
    Fisher correction gives 1 for both; a mass mismatch between the solvers flattens
    the second to 0), that of the corrected JKO to the WGF close to 2 where it was run
    (at least the interval), and the discretisation errors outside the comparison (slices,
    flow time step, mesh) must sit well below the smallest :math:`\eta^2` difference.
    Returns the per-step-size distances ``{case: [(|JKO-WGF|, |JKO-JKOFlow|), ...]}``.
    """
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in stdout.splitlines()
            if re.match(r"^\| (interval|disk|sphere) \| [\d.]+ \|", line)]
    assert {r[0] for r in rows} == {"interval", "disk", "sphere"}, stdout
    for case, s_wgf, s_flow, s_corr, diffs, err_N, err_dt, err_h, offset in rows:
        diff_flow, diff_corr = diffs.split(", ")
        h_flow, h_corr = err_h.split(", ")
        assert 0.8 < float(s_wgf) < 1.2, f"{case}: |JKO - WGF| slope {s_wgf}, expected 1\n{stdout}"
        assert 1.6 < float(s_flow) < 2.5, \
            f"{case}: |JKO - JKO-Flow| slope {s_flow}, expected 2\n{stdout}"
        # the corrected JKO follows the WGF to second order (run on the interval in
        # cheap mode); the WGF is that of the JKO-consistent energy
        assert s_corr != "-" or case != "interval", stdout
        if s_corr != "-":
            assert 1.6 < float(s_corr) < 2.6, \
                f"{case}: |corrected JKO - WGF| slope {s_corr}, expected 2\n{stdout}"
            assert float(h_corr) < 0.3 * float(diff_corr), \
                f"{case}: mesh change {h_corr} of |corrected - WGF| not below {diff_corr}"
        for what, err in (("slices N -> 2N", err_N), ("flow dt -> dt/2", err_dt),
                          ("mesh h -> h/2", h_flow)):
            assert float(err) < 0.3 * float(diff_flow), \
                f"{case}: discretisation ({what}) {err} not below the eta^2 difference " \
                f"{diff_flow}"
        assert float(offset) >= 0, stdout
    distances: dict = {}
    case = None
    for line in stdout.splitlines():
        if m := re.match(r"=== (\w+):", line):
            case = m.group(1)
        elif m := re.search(r"\|JKO-WGF\| = (\S+)  \|JKO-JKOFlow\| = (\S+)", line):
            distances.setdefault(case, []).append((float(m.group(1)), float(m.group(2))))
    return distances


#: The porous-medium-on-the-sphere demo's per-step energy gaps from the serial run.
PME_SPHERE = "porous_medium_sphere.py"
PME_SPHERE_SERIAL: list = []


def check_porous_medium_sphere(stdout: str) -> list:
    r"""The sphere porous-medium JKO demo's claims, from its ``--cheap`` output: every
    iterate keeps the mass and :math:`\rho \ge 0`, :math:`J` decreases and stays above
    the exact equilibrium's energy, and the :math:`L^1` distance to the exact
    equilibrium falls steadily (by more than 4x over the run).  Returns the per-step
    gaps :math:`J(\rho_k) - J(\rho_\infty)`."""
    rows = [line.split() for line in stdout.splitlines()
            if re.match(r"^\s+\d+\s+[\d.]+\s+[\d.e+-]+\s+[\d.e+-]+\s+[\d.]+\s", line)]
    assert len(rows) >= 3, stdout
    gaps = [float(r[2]) for r in rows]
    dists = [float(r[3]) for r in rows]
    min_rho = [float(r[5]) for r in rows]
    drift = [float(r[6]) for r in rows]
    assert "energy decreasing: True, above J(rho_inf): True" in stdout, stdout
    assert all(g > 0 for g in gaps) and all(np.diff(gaps) < 0), gaps
    assert all(np.diff(dists) < 0) and dists[-1] < 0.25 * dists[0], dists
    assert min(min_rho) >= 0 and max(drift) < 1e-12, stdout
    return gaps


@pytest.mark.parametrize("name", DEMOS)
def test_demo(name, tmp_path):
    stdout = run_demo(name, tmp_path / Path(name).stem)
    # the printed diagnostics must be numbers
    assert not re.search(r"\bnan\b|\binf\b", stdout, re.IGNORECASE), stdout
    if name == FLAGSHIP:
        FLAGSHIP_SERIAL.update(check_implicit_bias(stdout))
    if name == PME_SPHERE:
        PME_SPHERE_SERIAL[:] = check_porous_medium_sphere(stdout)


@pytest.mark.parametrize("name", DEMOS)
def test_demo_mpi(name, tmp_path):
    launcher = mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec found")
    stdout = run_demo(name, tmp_path / Path(name).stem, launcher=(launcher, "-n", "2"))
    assert not re.search(r"\bnan\b|\binf\b", stdout, re.IGNORECASE), stdout
    if name == PME_SPHERE:
        gaps = check_porous_medium_sphere(stdout)
        if PME_SPHERE_SERIAL:
            # the same iterates as serial, to the interior point's tolerance
            np.testing.assert_allclose(gaps, PME_SPHERE_SERIAL, rtol=1e-3,
                                       err_msg="2 ranks differ from serial")
    if name == FLAGSHIP:
        distances = check_implicit_bias(stdout)
        if FLAGSHIP_SERIAL:
            # same answers as serial, to the solvers' tolerances (4 printed digits)
            for case, rows in distances.items():
                np.testing.assert_allclose(rows, FLAGSHIP_SERIAL[case], rtol=2e-3,
                                           err_msg=f"{case}: 2 ranks differ from serial")
