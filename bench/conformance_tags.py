"""CWL v1.2 conformance beyond the seven tags CI gates on: each other tag run through the one
engine (``swfflow run``'s plan path, as ``pytest tests/conformance`` does), its pass rate next
to cwltool's own on the same tests in the same run (the baseline: what the reference runner
passes on this machine, without containers).

    python bench/conformance_tags.py [--tags command_line_tool,expression_tool,...] [-n 2]
                                     [--no-baseline] [--rehearse]

``--rehearse`` runs every job as a PanDA pilot would (``swfflow run --rehearse``): the pass
rate of the task parameters PanDA gets. ``--tags gated`` names the seven tags CI gates on.

Needs the suite ($SWFFLOW_CWL_CONFORMANCE or ../shared/cwl-v1.2). Takes tens of minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OTHER_TAGS = ("command_line_tool", "expression_tool", "inline_javascript", "initial_work_dir",
              "schema_def", "shell_command", "resource", "env_var", "load_listing",
              "secondary_files", "inputs_should_parse", "timelimit")


GATED_TAGS = ("workflow", "scatter", "conditional", "subworkflow", "multiple_input",
              "step_input", "required")


def ours(tag: str, workers: int, rehearse: bool = False) -> tuple[int, int, float]:
    """(passed, total, seconds) through swfflow's cwltest hook."""
    results = ROOT / ".swfflow" / "conformance-results.json"
    results.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "tests/conformance", "-q", "-p",
                    "no:cacheprovider", "-n", str(workers), "--timeout", "300",
                    f"--cwl-tags={tag}"], cwd=ROOT, capture_output=True, text=True,
                   timeout=6 * 3600, check=False,
                   env={**os.environ, "SWFFLOW_CONFORMANCE_RESULTS": tempfile.mkdtemp(),
                        "SWFFLOW_REHEARSE": "1" if rehearse else "0"})
    seconds = time.perf_counter() - start
    if not results.exists():
        return 0, 0, seconds
    summary = json.loads(results.read_text())
    return summary["passed"], summary["total"], seconds


def baseline(tag: str, workers: int) -> tuple[int, int]:
    """(passed, total) of cwltool itself (cwltest's runner), containers off."""
    from tests.conformance.suite import DOCUMENT, suite_dir

    suite = suite_dir()
    done = subprocess.run([sys.executable, "-m", "cwltest", "--test", str(suite / DOCUMENT),
                           "--tags", tag, "-j", str(workers), "--tool", "cwltool", "--",
                           "--no-container"], cwd=suite, capture_output=True, text=True,
                          timeout=6 * 3600, check=False)
    for line in reversed((done.stdout + done.stderr).splitlines()):
        # cwltest ends with "N tests passed, M failures, K unsupported features"
        words = line.replace(",", "").split()
        if "passed" in words:
            numbers = [int(w) for w in words if w.isdigit()]
            passed = numbers[0]
            return passed, sum(numbers)
    return 0, 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", default=",".join(OTHER_TAGS))
    parser.add_argument("-n", type=int, default=2, help="tests at once")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--rehearse", action="store_true",
                        help="every job as a PanDA pilot runs it (swfflow run --rehearse)")
    args = parser.parse_args()
    tags = GATED_TAGS if args.tags == "gated" else args.tags.split(",")
    sys.path.insert(0, str(ROOT))
    mode = "rehearsal" if args.rehearse else "swfflow"
    print(f"{'tag':<20} {mode:>12} {'cwltool':>12} {'ratio':>7} {'time':>7}")
    for tag in tags:
        passed, total, seconds = ours(tag, args.n, args.rehearse)
        theirs = (None, None) if args.no_baseline else baseline(tag, args.n)
        ratio = f"{passed / theirs[0]:.2f}" if theirs[0] else "-"
        base = f"{theirs[0]}/{theirs[1]}" if theirs[0] is not None else "-"
        print(f"{tag:<20} {f'{passed}/{total}':>12} {base:>12} {ratio:>7} {seconds:6.0f}s",
              flush=True)


if __name__ == "__main__":
    main()
