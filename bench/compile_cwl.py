#!/usr/bin/env python3
"""Benchmark: `swfflow compile` vs `cwltool --validate` on generated CWL workflows.

Generates workflows of 100 and 1,000 leaf steps (per group of five: a reconstruction scattered
over the stream input, a validation sub-workflow of two steps, a gather merge and a fit; tools
referenced by `run:` files), then times, in the same run and on the same file:

  * `swfflow compile FILE -o /dev/null -q` (front end + planner, as a user runs it),
  * `cwltool --validate FILE` (the baseline),
  * `load_workflow` in-process (the front end alone, for reference),

and prints the ratio compile/validate and the peak RSS of each child process.
Goal (issue 2): ratio <= 1.5 at 1,000 steps.

    python bench/compile_cwl.py [--sizes 100 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEAK_RSS = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode; "
            "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")

TOOL = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [python3, -c, "import sys; open('{out}', 'w').write(str(sys.argv[1:]))"]
requirements:
  ResourceRequirement: {{coresMin: {cores}, ramMin: 1000}}
hints:
  DockerRequirement: {{dockerPull: "python:3.11-slim"}}
inputs:
  {input}: {{type: {type}, inputBinding: {{position: 1}}}}
outputs:
  out: {{type: File, outputBinding: {{glob: {out}}}}}
"""

SUB = """cwlVersion: v1.2
class: Workflow
inputs: {f: File}
outputs: {report: {type: File, outputSource: integrity/out}}
steps:
  checksum: {run: tools/checksum.cwl, in: {f: f}, out: [out]}
  integrity: {run: tools/integrity.cwl, in: {f: checksum/out}, out: [out]}
"""


def generate(directory: Path, leaves: int) -> Path:
    tools = directory / "tools"
    tools.mkdir(parents=True, exist_ok=True)
    for name, input_name, cwl_type, cores in [
            ("reco", "f", "File", 1), ("merge", "files", "'File[]'", 1), ("fit", "f", "File", 2),
            ("checksum", "f", "File", 1), ("integrity", "f", "File", 1)]:
        (tools / f"{name}.cwl").write_text(TOOL.format(out=f"{name}.out", cores=cores,
                                                       input=input_name, type=cwl_type))
    (directory / "validate.cwl").write_text(SUB)
    lines = ["cwlVersion: v1.2", "class: Workflow",
             '$namespaces: {swf: "https://github.com/swfflow/swfflow/cwl#"}',
             "requirements: {ScatterFeatureRequirement: {}, SubworkflowFeatureRequirement: {}}",
             "inputs:", "  stf_files: {type: 'File[]', 'swf:stream': true}", "outputs: []", "steps:"]
    for group in range(leaves // 5):
        lines += [
            f"  reco_{group}: {{run: tools/reco.cwl, scatter: f, in: {{f: stf_files}}, out: [out]}}",
            f"  validate_{group}: {{run: validate.cwl, scatter: f, in: {{f: reco_{group}/out}}, out: [report]}}",
            f"  merge_{group}: {{run: tools/merge.cwl, in: {{files: reco_{group}/out}}, out: [out]}}",
            f"  fit_{group}: {{run: tools/fit.cwl, in: {{f: merge_{group}/out}}, out: [out]}}",
        ]
    path = directory / f"wf{leaves}.cwl"
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(argv: list[str]) -> tuple[float, int, int, str]:
    """Wall time, exit code and peak RSS (KiB) of ``argv`` in its own child."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, *argv], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    code, rss = (int(x) for x in result.stdout.split()[-2:])
    return elapsed, code, rss, result.stderr


def in_process(path: Path) -> float:
    code = ("import sys, time; from swfflow.frontends.cwl import load_workflow; t = time.perf_counter(); "
            "load_workflow(sys.argv[1]); print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--keep", type=Path, help="write the generated workflows here")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    swfflow = str(bindir / "swfflow") if (bindir / "swfflow").exists() else "swfflow"
    cwltool = str(bindir / "cwltool") if (bindir / "cwltool").exists() else "cwltool"
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        for leaves in args.sizes:
            path = generate(base / f"n{leaves}", leaves)
            t_compile, rc_c, rss_c, err_c = timed([swfflow, "compile", str(path), "-o", "/dev/null", "-q"])
            t_validate, rc_v, rss_v, err_v = timed([cwltool, "--validate", str(path)])
            for name, rc, err in (("swfflow compile", rc_c, err_c), ("cwltool --validate", rc_v, err_v)):
                if rc != 0:
                    print(f"{name} failed on {path} (exit {rc}):\n{err[-2000:]}", file=sys.stderr)
                    return 1
            rows.append({"leaf_steps": leaves, "compile_s": round(t_compile, 2),
                         "validate_s": round(t_validate, 2), "ratio": round(t_compile / t_validate, 2),
                         "compile_peak_mb": round(rss_c / 1024), "validate_peak_mb": round(rss_v / 1024),
                         "load_workflow_s": round(in_process(path), 2)})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'leaf steps':>10} {'swfflow compile':>16} {'cwltool --validate':>19} {'ratio':>6} "
          f"{'compile MB':>11} {'validate MB':>12} {'load_workflow':>14}")
    for r in rows:
        print(f"{r['leaf_steps']:>10} {r['compile_s']:>15.2f}s {r['validate_s']:>18.2f}s {r['ratio']:>6.2f} "
              f"{r['compile_peak_mb']:>11} {r['validate_peak_mb']:>12} {r['load_workflow_s']:>13.2f}s")
    goal = [r for r in rows if r["leaf_steps"] == 1000]
    if goal:
        verdict = "met" if goal[0]["ratio"] <= 1.5 else "NOT met"
        print(f"goal ratio <= 1.5 at 1,000 steps: {verdict} ({goal[0]['ratio']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
