# jkoflow: `make demo` runs the main demo, `make test` runs lint + serial + 2-rank MPI
# tests.  Both first make sure the environment exists (.ci/bootstrap-env.sh): the
# first time on a machine this builds PETSc/Firedrake (~20 min); afterwards seconds.

SHELL := /bin/bash
ENV := $(shell .ci/bootstrap-env.sh --print-path)
PY := $(ENV)/bin/python
NP ?= 2
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

.PHONY: env env-path install demo test lint test-serial test-mpi benchmarks clean help

help:
	@echo "make demo       run the main demo (builds the environment first if needed)"
	@echo "make test       lint + serial tests + 2-rank MPI tests"
	@echo "make env        build or check the cached environment"
	@echo "make -s env-path   print the environment's location"
	@echo "make benchmarks run the benchmarks in benchmarks/"

env:
	@.ci/bootstrap-env.sh

env-path:
	@echo $(ENV)

# jkoflow itself is installed editable (no deps, seconds) into the cached
# environment, pointing at this clone.
install: env
	@$(PY) -m pip install --no-input --disable-pip-version-check -q --no-deps \
	    --no-build-isolation -e . >/dev/null

demo: install
	$(PY) $(DEMO) $(DEMO_ARGS)

lint: install
	$(PY) -m flake8 solvers meshes demos tests benchmarks

test-serial: install
	$(PY) -m pytest -m "not parallel" $(PYTEST_ARGS) $(TESTS)

test-mpi: install
	mpiexec -n $(NP) $(PY) -m pytest -m "parallel[$(NP)]" $(PYTEST_ARGS) $(TESTS)

test: lint test-serial test-mpi

benchmarks: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf out build *.egg-info .pytest_cache
