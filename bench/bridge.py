"""Stream bridge throughput and latency, next to the raw Rucio attach rate (same services).

    python bench/bridge.py [--rate-hz 2] [--seconds 30] [--flood 6000] [--json]

Starts its own ActiveMQ and Rucio (a fresh database, ``swfflow services`` in a temporary
directory, removed at the end: figures do not depend on what an earlier run left in a shared
Rucio) and runs the PanDA contract server in-process (tasks run nothing: this measures the
bridge, not payloads). Then:

1. raw Rucio: ``RucioCatalog.add_files`` of ``--raw`` files into an open dataset, 500 per
   call: without metadata, one client and two at once; with the per-file run_number/sequence
   metadata (Rucio sets it file by file: its slow path); and into a dataset with the same
   replication rules as the bridge's run dataset, two clients (the judge-evaluator then works
   for every attached file too: the ceiling any client reaches here);
2. latency: the DAQ simulator paced in real time emits stf_gen at ``--rate-hz`` for
   ``--seconds`` over ActiveMQ; per STF, stf_gen sent (its timestamp) → attached in Rucio
   (committed in the bridge store); p50/p99;
3. the bridge alone: the simulator floods ``--flood`` stf_gen into the bridge's durable
   subscription, and the bridge drains that backlog attaching the STFs in its local catalog
   (its SQLite store) instead of Rucio: the bridge's own ceiling. It runs before (4), so that
   (4) meets a warmed-up broker, as a long-running one is (its JVM has compiled its hot code);
4. sustained rate: the simulator floods ``--flood`` stf_gen into the bridge's durable
   subscription, then the bridge drains that backlog: STFs attached per second between its
   first and its last attach batch (steady state), when the deferred metadata of the last STF
   was set, and the CPU time every process on the machine spent per STF while the backlog was
   attached, and until the judge-evaluator has made every lock of the run dataset's rules
   (from /proc: the bridge, Rucio's server and judge, PostgreSQL, ActiveMQ). Their sum
   against the cores there are is the rate this machine can reach at all.

5. the butterfly (issue 15): the paced run again with every STF copied to both E1 RSEs
   (stf_gen sent → copied, verified and registered at both sites, p50/p99), and a flood of
   ``--butterfly-flood`` STFs drained with one E1 copy and with two: STFs per second from the
   first attach until the last copy is registered, and the attach rate meanwhile.

6. failover (issue 15, part 4; ``bench/bridge_failover.py``): kill -9 of the active one of two
   bridges, ``--kills`` times in a paced run: kill → standby active → next STF attached, the
   latencies over that run, and a flood drained by one bridge and by an active one with a
   standby (``--only-failover``: this phase alone).

Goals (issue 6): p99 < 1 s at 2 Hz, sustained ≥ 500 STF/s. On one 2-core machine the rate
with Rucio is bound by the services sharing the cores (Rucio's server and judge, PostgreSQL,
ActiveMQ): compare (4) with (1) and (3), and see the CPU per STF of each process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")

from tests.bridge_support import PROFILE, WORKFLOW, first_run_number, simulate  # noqa: E402

import bridge_failover  # noqa: E402 (bench/, beside this script)

SCHEDULE = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,%d", stf_interval: %s}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""


# which process is which, by its command line (first match wins)
PROCESS_KINDS = (("rucio server (gunicorn)", "gunicorn"),
                 ("rucio judge-evaluator", "rucio-judge-evaluator"),
                 ("activemq", "activemq"),
                 ("postgresql", "postgres"))


def cpu_by_process(marks: tuple[str, ...]) -> dict[int, tuple[str, float]]:
    """Every process's (kind, CPU seconds so far): user + system time from /proc. A service
    process counts as its kind only if its command line or working directory carries one of
    ``marks`` (the bench's state directory, its Rucio database): services of anything else
    running meanwhile are "other"."""
    tick, me, found = os.sysconf("SC_CLK_TCK"), os.getpid(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            where = f"{cmdline} {os.readlink(entry / 'cwd')}"
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        pid = int(entry.name)
        kind = "other"
        if pid == me:
            kind = "bench (bridge, PanDA double)"
        elif any(mark in where for mark in marks):
            kind = next((label for label, word in PROCESS_KINDS if word in cmdline), "other")
        found[pid] = (kind, seconds)
    return found


def cpu_spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
              ) -> dict[str, float]:
    """CPU seconds per kind between two snapshots (a process born in between counts whole)."""
    spent: dict[str, float] = {}
    for pid, (kind, seconds) in after.items():
        spent[kind] = spent.get(kind, 0.0) + seconds - before.get(pid, (kind, 0.0))[1]
    return spent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def raw_rucio_rate(catalog, tmp: Path, n: int, *, meta: bool = False, clients: int = 1,
                   rules=()) -> float:
    """Files/s of batched ``add_files`` into one new open dataset, from ``clients`` threads."""
    from swfflow.backends.base import FileRecord
    from swfflow.checksum import write_sparse_file

    run = uuid.uuid4().hex[:10]
    did = f"group.daq:bench.{run}.raw"
    catalog.create_dataset(did, rules=rules)
    folder = tmp / "raw"
    folder.mkdir(exist_ok=True)
    records = []
    for i in range(n):
        path = folder / f"bench.{run}.{i:06d}.stf"
        checksum = write_sparse_file(path, f"{run} {i}\n".encode(), 4096)
        records.append(FileRecord(did=f"group.daq:{path.name}", size=4096, adler32=checksum,
                                  pfn=str(path),
                                  meta={"run_number": 100010, "sequence": i + 1} if meta
                                  else {}))
    shares = [records[i::clients] for i in range(clients)]
    workers = [threading.Thread(target=catalog.for_thread().add_files, args=(did, share))
               for share in shares]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    rate = n / (time.perf_counter() - started)
    wait_for_judge(catalog, did, n * len(rules))
    return rate


def wait_for_judge(catalog, did: str, locks: int, timeout: float = 300.0) -> None:
    """Until Rucio's judge-evaluator has made the locks of every rule on ``did`` (it works
    after the attach, for every file): the next phase gets the cores to itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        made = sum(r["locks_ok_cnt"] + r["locks_replicating_cnt"] + r["locks_stuck_cnt"]
                   for r in catalog.list_rules(did))
        if made >= locks:
            return
        time.sleep(1.0)


def bridge_phase(tmp: Path, url: str, schedule: str, *, backlog: bool, panda_url: str,
                 marks: tuple[str, ...] = (), catalog: str = "rucio",
                 sites: tuple[str, ...] = ()) -> dict:
    """One simulated run through a bridge; ``backlog``: the whole run is published before the
    bridge starts (it drains it), else the simulator runs while the bridge does."""
    from swfflow.stream.bridge.setup import Setup, build_bridge
    from swfflow.stream.bridge.sources import subscribe
    from swfflow.stream.bus import open_bus
    from swfflow.stream.messages import EPIC_TOPIC, parse_message
    from swfflow.stream.store import FILES, PHASE_DONE
    from swfflow.stream.tables import REPLICAS

    name = f"bench-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True, exist_ok=True)
    with open_bus(url) as bus:
        bus.subscribe(EPIC_TOPIC, lambda d: None, durable_name=name).close()
    setup = Setup(workflow=str(WORKFLOW), profile=str(PROFILE), catalog=catalog, backend="panda",
                  state=f"sqlite:///{tmp / f'{name}.db'}", workdir=tmp / "work",
                  rucio_config=os.environ["RUCIO_CONFIG"], panda_url=panda_url,
                  options={"batch_ms": 50.0, "batch_size": 500, "tick_s": 1.0,
                           "emit_ready": True, "namespace": name, "sites": sites})
    log = tmp / f"{name}.jsonl"

    def publish() -> None:
        with open_bus(url) as sim_bus:
            simulate(tmp, text=schedule, bus=sim_bus, record=log, fast=backlog, factor=1.0,
                     namespace=name, first_run=first_run_number(),
                     counter=tmp / f"{name}.counter")

    if backlog:
        publish()
    with contextlib.ExitStack() as stack:
        bus = stack.enter_context(open_bus(url))
        bridge = build_bridge(setup, stack, publish=bus.publish)
        cpu0 = time.process_time()
        subscribe(bridge, bus, EPIC_TOPIC, name)

        def done(b) -> bool:  # the store is read only once the run left the open ones
            return b.idle and not b.runs and bool(b.store.runs((PHASE_DONE,))) and all(
                b.counters[f"replicated_{rse}"] >= b.counters["attached"] for rse in sites)

        expected = sum('"stf_gen"' in line for line in log.read_text().splitlines()) \
            if backlog else 0
        machine_before = cpu_by_process(marks)
        worker = threading.Thread(target=bridge.run, kwargs={"until": done})
        worker.start()
        if not backlog:
            publish()
        machine = {}
        while backlog and worker.is_alive() and not machine:  # until the last STF is attached
            if bridge.counters["attached"] >= expected:
                machine = cpu_spent(machine_before, cpu_by_process(marks))
            time.sleep(0.1)
        worker.join(timeout=900)
        cpu = time.process_time() - cpu0
        with bridge.store.engine.connect() as conn:
            rows = conn.execute(FILES.select()).all()
            copies = conn.execute(REPLICAS.select()).all() if sites else []
        judged = {}
        if backlog and catalog == "rucio":  # the judge works after the attach: its catch-up
            # is part of the cost
            (run,) = bridge.store.runs((PHASE_DONE,))
            rules = bridge.catalog.list_rules(run["stream_did"])
            wait_for_judge(bridge.catalog, run["stream_did"], len(rows) * len(rules))
            judged = cpu_spent(machine_before, cpu_by_process(marks))
    with open_bus(url) as bus:  # a broker keeps messages for a durable subscription: drop it
        bus.subscribe(EPIC_TOPIC, lambda d: None, durable_name=name).forget()
    sent = {}
    for line in log.read_text().splitlines():
        message = parse_message(line)
        if message.msg_type == "stf_gen":
            sent[message.filename] = message.timestamp.timestamp()
    first = min(r.attached_at for r in rows)
    last = max(r.attached_at for r in rows)
    after_first = sum(r.attached_at > first for r in rows)
    at_all_sites: dict[str, float] = {}  # file → when its last site's copy was registered
    for copy in copies:
        at_all_sites[copy.filename] = max(at_all_sites.get(copy.filename, 0.0), copy.copied_at)
    replicated = {"replicated_latencies": [at_all_sites[n] - sent[n] for n in at_all_sites],
                  "replicated_per_s": len(at_all_sites) / (max(at_all_sites.values()) - first)
                  if at_all_sites else 0.0}
    return {**replicated, "stfs": len(rows),
            "latencies": [r.attached_at - sent[r.filename] for r in rows],
            "steady_per_s": after_first / (last - first) if last > first else float("inf"),
            "metadata_done_after_s": max(r.meta_at for r in rows) - last,
            "cpu_ms_per_stf": 1000 * cpu / len(rows),
            "machine_cpu_ms_per_stf": {kind: 1000 * seconds / len(rows)
                                       for kind, seconds in machine.items()},
            "machine_cpu_ms_per_stf_judged": {kind: 1000 * seconds / len(rows)
                                              for kind, seconds in judged.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-hz", type=float, default=2.0)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--flood", type=int, default=6000)
    parser.add_argument("--raw", type=int, default=2000)
    parser.add_argument("--butterfly-flood", type=int, default=2000)
    parser.add_argument("--only-butterfly", action="store_true",
                        help="Skip phases 1-4: only the butterfly's figures.")
    parser.add_argument("--failover-seconds", type=int, default=45)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=8.0)
    parser.add_argument("--failover-flood", type=int, default=3000)
    parser.add_argument("--only-failover", action="store_true",
                        help="Only phase 6: failover, and the flood with two replicas.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from swfflow import services
    from swfflow.backends.rucio import RucioCatalog
    from swfflow.pipeline import load_template
    from swfflow.services.rucio_server import client_config, database_name
    from swfflow.testing.panda_runner import StateMachineRunner
    from swfflow.testing.panda_server import PandaContractServer

    state = Path(tempfile.mkdtemp(prefix="swfflow-bench-services-"))
    try:
        broker, _ = services.up(["activemq", "rucio"], state=state,
                                fresh_session=uuid.uuid4().hex[:12])
        os.environ["RUCIO_CONFIG"] = str(client_config(services.ServiceHome(state, "rucio")))
        failover = None
        if not args.only_butterfly:
            with tempfile.TemporaryDirectory() as tmp_name:
                failover = bridge_failover.measure(Path(tmp_name), broker.url, args)
        if args.only_failover:
            return print_json(bridge_failover.report(args, failover), args)
        catalog = RucioCatalog.from_config(os.environ["RUCIO_CONFIG"])
        marks = (str(state), database_name(services.ServiceHome(state, "rucio")))
        template, _ = load_template(str(WORKFLOW), None, str(PROFILE))
        (stream,) = [d for d in template.datasets if d.role == "stream"]
        with tempfile.TemporaryDirectory() as tmp_name, \
                PandaContractServer(runner=StateMachineRunner(run_s=0.5), tick_s=0.2) as panda:
            tmp = Path(tmp_name)
            for var in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
                os.environ[var] = panda.url
            raw = {"no metadata, 1 client": raw_rucio_rate(catalog, tmp, args.raw),
                   "no metadata, 2 clients": raw_rucio_rate(catalog, tmp, args.raw, clients=2),
                   "with metadata, 1 client": raw_rucio_rate(catalog, tmp, args.raw, meta=True),
                   "run dataset's rules, 2 clients": raw_rucio_rate(
                       catalog, tmp, args.raw, clients=2, rules=stream.rules)}
            sites = ("E1_BNL_DISK", "E1_JLAB_DISK")
            butterfly = {
                "paced": bridge_phase(tmp / "bf-paced", broker.url,
                                      SCHEDULE % (args.seconds, 1.0 / args.rate_hz),
                                      backlog=False, panda_url=panda.url, sites=sites),
                **{f"flood, {n} site(s)": bridge_phase(
                    tmp / f"bf-flood-{n}", broker.url,
                    SCHEDULE % (max(1, args.butterfly_flood // 1000), 0.001),
                    backlog=True, panda_url=panda.url, sites=sites[:n]) for n in (0, 1, 2)}}
            if args.only_butterfly:
                report_butterfly(args, butterfly)
                return
            (tmp / "paced").mkdir()
            paced = bridge_phase(tmp / "paced", broker.url,
                                 SCHEDULE % (args.seconds, 1.0 / args.rate_hz),
                                 backlog=False, panda_url=panda.url)
            # first the bridge alone: it also warms the broker up (a JVM compiles its hot code
            # in the first seconds under load), which a long-running broker has long done
            (tmp / "alone").mkdir()
            alone = bridge_phase(tmp / "alone", broker.url,
                                 SCHEDULE % (max(1, args.flood // 1000), 0.001),
                                 backlog=True, panda_url=panda.url, marks=marks,
                                 catalog="local")
            (tmp / "flood").mkdir()
            flood = bridge_phase(tmp / "flood", broker.url,
                                 SCHEDULE % (max(1, args.flood // 1000), 0.001),
                                 backlog=True, panda_url=panda.url, marks=marks)
    finally:
        services.purge(state)
    report(args, raw, paced, flood, alone)
    report_butterfly(args, butterfly)
    print_json(bridge_failover.report(args, failover), args)


def print_json(figures: dict, args) -> None:
    if args.json:
        print(json.dumps(figures, indent=2))


def report_butterfly(args, butterfly: dict) -> None:
    """Phase 5: the copies to both E1 sites, next to the same bridge without copies."""
    paced = butterfly["paced"]
    base = butterfly["flood, 0 site(s)"]
    lat = paced["replicated_latencies"]
    result = {"butterfly_paced_stfs": len(lat),
              "replicated_both_p50_s": round(statistics.median(lat), 3),
              "replicated_both_p99_s": round(percentile(lat, 0.99), 3),
              "attached_p99_s_with_copies": round(percentile(paced["latencies"], 0.99), 3),
              "flood": {label: {"stfs": phase["stfs"],
                                "attach_per_s": round(phase["steady_per_s"], 1),
                                "replicated_per_s": round(phase["replicated_per_s"], 1),
                                "attach_vs_no_copies": round(phase["steady_per_s"]
                                                             / base["steady_per_s"], 2)}
                        for label, phase in butterfly.items() if label != "paced"}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"butterfly at {args.rate_hz} Hz ({len(lat)} STFs): stf_gen → copied, verified and "
          f"registered at both E1 sites  p50 {result['replicated_both_p50_s']} s  "
          f"p99 {result['replicated_both_p99_s']} s   (stf_gen → attached p99 meanwhile "
          f"{result['attached_p99_s_with_copies']} s)")
    for label, row in result["flood"].items():
        copies = (f"; at every site {row['replicated_per_s']} STF/s (first attach → last copy)"
                  if label != "flood, 0 site(s)" else "")
        print(f"butterfly {label} ({row['stfs']} STFs): attached {row['attach_per_s']} STF/s "
              f"= {row['attach_vs_no_copies']}x the same flood without copies{copies}")


def _rounded(spent: dict[str, float]) -> dict[str, float]:
    return {kind: round(ms, 3) for kind, ms in spent.items() if ms >= 0.0005}


def report(args, raw: dict, paced: dict, flood: dict, alone: dict) -> None:
    ceiling = raw["run dataset's rules, 2 clients"]
    result = {
        "raw_rucio_attach_per_s": {k: round(v, 1) for k, v in raw.items()},
        "paced_rate_hz": args.rate_hz, "paced_stfs": paced["stfs"],
        "latency_p50_s": round(statistics.median(paced["latencies"]), 3),
        "latency_p99_s": round(percentile(paced["latencies"], 0.99), 3),
        "latency_max_s": round(max(paced["latencies"]), 3),
        "flood_stfs": flood["stfs"], "sustained_attach_per_s": round(flood["steady_per_s"], 1),
        "sustained_vs_raw_with_rules": round(flood["steady_per_s"] / ceiling, 2),
        "metadata_done_after_last_attach_s": round(flood["metadata_done_after_s"], 1),
        "bridge_cpu_ms_per_stf": round(flood["cpu_ms_per_stf"], 3),
        "bridge_stf_per_cpu_s": round(1000 / flood["cpu_ms_per_stf"]),
        "bridge_alone_attach_per_s": round(alone["steady_per_s"], 1),
        "bridge_alone_cpu_ms_per_stf": _rounded(alone["machine_cpu_ms_per_stf"]),
        "cores": os.cpu_count(),
        "cpu_ms_per_stf_while_attaching": _rounded(flood["machine_cpu_ms_per_stf"]),
        "cpu_ms_per_stf_until_judged": _rounded(flood["machine_cpu_ms_per_stf_judged"]),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for label, rate in result["raw_rucio_attach_per_s"].items():
        print(f"raw Rucio attach, {label + ':':<32} {rate:>8} files/s")
    print(f"bridge at {args.rate_hz} Hz ({paced['stfs']} STFs): stf_gen → attached  "
          f"p50 {result['latency_p50_s']} s  p99 {result['latency_p99_s']} s  "
          f"max {result['latency_max_s']} s   (goal p99 < 1 s)")
    print(f"bridge draining a flood of {flood['stfs']} STFs: sustained "
          f"{result['sustained_attach_per_s']} STF/s = {result['sustained_vs_raw_with_rules']}x "
          "raw Rucio into a dataset with the same rules   (goal ≥ 500 STF/s)")
    print(f"  metadata of the last STF set {result['metadata_done_after_last_attach_s']} s "
          f"after the last attach; bridge CPU {result['bridge_cpu_ms_per_stf']} ms per STF "
          f"(≈ {result['bridge_stf_per_cpu_s']} STF per CPU-second)")
    attaching, judged = (result["cpu_ms_per_stf_while_attaching"],
                         result["cpu_ms_per_stf_until_judged"])
    print(f"  CPU ms per STF on this machine ({result['cores']} cores), from the first STF to "
          "the last attached / to every lock made by the judge:")
    for kind in sorted(judged, key=lambda k: -judged[k]):
        print(f"    {kind:<32} {attaching.get(kind, 0.0):>7} {judged[kind]:>7}")
    for label, spent in (("while attaching", attaching), ("until judged", judged)):
        total = sum(spent.values())
        print(f"    all, {label}: {total:.2f} ms per STF: the {result['cores']} cores give "
              f"≈ {1000 * result['cores'] / total:.0f} STF/s at this cost")

    print(f"bridge alone (the same flood and broker, STFs attached in its local catalog, no "
          f"Rucio): {result['bridge_alone_attach_per_s']} STF/s; CPU ms per STF: "
          + ", ".join(f"{kind} {ms}" for kind, ms in
                      sorted(result["bridge_alone_cpu_ms_per_stf"].items(), key=lambda i: -i[1])))


if __name__ == "__main__":
    main()
