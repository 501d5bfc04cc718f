"""One job run as a pilot runs it: its command line, in a directory of its own.

What the local executor's process-pool worker does for a job of a rehearsal: a fresh job
directory, the job's input files linked in under their catalog names (the pilot downloads
them there), the sandbox (the workflow folder with ``plan.json``) linked in as its entries,
the command line run as a subprocess (never through a shell) with a time limit, and the job
report (``swfflow-job.json``) read back. Plain dict in, plain dict out, like
:mod:`swfflow.runtime.jobrun`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# what `swfflow job` writes (swfflow.worker.REPORT_NAME, LOG_NAME)
REPORT_NAME, LOG_NAME = "swfflow-job.json", "swfflow-job.log"
STDOUT_NAME = "payload.stdout"  # the pilot's name for the payload's output


def run_command_job(request: dict[str, Any]) -> dict[str, Any]:
    """``request``: ``argv``, ``jobdir``, ``sandbox`` (a folder whose entries are linked into
    the job directory), ``inputs`` ({name: local path}), ``timeout_s``."""
    jobdir = Path(request["jobdir"])
    shutil.rmtree(jobdir, ignore_errors=True)  # a retried job starts clean, as on a new node
    jobdir.mkdir(parents=True)
    for entry in Path(request["sandbox"]).iterdir():
        (jobdir / entry.name).symlink_to(entry.resolve())
    for name, path in request["inputs"].items():
        _stage_in(Path(path), jobdir / name)
    argv = list(request["argv"])
    # the job's `swfflow` is this installation's, as the pilot's would be the sandbox's
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    try:
        with open(jobdir / STDOUT_NAME, "wb") as out:
            code = subprocess.run(argv, cwd=jobdir, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, check=False,
                                  timeout=request["timeout_s"]).returncode
        problem = None
    except subprocess.TimeoutExpired:
        code, problem = None, f"the job ran over its walltime of {request['timeout_s']} s"
    except OSError as exc:
        code, problem = None, f"cannot run {argv[0]}: {exc}"
    report = _report(jobdir)
    ok = code == 0 and report is not None and report.get("exit_code") == 0
    failed_as = (report or {}).get("status")
    return {"status": "success" if ok else (
                failed_as if failed_as not in (None, "success") else "permanentFail"),
            "exit_code": code, "command": argv, "container": None,
            "log": "\n".join(filter(None, [problem, _text(jobdir / LOG_NAME),
                                            _text(jobdir / STDOUT_NAME)])),
            "final": False, "report": report, "jobdir": str(jobdir), "fallbacks": []}


def _stage_in(source: Path, target: Path) -> None:
    """The file under the job's name for it, as a download would leave it: a hard link (a
    copy across file systems), not a symlink that would give the tool the source's name."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def _report(jobdir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((jobdir / REPORT_NAME).read_text())
    except (OSError, ValueError):
        return None
