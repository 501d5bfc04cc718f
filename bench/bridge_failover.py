"""Phase 6 of ``bench/bridge.py`` (issue 15, part 4): two ``swfflow bridge`` processes on one
PostgreSQL state store and one subscription, one active and one standby.

- **failover**: a run paced at ``--rate-hz`` with the butterfly on (both E1 sites); the active
  bridge is killed (SIGKILL) ``--kills`` times, ``--kill-every`` s apart, a new standby started
  after each takeover. Per kill: seconds from the kill until the standby is active (it holds
  the lock) and until it attached an STF; over the whole run (kills included) stf_gen sent →
  attached and → copied, verified and registered at both E1 sites, p50/p99.
- **flood with two replicas next to one**: a recorded flood of ``--failover-flood`` STFs is
  published into a new subscription; one bridge, then two, start as standbys (the bench holds
  the lock until they are all up), then the lock is released and one of them drains the
  backlog, beside the other standby (if any); STFs attached per second from the first attach
  to the last, and the ratio.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from pathlib import Path

from tests.bridge_support import (Bridges, butterfly_profile, first_run_number, pg_database,
                                  simulate, wait_for)

SCHEDULE = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,%d", stf_interval: %s}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""


def _subscribe(url: str, name: str) -> None:
    from swfflow.stream.bus import open_bus
    from swfflow.stream.messages import EPIC_TOPIC

    with open_bus(url) as bus:
        bus.subscribe(EPIC_TOPIC, lambda d: None, durable_name=name).close()


def _forget(url: str, name: str) -> None:
    from swfflow.stream.bus import open_bus
    from swfflow.stream.messages import EPIC_TOPIC

    with open_bus(url) as bus:  # a broker keeps messages for a durable subscription: drop it
        bus.subscribe(EPIC_TOPIC, lambda d: None, durable_name=name).forget()


def _sent_at(log: Path) -> dict[str, float]:
    from swfflow.stream.messages import parse_message

    sent = {}
    for line in log.read_text().splitlines():
        message = parse_message(line)
        if message.msg_type == "stf_gen":
            sent[message.filename] = message.timestamp.timestamp()
    return sent


def failover(tmp: Path, url: str, *, rate_hz: float, seconds: int, kills: int,
             kill_every: float) -> dict:
    """The paced run with ``kills`` SIGKILLs of the active bridge."""
    from sqlalchemy import select

    from swfflow.stream.bus import open_bus
    from swfflow.stream.tables import FILES, REPLICAS, RUNS

    tmp.mkdir(parents=True, exist_ok=True)
    name = f"bench-fo-{uuid.uuid4().hex[:8]}"
    log = tmp / "messages.jsonl"
    _subscribe(url, name)
    with pg_database("swfflow_bench") as state:
        bridges = Bridges(tmp, url, state, name, butterfly_profile(tmp))
        try:
            bridges.start_pair()

            def paced() -> None:
                with open_bus(url) as bus:
                    simulate(tmp, text=SCHEDULE % (seconds, 1.0 / rate_hz), bus=bus, record=log,
                             fast=False, namespace=name, first_run=first_run_number(),
                             counter=tmp / "counter")

            sim = threading.Thread(target=paced)
            sim.start()
            times = []
            for _ in range(kills):
                time.sleep(kill_every)
                times.append(bridges.kill_active(timeout=60, attach_timeout=60))
            sim.join(timeout=seconds + 60)

            def finished() -> bool:
                with bridges.engine.connect() as conn:
                    phase = conn.execute(select(RUNS.c.phase)).scalar()
                    copies = len(conn.execute(select(REPLICAS.c.filename)).all())
                    files = len(conn.execute(select(FILES.c.filename)).all())
                return phase == "done" and copies == 2 * files

            wait_for(finished, 180, "the run done and copied to both sites\n" + bridges.logs(),
                     every=0.5)
            with bridges.engine.connect() as conn:
                rows = conn.execute(select(FILES)).all()
                copies = conn.execute(select(REPLICAS)).all()
        finally:
            bridges.stop()
    _forget(url, name)
    sent = _sent_at(log)
    both: dict[str, float] = {}
    for copy in copies:
        both[copy.filename] = max(both.get(copy.filename, 0.0), copy.copied_at)
    attached = [r.attached_at - sent[r.filename] for r in rows]
    replicated = [both[n] - sent[n] for n in both]
    return {"stfs": len(rows), "kills": times,
            "attached_p50_s": statistics.median(attached),
            "attached_p99_s": statistics.quantiles(attached, n=100)[98],
            "replicated_p50_s": statistics.median(replicated),
            "replicated_p99_s": statistics.quantiles(replicated, n=100)[98]}


def flood_rate(tmp: Path, url: str, stfs: int, replicas: int) -> dict:
    """A recorded flood published into the subscription of ``replicas`` settled bridges."""
    from sqlalchemy import select

    from swfflow.stream.bus import open_bus
    from swfflow.stream.messages import EPIC_TOPIC
    from swfflow.stream.tables import FILES

    tmp.mkdir(parents=True, exist_ok=True)
    name = f"bench-rep{replicas}-{uuid.uuid4().hex[:8]}"
    log = tmp / "flood.jsonl"
    simulate(tmp, text=SCHEDULE % (max(1, stfs // 1000), 0.001), record=log, fast=True,
             namespace=name, first_run=first_run_number(), counter=tmp / "counter")
    bodies = [line for line in log.read_text().splitlines() if line.strip()]
    expected = sum('"stf_gen"' in body for body in bodies)
    _subscribe(url, name)
    with open_bus(url) as bus:  # the whole backlog waits in the subscription first
        for body in bodies:
            bus.publish(EPIC_TOPIC, body)
    with pg_database("swfflow_bench") as state:
        bridges = Bridges(tmp, url, state, name, butterfly_profile(tmp, ()))
        # the bench holds the lock while the bridges start: each waits as a standby, fully
        # started; released, one of them drains the backlog with the other (if any) beside it
        from swfflow.stream.bridge.leader import bridge_lock

        gate = bridge_lock(bridges.engine, name)
        assert gate.try_acquire()
        try:
            for _ in range(replicas):
                bridges.start()
            wait_for(lambda: bridges.lock_sessions() == replicas + 1, 120,
                     "the bridges waiting for the lock\n" + bridges.logs())
            gate.release()

            def attached() -> list:
                try:
                    with bridges.engine.connect() as conn:
                        return conn.execute(select(FILES.c.attached_at).where(
                            FILES.c.attached_at.is_not(None))).scalars().all()
                except Exception:  # noqa: BLE001 - no bridge active yet: no tables yet
                    return []

            times = wait_for(lambda: (lambda t: t if len(t) >= expected else None)(attached()),
                             300, "the flood attached\n" + bridges.logs(), every=0.2)
        finally:
            bridges.stop()
    _forget(url, name)
    first, last = min(times), max(times)
    return {"stfs": len(times),
            "per_s": sum(t > first for t in times) / (last - first) if last > first else 0.0}


def measure(tmp: Path, url: str, args) -> dict:
    fo = failover(tmp / "failover", url, rate_hz=args.rate_hz, seconds=args.failover_seconds,
                  kills=args.kills, kill_every=args.kill_every)
    one = flood_rate(tmp / "flood-1", url, args.failover_flood, 1)
    two = flood_rate(tmp / "flood-2", url, args.failover_flood, 2)
    return {"failover": fo, "flood_one": one, "flood_two": two}


def report(args, result: dict) -> dict:
    fo, one, two = result["failover"], result["flood_one"], result["flood_two"]
    active = [k[0] for k in fo["kills"]]
    attached = [k[1] for k in fo["kills"]]
    figures = {
        "failover_kills": len(fo["kills"]),
        "failover_to_active_s": [round(s, 2) for s in active],
        "failover_to_next_attach_s": [round(s, 2) for s in attached],
        "failover_to_next_attach_max_s": round(max(attached), 2) if attached else None,
        "with_failovers_stfs": fo["stfs"],
        "with_failovers_attached_p50_s": round(fo["attached_p50_s"], 3),
        "with_failovers_attached_p99_s": round(fo["attached_p99_s"], 3),
        "with_failovers_replicated_both_p50_s": round(fo["replicated_p50_s"], 3),
        "with_failovers_replicated_both_p99_s": round(fo["replicated_p99_s"], 3),
        "flood_one_bridge_per_s": round(one["per_s"], 1),
        "flood_two_replicas_per_s": round(two["per_s"], 1),
        "flood_two_vs_one": round(two["per_s"] / one["per_s"], 2) if one["per_s"] else None,
    }
    if args.json:
        return figures
    print(f"failover ({len(fo['kills'])} × kill -9 of the active bridge at {args.rate_hz} Hz): "
          f"kill → standby active {', '.join(f'{s:.2f}' for s in active)} s; "
          f"kill → next STF attached {', '.join(f'{s:.2f}' for s in attached)} s "
          f"(max {figures['failover_to_next_attach_max_s']} s; req < 10 s)")
    print(f"  over that run ({fo['stfs']} STFs, kills included): stf_gen → attached p50 "
          f"{figures['with_failovers_attached_p50_s']} s p99 "
          f"{figures['with_failovers_attached_p99_s']} s; → replicated at both E1 sites p50 "
          f"{figures['with_failovers_replicated_both_p50_s']} s p99 "
          f"{figures['with_failovers_replicated_both_p99_s']} s")
    print(f"flood of {two['stfs']} STFs into Rucio: one bridge {figures['flood_one_bridge_per_s']}"
          f" STF/s, an active bridge with a standby {figures['flood_two_replicas_per_s']} STF/s "
          f"= {figures['flood_two_vs_one']}x")
    return figures
