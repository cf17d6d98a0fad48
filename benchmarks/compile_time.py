r"""First-use kernel compile time of a JKO step against the number of slices N.

Every slice of the dynamic formulation is a separate field of one mixed function space.
Written as one mixed form, the residual and Jacobian had :math:`O(N)` nonzero blocks,
each its own kernel, and the compile time grew like :math:`N^{1.6}`.  The step is now
assembled field by field (:mod:`jkoflow.solvers.slice_assembly`): interior slices
share their kernels and the slice length is a ``Constant``, so the number of kernels
does not depend on N.  This script measures what a user pays the first time, with
empty kernel caches.

For each variant and N a fresh process, whose TSFC and PyOP2 caches point into an
empty temporary directory, builds a :class:`~jkoflow.solvers.JKOStep` (1D, 50 cells,
P1) and solves one step twice:

* ``log``: KL with :math:`V = x^2/2` from a Gaussian bump, log unknowns;
* ``density``: the porous medium energy (:math:`m = 2`) from the same bump, density
  unknowns (the interior point: three fields per slice).

Columns: *first solve*, wall seconds of the construction plus the first solve (kernel
generation and compilation, symbolic factorisation, the solve); *second solve*, the
same step again (the same work without compilation) and its Newton iterations;
*compile* = first - second; the number of kernel files the caches hold afterwards.

Run: ``"$(make -s env-path)/bin/python" benchmarks/compile_time.py`` (``--quick``:
N = 2, 4).  Results: ``benchmarks/results/compile_time.md``.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import write_table  # noqa: E402


def worker(variant: str, N: int):
    """Build and solve twice; print one JSON line."""
    t0 = time.perf_counter()
    import ufl
    from firedrake import Function, FunctionSpace
    from jkoflow.meshes import interval
    from jkoflow.solvers import JKOStep, kl, porous_medium
    t_import = time.perf_counter() - t0
    geom = interval(50, -3.0, 3.0)
    x = geom.x[0]
    V = FunctionSpace(geom.mesh, "CG", 1)
    rho0 = Function(V).interpolate(ufl.exp(-(x - 0.5) ** 2))
    t0 = time.perf_counter()
    if variant == "log":
        step = JKOStep(kl(geom, x ** 2 / 2), 0.1, N)
    else:
        step = JKOStep(porous_medium(geom, 2.0), 0.05, N, variable="density")
    step.solve(rho0)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = step.solve(rho0, warm_start=False)
    second = time.perf_counter() - t0
    print("RESULT " + json.dumps({"N": N, "import": t_import, "first": first,
                                  "second": second, "its": res.snes_iterations}), flush=True)


def launch(variant: str, N: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, FIREDRAKE_TSFC_KERNEL_CACHE_DIR=os.path.join(cache, "tsfc"),
                   PYOP2_CACHE_DIR=os.path.join(cache, "pyop2"), OMP_NUM_THREADS="1")
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", variant,
                              str(N)], env=env, capture_output=True, text=True,
                             check=True).stdout
        files = sum(len(f) for _, _, f in os.walk(cache))
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return {**json.loads(line[len("RESULT "):]), "files": files}


def main(quick: bool):
    lines = ["# First-use kernel compile time of a JKO step against N", "",
             "1D, [-3, 3], 50 cells, P1; log: KL, eta = 0.1; density: porous medium m = 2, "
             "eta = 0.05 (interior point).  One process per row with empty TSFC and PyOP2 "
             "caches; wall seconds.  compile = first solve - second solve (the same step "
             "again).", "",
             "| unknowns | N | fields | first solve (s) | second solve (s) | Newton its "
             "| compile (s) | cached kernel files |",
             "|---|---|---|---|---|---|---|---|"]
    for variant in ("log", "density"):
        fields = 2 if variant == "log" else 3
        for N in ((2, 4) if quick else (4, 8, 16, 32)):
            r = launch(variant, N)
            comp = r["first"] - r["second"]
            lines.append(f"| {variant} | {N} | {fields * N} | {r['first']:.1f} | "
                         f"{r['second']:.2f} | {r['its']} | {comp:.1f} | {r['files']} |")
            print(lines[-1], flush=True)
    write_table("compile_time", lines, quick)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--quick", action="store_true", help="N = 2, 4")
        main(parser.parse_args().quick)
