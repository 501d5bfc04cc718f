#!/usr/bin/env bash
# The whole test suite: installs swfflow and its test tools into a venv, starts the services the
# tests use, runs pytest. Usage: bash scripts/test.sh [pytest args…]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SWFFLOW_VENV:-.venv}

# system packages the tests use (graphviz: `swfflow dag --format svg`)
need=()
command -v dot >/dev/null || need+=(graphviz)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -U pip >/dev/null
"$VENV/bin/pip" install -q -e '.[test]'
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest -n 2 "$@"
