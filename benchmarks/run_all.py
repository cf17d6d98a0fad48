"""Run every benchmark in this folder (``make benchmarks``); results go to results/."""
import glob
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
scripts = sorted(p for p in glob.glob(os.path.join(here, "*.py"))
                 if os.path.basename(p) != "run_all.py" and not os.path.basename(p).startswith("_"))
failed = [p for p in scripts if subprocess.call([sys.executable, p, *sys.argv[1:]]) != 0]
sys.exit(1 if failed else 0)
