#!/usr/bin/env bash
# Give this clone its own light virtual environment, <clone>/.venv, on top of the
# cached compiled stack (PETSc, Firedrake, ...; built by .ci/bootstrap-env.sh).
#
# Usage:  .ci/clone-env.sh [--print-path]
#
# .venv is a plain `python -m venv` of the stack's base interpreter, without pip.
# One .pth file in its site-packages puts the stack's site-packages after its own,
# so every compiled package (and pip, setuptools) is shared and nothing is copied;
# jkoflow itself is installed editable into .venv only, pointing at THIS clone.
# The cached stack is never written to, so two clones never shadow each other, and
# a jkoflow left in the stack by an older Makefile is shadowed by this clone's.
# Seconds the first time, a few stat() calls afterwards.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$here/.venv
if [[ "${1:-}" == "--print-path" ]]; then echo "$venv"; exit 0; fi

stack=$("$here/.ci/bootstrap-env.sh" --print-path)
if [[ ! -f "$stack/.jkoflow-complete" ]]; then
  echo "clone-env: the cached stack $stack is not built; run .ci/bootstrap-env.sh (make env)" >&2
  exit 1
fi

# The stack's base interpreter and site-packages (a venv of its own).
read -r base stack_site < <("$stack/bin/python" -c \
  'import sys, sysconfig; print(sys._base_executable, sysconfig.get_paths()["purelib"])')
stamp=$venv/.jkoflow-clone-env
want="stack=$stack base=$base"

fresh() {  # is .venv up to date: same stack and interpreter, installed after the metadata?
  [[ -x "$venv/bin/python" && -f "$stamp" ]] || return 1
  [[ "$(head -n1 "$stamp")" == "$want" ]] || return 1
  [[ "$stamp" -nt "$here/setup.cfg" && "$stamp" -nt "$here/pyproject.toml" ]] || return 1
}
fresh && exit 0

exec 9>"$here/.venv.lock"
flock 9          # two `make` runs in this clone at once: one builds, the other waits
fresh && exit 0

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(head -n1 "$stamp")" == "$want" ]]; then
  echo "clone-env: reinstalling jkoflow into $venv (package metadata changed)"
else
  echo "clone-env: creating $venv on top of $stack"
  rm -rf "$venv"
  "$base" -m venv --without-pip "$venv"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The name sorts after setuptools' "__editable__.*.pth": site.py reads .pth files in
# sorted order, so this clone's editable finder is registered before anything the
# stack's own .pth files register (e.g. a jkoflow installed there by an older make).
cat >"$site/zz-jkoflow-stack.pth" <<EOF
import site; site.addsitedir("$stack_site")
EOF

# pip and setuptools come from the stack; they install into .venv (sys.prefix).
# --no-deps: the stack provides the dependencies; never resolve Firedrake from PyPI.
log=$venv/install.log
if ! "$venv/bin/python" -m pip install --no-input --disable-pip-version-check --no-deps \
     --no-build-isolation -e "$here" >"$log" 2>&1; then
  echo "clone-env: installing jkoflow into $venv failed; log $log:" >&2
  tail -n 30 "$log" >&2; exit 1
fi

# Check without importing Firedrake (seconds): jkoflow resolves to this clone.
if ! where=$(cd / && "$venv/bin/python" -c '
import importlib.util as u
print(u.find_spec("jkoflow.solvers").origin, u.find_spec("jkoflow.meshes").origin)'); then
  echo "clone-env: jkoflow is not importable from $venv" >&2; exit 1
fi
for w in $where; do
  case $w in
    "$here"/*) ;;
    *) echo "clone-env: $venv imports jkoflow from $w, not from this clone ($here)" >&2
       exit 1 ;;
  esac
done
printf '%s\ninstalled %s\n' "$want" "$(date -u +%FT%TZ)" >"$stamp"
echo "clone-env: ready: $venv (jkoflow from $here)"
