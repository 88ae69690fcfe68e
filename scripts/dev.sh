#!/usr/bin/env bash
# kaquan developer entry point.
#   bash scripts/dev.sh demo   - install, migrate, create demo data, serve the console (embedded mode)
#   bash scripts/dev.sh test   - install with test extras and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.kaquan-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  for pkg in examples/*/; do
    [ -f "$pkg/pyproject.toml" ] && .venv/bin/python -m pip install -q -e "$pkg"
  done
  touch "$stamp"
fi
cmd=${1:-help}
shift || true
case "$cmd" in
  demo)
    .venv/bin/kaquan migrate
    .venv/bin/kaquan demo
    exec .venv/bin/kaquan serve "$@"
    ;;
  test)
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test [args]" >&2
    exit 2
    ;;
esac
