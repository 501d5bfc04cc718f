#!/usr/bin/env python3
"""Benchmark: the Snakemake front end and the swfpanda executor plugin.

1. Compile time. A generated Snakefile with N per-STF jobs (default 10,000: a reconstruction
   per STF file plus a merge), timed in the same run and on the same files:

     * `swfflow compile Snakefile -o /dev/null -q` (Snakemake's DAG in process + IR + planner),
     * `snakemake -n --quiet -c1` (the baseline: Snakemake building the same DAG),

   and the ratio compile / dry-run. Goal (issue 7): <= 1.3.

   The same for a 100,000-job DAG (``--big-jobs``), once each, with each command's peak
   memory (the child's max RSS from ``wait4``). Goal (issue 17): < 60 s and < 2 GB.

2. PanDA status calls per poll cycle. `snakemake --executor swfpanda` runs a 1,000-job rule
   against the PanDA contract server (tasks kept running); the server records every request,
   and calls are grouped into poll cycles (requests closer together than half the interval).
   Goal: 1 status call per cycle for 1,000 running jobs.

    python bench/compile_snakemake.py [--jobs 10000] [--big-jobs 100000] [--status-jobs 1000]
                                      [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
SNAKEFILE = '''
IDS = glob_wildcards("raw/{stf}.stf").stf

rule all:
    input: "merged.txt"

rule reco:
    input: "raw/{stf}.stf"
    output: "reco/{stf}.txt"
    params: swf_mode="stream"
    resources: mem_mb=2000, runtime=30
    shell: "cp {input} {output}"

rule merge:
    input: expand("reco/{stf}.txt", stf=IDS)
    output: "merged.txt"
    shell: "cat {input} > {output}"
'''


def make_workflow(folder: Path, n_jobs: int) -> Path:
    (folder / "raw").mkdir(parents=True, exist_ok=True)
    for i in range(n_jobs):
        (folder / "raw" / f"run000123_stf{i:06d}.stf").touch()
    (folder / "Snakefile").write_text(SNAKEFILE)
    return folder / "Snakefile"


def timed(argv: list[str], cwd: Path, env: dict | None = None) -> float:
    return measured(argv, cwd, env)[0]


def measured(argv: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float]:
    """Wall time (s) and peak memory (MB: the child's max RSS, as wait4 reports it)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"failed: {' '.join(argv)}\n{err.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024  # KB on Linux


def compile_ratio(folder: Path, n_jobs: int, repeat: int) -> None:
    snakefile = make_workflow(folder, n_jobs)
    compile_s, dry_s = [], []
    for _ in range(repeat):
        compile_s.append(timed([PY, "-m", "swfflow.cli", "compile", str(snakefile), "-o",
                                os.devnull, "-q"], folder))
        dry_s.append(timed([PY, "-m", "snakemake", "-n", "--quiet", "-c1", "-s", str(snakefile)],
                           folder))
    best_c, best_d = min(compile_s), min(dry_s)
    print(f"compile: {n_jobs + 1:,} jobs (reco x {n_jobs:,} + merge), best of {repeat}")
    print(f"  swfflow compile     {best_c:7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in compile_s)})")
    print(f"  snakemake -n        {best_d:7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in dry_s)})")
    print(f"  ratio compile / -n  {best_c / best_d:7.2f}   (goal <= 1.3)")


def big_dag(folder: Path, n_jobs: int) -> None:
    """One compile and one dry-run of an ``n_jobs``-job DAG: time and peak memory."""
    snakefile = make_workflow(folder, n_jobs)
    compile_s, compile_mb = measured([PY, "-m", "swfflow.cli", "compile", str(snakefile), "-o",
                                      os.devnull, "-q"], folder)
    dry_s, dry_mb = measured([PY, "-m", "snakemake", "-n", "--quiet", "-c1", "-s",
                              str(snakefile)], folder)
    print(f"big DAG: {n_jobs + 1:,} jobs (reco x {n_jobs:,} + merge), one run each")
    print(f"  swfflow compile     {compile_s:7.2f} s  {compile_mb:7.0f} MB peak   "
          f"(goal < 60 s, < 2048 MB)")
    print(f"  snakemake -n        {dry_s:7.2f} s  {dry_mb:7.0f} MB peak")
    print(f"  ratio compile / -n  {compile_s / dry_s:7.2f} time  {compile_mb / dry_mb:5.2f} memory")
    print("  where a compile's time goes (one more compile, in process):")
    breakdown = subprocess.run([PY, "-c", _BREAKDOWN, str(snakefile)], cwd=folder,
                               capture_output=True, text=True, check=True)
    for line in breakdown.stdout.splitlines():
        print(f"    {line}")


# the stages of a compile, timed separately: Snakemake's job graph (its own code) against
# swfflow's (snapshot of the graph, lowering to the IR, planner, plan JSON)
_BREAKDOWN = """
import sys, time
from pathlib import Path
from swfflow.frontends import snakemake_dag
from swfflow.frontends.snakemake import lower, workflow_name
from swfflow.plan.planner import compile_workflow
path = Path(sys.argv[1])
snapshot = snakemake_dag._snapshot
took = {}
def timed_snapshot(*args, **kwargs):
    start = time.perf_counter()
    try:
        return snapshot(*args, **kwargs)
    finally:
        took["snapshot"] = time.perf_counter() - start
snakemake_dag._snapshot = timed_snapshot
with snakemake_dag.paused_gc():  # as the front end builds and lowers a graph
    start = time.perf_counter()
    dag = snakemake_dag.build_dag(path)
    graph = time.perf_counter() - start - took["snapshot"]
    start = time.perf_counter(); workflow = lower(dag, workflow_name(path)); lowering = time.perf_counter() - start
start = time.perf_counter(); plan = compile_workflow(workflow); planner = time.perf_counter() - start
start = time.perf_counter(); plan.to_json(); as_json = time.perf_counter() - start
print(f"Snakemake's job graph  {graph:7.2f} s")
print(f"swfflow: snapshot      {took['snapshot']:7.2f} s")
print(f"swfflow: lowering      {lowering:7.2f} s")
print(f"swfflow: planner       {planner:7.2f} s")
print(f"swfflow: plan JSON     {as_json:7.2f} s")
"""


def status_calls(folder: Path, n_jobs: int, interval: int, cycles: int) -> None:
    from swfflow.testing.panda_runner import StateMachineRunner
    from swfflow.testing.panda_server import PandaContractServer

    snakefile = make_workflow(folder, n_jobs)
    runner = StateMachineRunner(run_s=3600)  # keep every task running while we count
    with PandaContractServer(runner=runner, tick_s=0.2) as server:
        env = {**os.environ, **server.env()}
        argv = [PY, "-m", "snakemake", "--executor", "swfpanda", "--jobs", str(n_jobs),
                "--max-jobs-per-timespan", f"{n_jobs}/1s", "--seconds-between-status-checks",
                str(interval), "--max-status-checks-per-second", "10", "-s", str(snakefile),
                "--until", "reco", "--quiet"]
        proc = subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not any(c == "task/submit" for c in server.calls):
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("the plugin never submitted")
                time.sleep(0.5)
            start = len(server.calls)
            stamps: list[float] = []
            seen = start
            end = time.monotonic() + interval * (cycles + 0.5) + 2
            while time.monotonic() < end:
                for call in server.calls[seen:]:
                    if "get_tasks_detailed_info_since" in call:
                        stamps.append(time.monotonic())
                seen = len(server.calls)
                time.sleep(0.05)
            tasks = sum(1 for c in server.calls if c == "task/submit")
        finally:
            os.killpg(proc.pid, signal.SIGINT)  # the plugin kills its tasks on cancel
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    groups: list[list[float]] = []
    for stamp in stamps:
        if groups and stamp - groups[-1][-1] < interval / 2:
            groups[-1].append(stamp)
        else:
            groups.append([stamp])
    per_cycle = [len(g) for g in groups]
    print(f"status: {n_jobs:,} running jobs of one rule, poll interval {interval} s")
    print(f"  PanDA tasks submitted     {tasks} (one per rule per wave)")
    print(f"  poll cycles observed      {len(per_cycle)}")
    print(f"  status calls per cycle    {per_cycle}   (goal 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--big-jobs", type=int, default=100_000,
                        help="jobs of the big DAG (0: skip it)")
    parser.add_argument("--status-jobs", type=int, default=1_000,
                        help="jobs of the status-call run (0: skip it)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--interval", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--keep", type=Path, help="work in this folder (kept)")
    args = parser.parse_args()
    os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        compile_ratio(base / "compile", args.jobs, args.repeat)
        if args.big_jobs:
            big_dag(base / "big", args.big_jobs)
        if args.status_jobs:
            status_calls(base / "status", args.status_jobs, args.interval, args.cycles)


if __name__ == "__main__":
    main()
