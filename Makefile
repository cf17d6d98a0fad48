# jkoflow: `make demo` runs the main demo, `make test` runs lint + serial + 2-rank MPI
# tests (the docs build included), `make docs` builds the documentation.  All first
# make sure the environments exist: the compiled stack cached per machine
# (.ci/bootstrap-env.sh: the first time on a machine this builds PETSc/Firedrake,
# ~25 min; afterwards seconds) and this clone's own light environment .venv on top
# of it (.ci/clone-env.sh: jkoflow installed editable from this clone, nothing
# written into the shared stack, so clones never shadow each other).

SHELL := /bin/bash
STACK := $(shell .ci/bootstrap-env.sh --print-path)
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
NP ?= 2
MPI_TIMEOUT ?= 2400
# The main demo; the implicit-bias experiment once it exists, else the sphere heat flow.
DEMO ?= $(firstword $(wildcard demos/implicit_bias.py) demos/heat_sphere.py)
PYTEST_ARGS ?=
TESTS ?= tests
DEMO_ARGS ?=

# Run-time settings for every target: one thread per rank, and Open MPI allowed to
# run as root inside containers/CI.
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export OMPI_MCA_btl_vader_single_copy_mechanism := none
export FIREDRAKE_DISABLE_OPTIONS_LEFT := 1
export MPLBACKEND := Agg
# Compiled kernels are cached per machine next to the stack they were compiled
# against, not in each clone's .venv (Firedrake's default): a fresh clone then reuses
# every kernel whose form is unchanged (TSFC keys its cache on the form signature
# and compiler version, PyOP2 on the generated code).  With an empty cache the
# test suite spends most of its time generating kernels (the flagship demo's
# --cheap run: 585 s with empty caches, 55 s with warm ones).
KERNEL_CACHE ?= $(STACK)-kernels
export FIREDRAKE_TSFC_KERNEL_CACHE_DIR ?= $(KERNEL_CACHE)/tsfc
export PYOP2_CACHE_DIR ?= $(KERNEL_CACHE)/pyop2

.PHONY: env env-path stack-path install demo test lint test-serial test-mpi docs benchmarks \
	clean distclean help

help:
	@echo "make demo       run the main demo (builds the environment first if needed)"
	@echo "make test       lint + serial tests + 2-rank MPI tests"
	@echo "make docs       build the documentation into docs/_build/html"
	@echo "make env        build or check the cached stack and this clone's .venv"
	@echo "make -s env-path   print this clone's environment (.venv; activate it with"
	@echo "                   '. .venv/bin/activate')"
	@echo "make -s stack-path print the cached compiled stack's location"
	@echo "make benchmarks run the benchmarks in benchmarks/"

# The cached stack, then this clone's .venv with jkoflow installed editable (no
# deps, seconds the first time, nothing afterwards).
env:
	@.ci/bootstrap-env.sh
	@.ci/clone-env.sh

env-path:
	@echo $(VENV)

stack-path:
	@echo $(STACK)

install: env

demo: install
	$(PY) $(DEMO) $(DEMO_ARGS)

lint: install
	$(PY) -m flake8 solvers meshes demos tests benchmarks docs

test-serial: install
	$(PY) -m pytest -m "not parallel" $(PYTEST_ARGS) $(TESTS)

# A rank that fails alone aborts the job (tests/conftest.py); the timeout is the
# last guard against a hang.
test-mpi: install
	timeout -k 30 $(MPI_TIMEOUT) mpiexec -n $(NP) $(PY) -m pytest -m "parallel[$(NP)]" $(PYTEST_ARGS) $(TESTS)

test: lint test-serial test-mpi

# Warnings are errors; tests/test_docs.py runs the same build in `make test-serial`.
docs: install
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

benchmarks: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf out build *.egg-info .pytest_cache docs/_build docs/demos/generated \
	    docs/api/generated

# Also forget this clone's environment (the cached stack stays).
distclean: clean
	rm -rf .venv .venv.lock
