"""Latency through the real PanDA: an STF attached to the run's open Rucio dataset → the PanDA
job for it activated by JEDI → finished (a swfflow pilot ran it, PanDA's adder finished it);
plus the services' cold and warm start times.

    python bench/panda_latency.py [--stfs 8] [--interval-s 3] [--json]

Starts its own Rucio and PanDA (panda-server 1.0.4 + JEDI, ``swfflow services`` in a
temporary directory, removed at the end). The calib plan's streaming task (``reconstruct``,
one job per STF, ``runUntilClosed``) is submitted through the real panda-client over the
run's open dataset; STFs are then attached one every ``--interval-s`` (as the bridge does on
``stf_gen``; bench/bridge.py measures stf_gen → attached) while one pilot serves the queue.
Per STF after the first: attached → job activated, attached → job finished, p50/p99 (the
first STF's job also waits for the task's refinement: submit → activated is printed apart);
the Rucio attach call itself is the baseline the ratios are against. The pilot runs the jobs
(cwltool, CPU-bound) on the same cores as JEDI, so activation under load is measured too. Goal (req 3.1): < 10 s to activation.

What bounds activation here (docs/panda.md, "JEDI settings for streaming"): JEDI's
ContentsFeeder re-reads open datasets every ``[confeeder] checkInterval`` minutes (production:
5) — here its loop cycle (5 s) and the JobGenerator's (5 s) do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
os.environ.setdefault("SWFFLOW_RUCIO_VENV", str(Path.home() / ".swfflow/services/rucio/venv"))
os.environ.setdefault("SWFFLOW_PANDA_VENV", str(Path.home() / ".swfflow/services/panda/venv"))
STF = ROOT / "examples" / "data" / "run000123_stf0001.stf"
RUN = int(time.time()) % 100000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def job_states(database: str, task_id: str) -> dict[str, str]:
    """lfn of the input → job status, over the active and archived job tables."""
    from swfflow.services import postgres

    tables = " union all ".join(
        f"select f.lfn, j.jobstatus from doma_panda.filestable4 f join doma_panda.{t} j "
        f"on j.pandaid = f.pandaid where f.jeditaskid = {int(task_id)} and f.type = 'input'"
        for t in ("jobsactive4", "jobsarchived4"))
    rows = postgres.psql(tables, "read jobs", database=database).splitlines()
    return dict(row.split("|") for row in rows)


def start_services(state: Path) -> tuple[float, float]:
    """(cold, warm) start of PanDA, seconds: fresh database, then a restart over it."""
    from swfflow import services
    from swfflow.services import panda_server
    from swfflow.services.state import ServiceHome

    services.up(["rucio"], state=state, fresh_session="bench")
    started = time.monotonic()
    services.up(["panda"], state=state, fresh_session="bench")
    cold = time.monotonic() - started
    home = ServiceHome(state, "panda")
    panda_server.stop(home)
    started = time.monotonic()
    panda_server.start(home)
    return cold, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stfs", type=int, default=8)
    parser.add_argument("--interval-s", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from click.testing import CliRunner

    from swfflow import services
    from swfflow.backends.panda import PandaExecutor
    from swfflow.backends.rucio import RucioCatalog
    from swfflow.cli import cli
    from swfflow.pilot.api import PilotAPI
    from swfflow.pilot.loop import PilotSettings, serve
    from swfflow.services.rucio_server import client_config
    from tests.test_panda_real import attach_stf, compiled_tasks, open_run

    state = Path(tempfile.mkdtemp(prefix="swfflow-bench-panda-"))
    try:
        cold, warm = start_services(state)
        endpoint = services.ServiceHome(state, "panda").endpoint()
        os.environ["RUCIO_CONFIG"] = str(client_config(services.ServiceHome(state, "rucio")))
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        catalog = RucioCatalog.from_config(os.environ["RUCIO_CONFIG"])
        sandbox = state / "sandbox"
        shutil.copytree(ROOT / "examples", sandbox)
        CliRunner().invoke(cli, ["compile", str(ROOT / "examples" / "calib.cwl"), "--run",
                                 str(RUN), "-o", str(sandbox / "plan.json"), "-q"])
        task = compiled_tasks(RUN)["reconstruct"]
        open_run(catalog, task)
        submitted = time.time()
        task_id = PandaExecutor(endpoint["api"], attempts=3, backoff_s=0.5).submit(task)
        first = task.params["dsForIN"].split(":")[1] + ".000001.stf"
        # the first STF's job waits for the task to be refined: reported apart
        attached, attach_s = {first: submitted}, []
        settings = PilotSettings(queue=task.params["site"], workdir=state / "pilot",
                                 sandbox=sandbox, max_jobs=args.stfs, idle_timeout_s=120,
                                 poll_s=0.5, task_id=int(task_id))
        pilot = threading.Thread(target=serve, args=(PilotAPI(endpoint["api"]), settings),
                                 kwargs={"log": lambda _m: None}, daemon=True)
        pilot.start()
        activated, finished = {}, {}
        next_attach, sequence = time.time() + args.interval_s, 1
        deadline = time.time() + args.stfs * args.interval_s + 600
        while len(finished) < args.stfs and time.time() < deadline:
            if sequence < args.stfs and time.time() >= next_attach:
                sequence += 1
                t0 = time.time()
                attached[attach_stf(catalog, task, sequence)] = t0
                attach_s.append(time.time() - t0)
                next_attach += args.interval_s
            now = time.time()
            for lfn, status in job_states(endpoint["database"], task_id).items():
                if lfn in attached:
                    activated.setdefault(lfn, now)
                    if status == "finished":
                        finished.setdefault(lfn, now)
            time.sleep(0.25)
        to_active = [activated[f] - attached[f] for f in activated if f != first]
        to_done = [finished[f] - attached[f] for f in finished if f != first]
        baseline = statistics.median(attach_s) if attach_s else float("nan")
        result = {
            "stfs": args.stfs, "interval_s": args.interval_s, "jobs_finished": len(finished),
            "start_cold_s": round(cold, 1), "start_warm_s": round(warm, 1),
            "rucio_attach_p50_s": round(baseline, 3),
            "submit_to_first_job_activated_s": round(activated[first] - submitted, 1)
            if first in activated else None,
            "activated_p50_s": round(percentile(to_active, 0.5), 1) if to_active else None,
            "activated_p99_s": round(percentile(to_active, 0.99), 1) if to_active else None,
            "finished_p50_s": round(percentile(to_done, 0.5), 1) if to_done else None,
            "finished_p99_s": round(percentile(to_done, 0.99), 1) if to_done else None,
        }
        if to_active:
            result["activated_p50_vs_attach"] = round(percentile(to_active, 0.5) / baseline, 1)
        if args.json:
            print(json.dumps(result, indent=1))
        else:
            for key, value in result.items():
                print(f"{key:>26}: {value}")
    finally:
        services.purge(state)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
