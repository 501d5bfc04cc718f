#!/usr/bin/env bash
# The whole test suite. Installs swfflow and its test tools into a venv, installs the system
# packages the tests use, then runs pytest; the session fixtures (tests/conftest.py) start a real
# ActiveMQ and a real Rucio server on the local PostgreSQL for this run and stop them after.
# Then the CWL v1.2 conformance suite (../shared/cwl-v1.2) runs against its recorded floor.
#
#   bash scripts/test.sh              # everything
#   bash scripts/test.sh -k bridge    # only pytest, with these arguments (no conformance step)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SWFFLOW_VENV:-.venv}

# system packages: graphviz (`swfflow dag --format svg`), ActiveMQ (the STOMP broker), psql,
# node (cwltool's JavaScript expressions)
need=()
command -v dot >/dev/null || need+=(graphviz)
[ -e /usr/share/activemq/bin/activemq.jar ] || need+=(activemq)
command -v psql >/dev/null || need+=(postgresql-client)
command -v node >/dev/null || need+=(nodejs)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -U pip >/dev/null
"$VENV/bin/pip" install -q -e '.[test]'
export PATH="$PWD/$VENV/bin:$PATH"
# panda-client resolves its cache host at import time unless this is set (reference/panda.md §8)
export PANDA_BEHIND_REAL_LB=1

# the import contracts (pyproject [tool.importlinter], docs/design.md "Rooms") before any test
lint-imports --no-cache  # its cache can miss an edit (seen with a changed config)

if [ $# -gt 0 ]; then
  exec python -m pytest -n 2 "$@"
fi
python -m pytest -n 2
# CWL v1.2 conformance (tags workflow, scatter, conditional, subworkflow, multiple_input,
# step_input, required): fails if fewer pass than tests/conformance/floor.json records
python -m pytest tests/conformance -n 2 -p no:cacheprovider -q
