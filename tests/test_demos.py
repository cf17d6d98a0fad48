"""Run every demo in ``--cheap`` mode, serially and on 2 MPI ranks.

Each demo is run as a subprocess with this interpreter (``sys.executable``) into a
temporary output directory; the test checks the exit code and that a PNG figure and
at least one ``.pvd`` file were written.  The 2-rank runs are launched by
``mpiexec -n 2`` from an ordinary (serial) test, so they run under
``make test-serial``.  A demo on disk that is not listed in :data:`DEMOS` fails
:func:`test_every_demo_is_listed` (modules starting with ``_`` are helpers).
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

#: The gallery, explicitly (the flagship ``implicit_bias.py`` is added when it exists).
DEMOS = ["heat_sphere.py", "fokker_planck_torus.py", "porous_medium_disk.py",
         "fokker_planck_chart.py", "geodesic_sphere.py"]
FLAGSHIP = "implicit_bias.py"
LISTED = DEMOS + ([FLAGSHIP] if (DEMO_DIR / FLAGSHIP).exists() else [])

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
    cmd = [*launcher, sys.executable, str(DEMO_DIR / name), "--cheap", "--output", str(out)]
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


def test_every_demo_is_listed():
    on_disk = {p.name for p in DEMO_DIR.glob("*.py") if not p.name.startswith("_")}
    unlisted = on_disk - set(DEMOS) - {FLAGSHIP}
    assert not unlisted, f"demos not run by tests/test_demos.py (add them to DEMOS): {unlisted}"
    missing = set(DEMOS) - on_disk
    assert not missing, f"listed demos missing from demos/: {missing}"


#: The flagship's per-step-size distances from the serial run, to compare the 2-rank
#: run with (filled by :func:`test_demo` when it runs first, as it does in file order).
FLAGSHIP_SERIAL: dict = {}


def check_implicit_bias(stdout: str) -> dict:
    r"""The flagship's measured result, from its ``--cheap`` output.

    For every case the observed slopes of :math:`|JKO - WGF|` and
    :math:`|JKO - JKO\text{-}Flow|` must be close to 1 and 2 (a missing or wrong
    Fisher correction gives 1 for both; a mass mismatch between the solvers flattens
    the second to 0), and the discretisation errors outside the comparison (slices,
    flow time step, mesh) must sit well below the smallest :math:`\eta^2` difference.
    Returns the per-step-size distances ``{case: [(|JKO-WGF|, |JKO-JKOFlow|), ...]}``.
    """
    rows = re.findall(r"^\| (\w+) \| ([\d.]+) \| ([\d.]+) \| ([\d.e+-]+) \| ([\d.e+-]+) \| "
                      r"([\d.e+-]+) \| ([\d.e+-]+) \|$", stdout, re.MULTILINE)
    assert {r[0] for r in rows} == {"interval", "disk", "sphere"}, stdout
    for case, s_wgf, s_flow, diff, *disc in rows:
        assert 0.8 < float(s_wgf) < 1.2, f"{case}: |JKO - WGF| slope {s_wgf}, expected 1\n{stdout}"
        assert 1.6 < float(s_flow) < 2.5, \
            f"{case}: |JKO - JKO-Flow| slope {s_flow}, expected 2\n{stdout}"
        for what, err in zip(("slices N -> 2N", "flow dt -> dt/2", "mesh h -> h/2"), disc):
            assert float(err) < 0.3 * float(diff), \
                f"{case}: discretisation ({what}) {err} not below the eta^2 difference {diff}"
    distances: dict = {}
    case = None
    for line in stdout.splitlines():
        if m := re.match(r"=== (\w+):", line):
            case = m.group(1)
        elif m := re.search(r"\|JKO-WGF\| = (\S+)  \|JKO-JKOFlow\| = (\S+)", line):
            distances.setdefault(case, []).append((float(m.group(1)), float(m.group(2))))
    return distances


@pytest.mark.parametrize("name", LISTED)
def test_demo(name, tmp_path):
    stdout = run_demo(name, tmp_path / Path(name).stem)
    # the printed diagnostics must be numbers
    assert not re.search(r"\bnan\b|\binf\b", stdout, re.IGNORECASE), stdout
    if name == FLAGSHIP:
        FLAGSHIP_SERIAL.update(check_implicit_bias(stdout))


@pytest.mark.parametrize("name", LISTED)
def test_demo_mpi(name, tmp_path):
    launcher = mpiexec()
    if launcher is None:
        pytest.skip("no mpiexec found")
    stdout = run_demo(name, tmp_path / Path(name).stem, launcher=(launcher, "-n", "2"))
    assert not re.search(r"\bnan\b|\binf\b", stdout, re.IGNORECASE), stdout
    if name == FLAGSHIP:
        distances = check_implicit_bias(stdout)
        if FLAGSHIP_SERIAL:
            # same answers as serial, to the solvers' tolerances (4 printed digits)
            for case, rows in distances.items():
                np.testing.assert_allclose(rows, FLAGSHIP_SERIAL[case], rtol=2e-3,
                                           err_msg=f"{case}: 2 ranks differ from serial")
