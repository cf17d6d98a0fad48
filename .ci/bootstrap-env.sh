#!/usr/bin/env bash
# Build (or reuse) the jkoflow environment: Debian packages, PETSc from its PyPI
# sdist against Debian's MPI/BLAS/MUMPS/HDF5, petsc4py/mpi4py/h5py against the
# system MPI, Firedrake from PyPI, and the project's Python dependencies.
#
# Usage:  .ci/bootstrap-env.sh [--print-path] [--force]
#
# The environment is a virtualenv cached per machine *outside* the clone, in
#     ${JKOFLOW_ENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/jkoflow}/env-<key>
# where <key> hashes environment.yml, the PETSc configure options and the Debian
# package list, so a fresh clone with the same pins reuses it in seconds and a
# change of pins builds a new one.  Nothing is downloaded from outside PyPI and
# Debian (no PETSc --download-* options).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
envyml="$here/environment.yml"

# --- what the environment is made of ---------------------------------------
debian_packages=(
  build-essential gfortran cmake pkg-config bison flex patchelf
  openmpi-bin libopenmpi-dev libopenblas-dev liblapack-dev
  libhdf5-openmpi-dev libmumps-dev libmetis-dev libptscotch-dev
  libscalapack-openmpi-dev libsuitesparse-dev zlib1g-dev
)

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
L=/usr/lib/$multiarch
H5=$L/hdf5/openmpi
# Library lists are given as [a,b,c] (no spaces): the petsc sdist joins the
# options with spaces before calling ./configure, so quoted values would split.
petsc_configure_options=(
  --with-cuda=0 --with-x=0 --with-fortran-bindings=0 --with-debugging=0
  --COPTFLAGS=-O2 --CXXOPTFLAGS=-O2 --FOPTFLAGS=-O2
  "--with-blaslapack-lib=[$L/libopenblas.so]"
  --with-hdf5=1 --with-hdf5-include=/usr/include/hdf5/openmpi
  "--with-hdf5-lib=[$H5/libhdf5_hl.so,$H5/libhdf5.so]"
  --with-metis=1 --with-metis-include=/usr/include "--with-metis-lib=[$L/libmetis.so]"
  --with-ptscotch=1 --with-ptscotch-include=/usr/include/scotch
  "--with-ptscotch-lib=[$L/libptscotch.so,$L/libptscotcherr.so,$L/libscotch.so,$L/libscotcherr.so]"
  --with-scalapack=1 "--with-scalapack-lib=[$L/libscalapack-openmpi.so]"
  --with-mumps=1 --with-mumps-include=/usr/include
  "--with-mumps-lib=[$L/libdmumps.so,$L/libmumps_common.so,$L/libpord.so]"
  --with-suitesparse=1 --with-suitesparse-include=/usr/include/suitesparse
  "--with-suitesparse-lib=[$L/libspqr.so,$L/libumfpack.so,$L/libklu.so,$L/libcholmod.so,$L/libbtf.so,$L/libccolamd.so,$L/libcolamd.so,$L/libcamd.so,$L/libamd.so,$L/libsuitesparseconfig.so]"
  --with-zlib=1
)

# --- pins from environment.yml (its pip: section) ---------------------------
pins=$(sed -n 's/^[[:space:]]*-[[:space:]]*\([A-Za-z0-9_.-]*==[^[:space:]#]*\).*/\1/p' "$envyml")
pin() {  # pin NAME -> NAME==VERSION from environment.yml
  local p
  p=$(grep -i "^$1==" <<<"$pins") || { echo "bootstrap: $1 is not pinned in environment.yml" >&2; exit 1; }
  echo "$p"
}

# The compiled stack (built from source, slow) and the light Python layer (wheels,
# seconds): only the former keys the cached environment; the latter is synced
# whenever its pins change.
stack_re='^(pip|setuptools|wheel|cython|numpy|pybind11|pkgconfig|scikit-build-core|petsc|mpi4py|petsc4py|h5py|firedrake)=='
stack_pins=$(grep -iE "$stack_re" <<<"$pins")
light_pins=$(grep -viE "$stack_re" <<<"$pins")
key=$( { printf '%s\n' $stack_pins "${petsc_configure_options[@]}" "${debian_packages[@]}"; } \
       | sha256sum | cut -c1-12)
light_key=$(printf '%s\n' $light_pins | sha256sum | cut -c1-12)
root=${JKOFLOW_ENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/jkoflow}
env=$root/env-$key
marker=$env/.jkoflow-complete
light_marker=$env/.jkoflow-python-$light_key
log=$root/logs/build-$key.log

if [[ "${1:-}" == "--print-path" ]]; then echo "$env"; exit 0; fi
force=0; [[ "${1:-}" == "--force" ]] && force=1

smoke() {  # a quick check that the cached environment still works
  OMP_NUM_THREADS=1 "$env/bin/python" -c "import firedrake, h5py" >/dev/null 2>&1
}
sync_light() {  # Firedrake's dependencies and the light Python layer: cheap, redone
  # whenever the light pins change
  [[ -f "$light_marker" ]] && return 0
  constraints=$root/constraints-$key-$light_key.txt
  printf '%s\n' $pins >"$constraints"
  echo "bootstrap: syncing the Python dependencies (pins changed)"
  if ! "$env/bin/python" -m pip install --no-input --disable-pip-version-check -q \
       -c "$constraints" "$(pin firedrake)" $light_pins >>"$log" 2>&1; then
    echo "bootstrap: installing the Python dependencies failed. Log: $log ; its tail:" >&2
    tail -n 30 "$log" >&2; exit 1
  fi
  rm -f "$env"/.jkoflow-python-*
  "$env/bin/python" -m pip freeze >"$env/pip-freeze.txt" 2>/dev/null || true
  touch "$light_marker"
}

mkdir -p "$root/logs"
exec 9>"$root/.lock-$key"
flock 9   # two `make` runs at once wait for one another instead of racing

if [[ $force == 0 && -f "$marker" ]]; then
  if smoke; then sync_light; exit 0; fi
  echo "bootstrap: the cached environment $env is broken (imports fail); rebuilding it." >&2
fi

# --- Debian packages --------------------------------------------------------
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ $(id -u) != 0 ]]; then
    echo "bootstrap: missing Debian packages: ${missing[*]}" >&2
    echo "bootstrap: this needs root rights; run, then retry:" >&2
    echo "    sudo sh -c '$cmd'" >&2
    exit 1
  fi
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  (export DEBIAN_FRONTEND=noninteractive; sh -c "$cmd") >"$root/logs/apt-$key.log" 2>&1 || {
    echo "bootstrap: apt-get failed; log: $root/logs/apt-$key.log" >&2
    tail -n 30 "$root/logs/apt-$key.log" >&2; exit 1; }
fi

# --- the Python environment -------------------------------------------------
python=${JKOFLOW_PYTHON:-python3}
rm -rf "$env"
echo "bootstrap: building the environment in $env (about 20 min the first time)"
echo "bootstrap: log: $log"
: >"$log"
t0=$(date +%s)
step() {  # step "what" cmd... : run a build step, logging, failing loudly
  local what=$1; shift
  local s=$(date +%s)
  printf 'bootstrap: %-40s' "$what" ; echo "=== $what: $*" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    echo "FAILED"
    echo "bootstrap: '$what' failed. Full log: $log ; its tail:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  echo "$(( $(date +%s) - s )) s"
}
export MPICC=mpicc MPICXX=mpicxx MPIFORT=mpif90 CC=mpicc CXX=mpicxx
export OMP_NUM_THREADS=1
pip_=("$env/bin/python" -m pip install --no-input --disable-pip-version-check)
# Everything compiled against this environment's PETSc bypasses pip's wheel cache:
# a cached wheel would be linked against another environment's PETSc.
pipc_=("${pip_[@]}" --no-cache-dir)

step "virtualenv" "$python" -m venv "$env"
step "build tools" "${pip_[@]}" "$(pin pip)" "$(pin setuptools)" "$(pin wheel)" \
  "$(pin cython)" "$(pin numpy)" "$(pin pybind11)" "$(pin pkgconfig)" "$(pin scikit-build-core)"
step "PETSc (from the PyPI sdist, ~7 min)" env PETSC_CONFIGURE_OPTIONS="${petsc_configure_options[*]}" \
  "${pipc_[@]}" --no-build-isolation --no-binary petsc "$(pin petsc)"
petsc_dir=$("$env/bin/python" -m petsc --prefix)
export PETSC_DIR=$petsc_dir PETSC_ARCH=
step "mpi4py (system MPI)" "${pipc_[@]}" --no-build-isolation --no-binary mpi4py "$(pin mpi4py)"
step "petsc4py" "${pipc_[@]}" --no-build-isolation --no-binary petsc4py "$(pin petsc4py)"
step "h5py (parallel HDF5)" env HDF5_MPI=ON HDF5_INCLUDEDIR=/usr/include/hdf5/openmpi HDF5_LIBDIR="$H5" \
  "${pipc_[@]}" --no-build-isolation --no-binary h5py "$(pin h5py)"
# Firedrake's build requirements first, so that Firedrake itself builds without
# isolation against the petsc4py/mpi4py above (an isolated build would compile
# mpi4py again); libsupermesh builds from its sdist with Debian's gfortran.
step "Firedrake build requirements" "${pip_[@]}" petsctools firedrake-rtree libsupermesh rtree
# Only Firedrake itself is built without isolation; its pure-Python dependencies
# (some need other build backends, e.g. hatchling) resolve normally, and the
# constraints keep pip from touching the MPI/PETSc stack built above.
step "Firedrake (no build isolation)" "${pipc_[@]}" --no-build-isolation --no-deps "$(pin firedrake)"
step "Python dependencies" sync_light
step "smoke test (import firedrake)" smoke
echo "built $(date -u +%FT%TZ) in $(( $(date +%s) - t0 )) s from environment.yml key $key" >"$marker"
echo "bootstrap: environment ready in $(( $(date +%s) - t0 )) s: $env"
