"""Snakemake's own test Snakefiles as a corpus for the Snakemake front end (issue 17).

Where they come from: the sdist of the installed snakemake on PyPI ships its repository's
``tests/`` folder (``snakemake-<version>/tests/<name>/Snakefile``, 422 of them in 9.27.1).
:func:`corpus` downloads it once with ``pip download --no-binary :all: --no-deps
snakemake==<version>`` into ``$SWFFLOW_CACHE_DIR`` (default ``~/.cache/swfflow``)
``/snakemake-corpus/<version>/`` and unpacks only ``tests/``.

How one Snakefile is judged (:func:`judge`, in a worker process so that Snakefiles, which are
Python, cannot disturb the caller): its folder is copied to a scratch folder, ``snakemake -n``
runs there (Snakemake's own CLI entry, in process) and its "Job stats" table gives the rules
that run; then swfflow compiles it exactly as ``swfflow compile`` does (front end + planner).
Outcomes: ``compiled`` (with the rules that got no task, if any), ``refused`` (a
``SwfflowError``: one line, exit 2 or 33), ``traceback`` (anything else), and ``dry-failed``
/ ``timeout`` for Snakefiles that ``snakemake -n`` itself rejects (those need the arguments
Snakemake's own test passes; they are outside the measure).

    python -m tests.snakemake_corpus [--every N] [--jobs 2]    # the survey, as a table
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DOWNLOAD_TIMEOUT_S = 300
PER_SNAKEFILE_S = 60  # dry-run + compile of one Snakefile (the slowest seen: ~5 s)
_STATS = re.compile(r"^Job stats:\njob\s+count\n-+\s+-+\n((?:\S+\s+\d+\n)+)", re.MULTILINE)


def cache_dir() -> Path:
    base = os.environ.get("SWFFLOW_CACHE_DIR") or Path.home() / ".cache" / "swfflow"
    return Path(base) / "snakemake-corpus"


def snakemake_version() -> str:
    import snakemake
    return snakemake.__version__


def corpus(version: str | None = None) -> Path:
    """The unpacked ``tests/`` folder of the snakemake sdist (downloaded once)."""
    version = version or snakemake_version()
    root = cache_dir() / version
    tests = root / f"snakemake-{version}" / "tests"
    if tests.is_dir():
        return tests
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:",
                        "--no-deps", f"snakemake=={version}", "-d", tmp,
                        "--quiet"], check=True, timeout=DOWNLOAD_TIMEOUT_S,
                       capture_output=True, text=True)
        sdist = next(Path(tmp).glob(f"snakemake-{version}.tar.gz"))
        prefix = f"snakemake-{version}/tests/"
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            archive.extractall(tmp, members=members, filter="data")
        (Path(tmp) / f"snakemake-{version}").rename(root / f"snakemake-{version}")
    return tests


def snakefile_dirs(tests: Path, every: int = 1) -> list[str]:
    """The folders holding a ``Snakefile``, sorted; every ``every``-th one (deterministic)."""
    names = sorted(p.parent.name for p in tests.glob("*/Snakefile"))
    return names[::every]


# --- one Snakefile, in a worker process -------------------------------------------------------
class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def dry_run(folder: Path) -> tuple[bool, set[str]]:
    """``snakemake -n`` in ``folder`` (in process): accepted?, the rules that run."""
    from snakemake.cli import args_to_api, parse_args
    text = io.StringIO()
    try:
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            parser, args = parse_args(["-n", "-c1"])
            ok = bool(args_to_api(args, parser))
    except _Timeout:
        raise
    except (Exception, SystemExit):  # noqa: BLE001 (Snakemake rejecting it is an answer)
        return False, set()
    stats = _STATS.findall(text.getvalue() + "\n") if ok else []
    rules = set()
    for block in stats[-1:]:
        rules = {line.split()[0] for line in block.splitlines()} - {"total"}
    return ok, rules


def compile_here(snakefile: Path) -> dict:
    """What ``swfflow compile`` does, with its result classified."""
    from swfflow.errors import SwfflowError
    from swfflow.frontends.snakemake import lower, workflow_name
    from swfflow.frontends.snakemake_dag import build_dag
    from swfflow.plan.planner import compile_workflow
    try:
        dag = build_dag(snakefile)
        plan = compile_workflow(lower(dag, workflow_name(snakefile)))
    except SwfflowError as exc:
        return {"outcome": "refused", "exit": exc.exit_code, "message": str(exc).splitlines()[0]}
    except Exception as exc:  # noqa: BLE001 (a traceback is what we count)
        return {"outcome": "traceback", "message": f"{type(exc).__name__}: {exc}"[:300]}
    tasks = {t.key.split(".")[0] for t in plan.tasks}
    norun = {name for name, rule in dag.rules.items() if rule.norun}
    return {"outcome": "compiled", "tasks": sorted(tasks), "norun": sorted(norun),
            "checkpoints": any(rule.is_checkpoint for rule in dag.rules.values())}


def judge(tests: Path, name: str) -> dict:
    result: dict = {"dir": name}
    home = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        shutil.copytree(tests / name, folder, symlinks=True)
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(PER_SNAKEFILE_S)
        start = time.perf_counter()
        try:
            os.chdir(folder)
            ok, rules = dry_run(folder)
            result["dry"] = ok
            if ok:
                shutil.rmtree(folder / ".snakemake", ignore_errors=True)
                result["runs"] = sorted(rules)
                result.update(compile_here(folder / "Snakefile"))
        except _Timeout:
            result["outcome"] = "timeout"
        finally:
            signal.alarm(0)
            os.chdir(home)
        result["seconds"] = round(time.perf_counter() - start, 2)
    if result.get("outcome") == "compiled":
        ran = set(result["runs"]) - set(result["norun"])
        result["missing"] = sorted(ran - set(result["tasks"]))
    return result


def _worker(tests: str, names: list[str]) -> None:
    os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
    for name in names:
        print(json.dumps(judge(Path(tests), name)), flush=True)
    # a Snakefile may start threads that never end (test_queue_input does): do not wait
    sys.stdout.flush()
    os._exit(0)


# --- the survey ------------------------------------------------------------------------------
def survey(tests: Path, names: list[str], jobs: int = 2, timeout_s: int = 1800) -> list[dict]:
    """Judge ``names`` in ``jobs`` worker processes (round-robin shares)."""
    shares = [names[i::jobs] for i in range(jobs)]

    def run(share: list[str]) -> list[dict]:
        if not share:
            return []
        argv = [sys.executable, "-m", "tests.snakemake_corpus", "--worker", str(tests), *share]
        try:
            proc = subprocess.run(argv, cwd=Path(__file__).resolve().parents[1],
                                  capture_output=True, text=True, timeout=timeout_s, check=False)
            out, err = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:  # keep what it judged; the rest "died"
            out, err = _text(exc.stdout), f"worker timed out after {timeout_s} s"
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        done = {r["dir"] for r in rows}
        # a Snakefile that killed its worker outright: counted, never lost
        rows += [{"dir": n, "dry": None, "outcome": "worker-died",
                  "message": err[-300:]} for n in share if n not in done]
        return rows

    with ThreadPoolExecutor(jobs) as pool:
        return sorted((r for rows in pool.map(run, shares) for r in rows),
                      key=lambda r: r["dir"])


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def summary(rows: list[dict]) -> dict:
    accepted = [r for r in rows if r.get("dry")]
    compiled = [r for r in accepted if r.get("outcome") == "compiled" and not r["missing"]]
    empty = [r for r in accepted if not set(r.get("runs", ())) and r.get("outcome") == "refused"]
    return {
        "snakefiles": len(rows), "accepted": len(accepted), "compiled": len(compiled),
        "empty_refused": len(empty),
        "refused": sorted(r["dir"] for r in accepted if r.get("outcome") == "refused"
                          and r not in empty),
        "missing_tasks": sorted(r["dir"] for r in accepted if r.get("outcome") == "compiled"
                                and r["missing"]),
        "tracebacks": sorted(r["dir"] for r in accepted
                             if r.get("outcome") in ("traceback", "worker-died", "timeout")),
        "checkpoint_refusals": sorted(r["dir"] for r in accepted
                                      if "after another checkpoint" in r.get("message", "")),
        "checkpoint_workflows_compiled": sorted(r["dir"] for r in compiled
                                                if r.get("checkpoints")),
    }


def categories(rows: list[dict]) -> dict[str, int]:
    """How many Snakefiles end in each outcome (the survey's per-category counts)."""
    counts: dict[str, int] = {}
    for row in rows:
        if not row.get("dry"):
            kind = "snakemake -n rejects it" if row.get("dry") is False else row["outcome"]
        elif row.get("outcome") == "compiled":
            kind = ("compiled, with checkpoints" if row.get("checkpoints") else "compiled") \
                if not row["missing"] else "compiled, a rule has no task"
        elif row.get("outcome") == "refused":
            message = row.get("message", "")
            kind = next((label for text, label in _REFUSALS if text in message),
                        "refused, other")
        else:
            kind = row.get("outcome", "?")
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


_REFUSALS = (("has no jobs", "refused: no jobs"), ("nothing to run", "refused: nothing to run"),
             ("after another checkpoint", "refused: checkpoint after a checkpoint"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=1, help="judge every N-th folder")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="one JSON row per Snakefile")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker[0], args.worker[1:])
        return
    tests = corpus()
    rows = survey(tests, snakefile_dirs(tests, args.every), args.jobs)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    for row in rows:
        if row.get("dry") and not (row.get("outcome") == "compiled" and not row["missing"]):
            print(f"{row['dir']:45} {row.get('outcome')}: {row.get('message') or row['missing']}")
    print(json.dumps(summary(rows), indent=1))
    for kind, count in categories(rows).items():
        print(f"{count:5}  {kind}")


if __name__ == "__main__":
    main()
