"""The import contracts of docs/design.md ("Rooms"), checked by import-linter: a new arrow that
breaks one fails the suite (scripts/test.sh also runs ``lint-imports`` before pytest)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> list[str]:
    found = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return [found, "--no-cache"]


def test_every_import_contract_is_kept():
    result = subprocess.run(_lint_imports(), cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_broken_contract_fails(tmp_path):
    """The check bites: a configuration whose contract the code breaks is reported broken."""
    config = tmp_path / "contracts.toml"
    config.write_text('[tool.importlinter]\nroot_packages = ["swfflow"]\n\n'
                      '[[tool.importlinter.contracts]]\nname = "planted"\ntype = "forbidden"\n'
                      'source_modules = ["swfflow.assemble"]\n'
                      'forbidden_modules = ["swfflow.backends"]\n')
    result = subprocess.run([*_lint_imports(), str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "planted BROKEN" in result.stdout
