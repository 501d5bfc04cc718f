"""scripts/test.sh states its prerequisites up front, one clear message each, and the CWL
conformance step finds its suite or says how to get it (never a traceback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_SH = REPO / "scripts" / "test.sh"


def run_test_sh(*args: str, env: dict[str, str], timeout: float = 120
            ) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(TEST_SH), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe is


def test_missing_packages_without_root_or_sudo_stop_with_one_message(tmp_path):
    """Not root, no sudo, graphviz/psql/node not on PATH: a message, nothing installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to("/usr/bin/dirname")
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "id").chmod(0o755)
    result = run_test_sh(env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, timeout=30)
    assert result.returncode == 1
    assert "missing system packages (graphviz" in result.stderr
    assert "needs root or sudo" in result.stderr and "fix: run as root" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_unreachable_postgresql_stops_before_installing_anything(tmp_path):
    port = closed_port()
    result = run_test_sh(env={**os.environ, "SWFFLOW_PGPORT": str(port), "SWFFLOW_VENV":
                          str(tmp_path / "never-made")}, timeout=30)
    assert result.returncode == 1
    assert f"no PostgreSQL answers at 127.0.0.1:{port}" in result.stderr
    assert "SWFFLOW_PGPORT" in result.stderr
    assert not (tmp_path / "never-made").exists()


@pytest.mark.services
def test_postgresql_without_trust_auth_for_the_user_stops(tmp_path):
    result = run_test_sh(env={**os.environ, "SWFFLOW_PGUSER": "swfflow_no_such_role",
                          "SWFFLOW_VENV": str(tmp_path / "never-made")}, timeout=30)
    assert result.returncode == 1
    assert "does not let user swfflow_no_such_role in without a password" in result.stderr
    assert "trust" in result.stderr and not (tmp_path / "never-made").exists()


@pytest.mark.slow
def test_conformance_step_without_its_suite_is_skipped_saying_how_to_get_it():
    result = run_test_sh("--conformance", env={**os.environ, "SWFFLOW_CWL_CONFORMANCE":
                                           "/nonexistent/cwl-v1.2"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipping the CWL v1.2 conformance step: no CWL v1.2 conformance suite at " \
           "/nonexistent/cwl-v1.2" in result.stdout
    assert "git clone https://github.com/common-workflow-language/cwl-v1.2" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_conformance_pytest_without_its_suite_is_a_usage_error_not_a_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/conformance", "-p", "no:cacheprovider", "-q"],
        cwd=REPO, env={**os.environ, "SWFFLOW_CWL_CONFORMANCE": "/nonexistent/cwl-v1.2"},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "no CWL v1.2 conformance suite at /nonexistent/cwl-v1.2" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_suite_is_found_where_the_variable_says(tmp_path):
    (tmp_path / "conformance_tests.yaml").write_text("[]\n")
    found = subprocess.run([sys.executable, str(REPO / "tests/conformance/suite.py")],
                           env={**os.environ, "SWFFLOW_CWL_CONFORMANCE": str(tmp_path)},
                           capture_output=True, text=True, check=True)
    assert found.stdout.strip() == str(tmp_path.resolve())
