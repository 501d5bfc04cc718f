"""The one engine's overhead: an N-element scatter of a trivial tool, run by
``swfflow run --jobs J`` (compile → plan → engine → a task per element through the local
executor) and by ``cwltool --parallel`` on the same workflow, in the same run. Prints both wall
times, their ratio (goal ≤ 1.5×) and swfflow's overhead per job in ms.

    python bench/run_overhead.py [--elements 200] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs: {words: 'string[]'}
outputs:
  said: {type: 'File[]', outputSource: say/out}
steps:
  say:
    scatter: w
    in: {w: words}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: [echo]
      stdout: said.txt
      inputs: {w: {type: string, inputBinding: {position: 1}}}
      outputs: {out: stdout}
"""


def timed(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{command[2] if len(command) > 2 else command[0]} failed:\n{done.stderr[-2000:]}")
    return elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swfflow-bench-") as tmp:
        root = Path(tmp)
        (root / "wf.cwl").write_text(WORKFLOW)
        (root / "in.json").write_text(json.dumps({"words": [f"w{i}" for i in
                                                            range(args.elements)]}))
        ours, done = timed([sys.executable, "-m", "swfflow.cli", "run", "wf.cwl", "in.json",
                            "--outdir", "ours", "--jobs", str(args.jobs), "-q"], root)
        said = json.loads(done.stdout)["said"]
        assert len(said) == args.elements, len(said)
        theirs, _ = timed([sys.executable, "-m", "cwltool", "--parallel", "--quiet",
                           "--outdir", "theirs", "wf.cwl", "in.json"], root)
    per_job_ms = 1000 * (ours - theirs) * args.jobs / args.elements
    print(f"{args.elements}-element scatter of echo, --jobs {args.jobs}")
    print(f"  swfflow run          {ours:8.1f} s")
    print(f"  cwltool --parallel   {theirs:8.1f} s")
    print(f"  ratio                {ours / theirs:8.2f}x   (goal <= 1.5x)")
    print(f"  overhead per job     {per_job_ms:8.0f} ms  (beyond cwltool's, per job slot)")


if __name__ == "__main__":
    main()
