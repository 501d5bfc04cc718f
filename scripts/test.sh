#!/usr/bin/env bash
# The whole test suite. Checks its prerequisites first (one message each), installs swfflow and
# its test tools into a venv and the system packages the tests use, then runs pytest; the session
# fixtures (tests/conftest.py) start a real ActiveMQ and a real Rucio server on the local
# PostgreSQL for this run and stop them after. Then the CWL v1.2 conformance suite
# ($SWFFLOW_CWL_CONFORMANCE or ../shared/cwl-v1.2) runs against its recorded floor.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -k bridge       # only pytest, with these arguments (no conformance step)
#   bash scripts/test.sh --conformance   # only the conformance step
#
# Prerequisites: Debian/Ubuntu apt with root or sudo when a system package is missing; a local
# PostgreSQL that accepts $SWFFLOW_PGUSER (postgres) without a password (trust auth) at
# $SWFFLOW_PGHOST:$SWFFLOW_PGPORT (127.0.0.1:5432); PyPI access for the venvs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SWFFLOW_VENV:-.venv}
PGHOST_=${SWFFLOW_PGHOST:-127.0.0.1} PGPORT_=${SWFFLOW_PGPORT:-5432} PGUSER_=${SWFFLOW_PGUSER:-postgres}

die() {  # what is wrong, then how to fix it
  echo "scripts/test.sh: $1" >&2
  echo "  fix: $2" >&2
  exit 1
}

# --- prerequisites ----------------------------------------------------------------------------
# system packages: graphviz (`swfflow dag --format svg`), ActiveMQ (the STOMP broker), psql,
# node (cwltool's JavaScript expressions), chromium (the monitor's browser test, driven by
# Playwright's Python package at /usr/bin/chromium: Playwright never downloads a browser here)
need=()
command -v dot >/dev/null || need+=(graphviz)
[ -e /usr/share/activemq/bin/activemq.jar ] || need+=(activemq)
command -v psql >/dev/null || need+=(postgresql-client)
command -v node >/dev/null || need+=(nodejs)
[ -x /usr/bin/chromium ] || need+=(chromium)
SUDO=()
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
    die "missing system packages (${need[*]}); installing them needs root or sudo" \
        "run as root, or install them first: sudo apt-get install -y ${need[*]}"
  SUDO=(sudo -n)
fi

postgres_ok() {  # PostgreSQL reachable, and trust auth for the user (never prompts)
  timeout 5 bash -c "exec 3<>/dev/tcp/$PGHOST_/$PGPORT_" 2>/dev/null ||
    die "no PostgreSQL answers at $PGHOST_:$PGPORT_ (Rucio's database lives there)" \
        "start it (e.g. service postgresql start), or set SWFFLOW_PGHOST / SWFFLOW_PGPORT"
  command -v psql >/dev/null || return 0  # checked again once postgresql-client is installed
  psql -w -h "$PGHOST_" -p "$PGPORT_" -U "$PGUSER_" -d postgres -Atqc 'select 1' >/dev/null 2>&1 ||
    die "PostgreSQL at $PGHOST_:$PGPORT_ does not let user $PGUSER_ in without a password" \
        "allow trust auth from this machine (pg_hba.conf: host all $PGUSER_ 127.0.0.1/32 trust, then reload), or set SWFFLOW_PGUSER"
}
postgres_ok

# --- install ----------------------------------------------------------------------------------
if [ ${#need[@]} -gt 0 ]; then
  "${SUDO[@]}" apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q "${need[@]}" >/dev/null
  postgres_ok
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -U pip >/dev/null
"$VENV/bin/pip" install -q -e '.[test]'
export PATH="$PWD/$VENV/bin:$PATH"
# panda-client resolves its cache host at import time unless this is set (reference/panda.md §8)
export PANDA_BEHIND_REAL_LB=1

# the import contracts (pyproject [tool.importlinter], docs/design.md "Rooms") before any test
lint-imports --no-cache  # its cache can miss an edit (seen with a changed config)

conformance() {
  # CWL v1.2 conformance (tags workflow, scatter, conditional, subworkflow, multiple_input,
  # step_input, required): fails if fewer pass than tests/conformance/floor.json records
  local suite status=0
  suite=$(python tests/conformance/suite.py) || status=$?
  if [ $status -eq 3 ]; then  # not there: say how to get it
    echo "scripts/test.sh: skipping the CWL v1.2 conformance step: $suite"
    return 0
  fi
  [ $status -eq 0 ] || return $status
  # a test that hangs is a failure: every CWL test has a time limit
  SWFFLOW_CWL_CONFORMANCE=$suite python -m pytest tests/conformance -n 2 -p no:cacheprovider -q \
    --timeout 300
}

if [ "${1:-}" = "--conformance" ]; then
  conformance
  exit
fi
if [ $# -gt 0 ]; then
  exec python -m pytest -n 2 "$@"
fi
python -m pytest -n 2
conformance
