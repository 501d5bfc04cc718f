"""The README's first command ends with a "next:" line a first-time user can run as printed.

The first command calls `.venv/bin/swfflow compile examples/calib.cwl` before any venv is
activated, so the next step names the program by the path it was called with (`swfflow` is not
on PATH yet), and the example's inputs file beside the workflow (without it the run has no STF
files). The test runs the printed command itself.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "swfflow"  # what `pip install -e .` put into the venv


def first_command(tmp_path: Path, *args: str, path_env: str) -> str:
    done = subprocess.run([str(SCRIPT), "compile", *args], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PATH": path_env}, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    (line,) = [row for row in done.stdout.splitlines() if row.startswith("next: ")]
    return line.removeprefix("next: ").split("   (")[0]


def test_the_next_line_runs_as_printed_without_an_activated_venv(tmp_path):
    assert SCRIPT.is_file(), "the tests run from a venv with swfflow installed (pip install -e .)"
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    bare = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if Path(p).resolve() != SCRIPT.parent.resolve())
    command = first_command(tmp_path, "examples/calib.cwl", path_env=bare)
    argv = shlex.split(command)
    assert argv[:2] == [str(SCRIPT), "run"]
    assert argv[2:] == ["examples/calib.cwl", "examples/calib-inputs.yml", "--outdir", "out"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "PATH": bare}, check=False)
    assert done.returncode == 0, done.stderr
    constants = json.loads(done.stdout)["constants"]  # the calibration fit's result
    assert Path(constants["location"].removeprefix("file://")).is_relative_to(tmp_path / "out")
    assert json.loads(Path(constants["location"].removeprefix("file://")).read_text())


def test_the_next_line_says_swfflow_once_it_is_on_path(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    on_path = os.pathsep.join([str(SCRIPT.parent), os.environ["PATH"]])
    command = first_command(tmp_path, "examples/calib.cwl", path_env=on_path)
    assert command == "swfflow run examples/calib.cwl examples/calib-inputs.yml --outdir out"
    snake = first_command(tmp_path, str(REPO / "Snakefile"), "--config",
                          f"stf_dir={REPO / 'examples/data'}", path_env=on_path)
    assert snake.startswith("swfflow profile install && snakemake -s ")
    bare = first_command(tmp_path, str(REPO / "Snakefile"), "--config",
                         f"stf_dir={REPO / 'examples/data'}", path_env="/usr/bin:/bin")
    assert bare.startswith(f"{SCRIPT} profile install && {SCRIPT.parent}/snakemake -s ")
    assert (SCRIPT.parent / "snakemake").is_file()
