"""Runs one JEDI job of a swfpanda task on the worker node: the k-th Snakemake job command.

    python3 -m snakemake_executor_plugin_swfpanda.worker --index K --jobs TABLE

The command is Snakemake's own job line (built and quoted by Snakemake on the submit side);
it is run through ``/bin/sh`` because it chains steps with ``&&``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from snakemake_executor_plugin_swfpanda.tasks import decode_jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swfpanda-worker", description=__doc__)
    parser.add_argument("--index", type=int, required=True, help="job index in the task (0-based)")
    parser.add_argument("--jobs", required=True, help="the task's encoded job table")
    args = parser.parse_args(argv)
    commands = decode_jobs(args.jobs)
    if not 0 <= args.index < len(commands):
        print(f"swfpanda-worker: job index {args.index} outside 0..{len(commands) - 1}",
              file=sys.stderr)
        return 2
    return subprocess.call(commands[args.index], shell=True)  # noqa: S602 (Snakemake's own line)


if __name__ == "__main__":
    sys.exit(main())
