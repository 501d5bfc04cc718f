"""A warning is printed once, however many worker processes see its cause.

The local executor runs jobs in a pool of spawned processes. Each used to decide and print
"running without container" itself (logging's last-resort handler in every worker), so the
bridge and `swfflow run` printed it once per worker. Now the workers report it with the job's
result and the driver's process warns once, through its own logging set-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCATTER_WITH_IMAGE = """\
cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs: {n: "int[]"}
outputs: {out: {type: "File[]", outputSource: s/out}}
steps:
  s:
    run:
      class: CommandLineTool
      hints: {DockerRequirement: {dockerPull: "python:3.11-slim"}}
      baseCommand: [sh, -c, "sleep 1; echo $PPID > pid.txt"]
      inputs: {n: int}
      outputs: {out: {type: File, outputBinding: {glob: pid.txt}}}
    in: {n: n}
    scatter: n
    out: [out]
"""


def test_running_without_container_is_said_once_for_two_workers(tmp_path):
    (tmp_path / "wf.cwl").write_text(SCATTER_WITH_IMAGE)
    (tmp_path / "in.yml").write_text("n: [1, 2, 3, 4]\n")
    done = subprocess.run([sys.executable, "-m", "swfflow.cli", "run", "wf.cwl", "in.yml",
                           "--outdir", "out", "--jobs", "2", "--no-container"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    # the jobs really ran in more than one worker process (the tool's parent is the worker)
    pids = {Path(f["location"].removeprefix("file://")).read_text().strip()
            for f in json.loads(done.stdout)["out"]}
    assert len(pids) >= 2, pids
    assert done.stderr.count("running without container python:3.11-slim") == 1, done.stderr
    assert "--no-container was given" in done.stderr
