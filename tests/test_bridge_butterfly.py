"""The butterfly (issue 15, part 2), against the real Rucio server: every STF copied from the
DAQ buffer to both E1 RSEs, verified (adler32 read back), registered as a replica at each; the
running checksums of both sites equal the DAQ's at run end; a site marked down (configuration
or failed health checks) gets nothing until it is back, then catches up; a corrupt copy is an
alarm and a dead letter naming the file."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import pytest

from swfflow.checksum import adler32_file
from swfflow.stream.bridge.setup import build_bridge
from swfflow.stream.bridge.sources import replay
from swfflow.stream.replica_store import ReplicaStore
from swfflow.stream.status import run_status
from swfflow.stream.store import PHASE_DONE
from swfflow.stream.transfer import LocalTransfer, TransferError, running_checksum
from tests.bridge_support import first_run_number, recorded, setup_for

pytestmark = pytest.mark.services
SITES = ("E1_BNL_DISK", "E1_JLAB_DISK")
TEXT = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,8", stf_interval: 1}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""


def butterfly_setup(tmp: Path, rucio_env, *, down: tuple[str, ...] = (), **options):
    profile = tmp / "profile.yaml"
    profile.write_text("scopes:\n  output: user.swfflow\n"
                       f"bridge:\n  sites: [{', '.join(SITES)}]\n")
    options.setdefault("site_retry_s", 0.5)
    setup = setup_for(tmp, catalog="rucio", rucio_config=rucio_env["RUCIO_CONFIG"],
                      backend="dryrun", sites_down=down, **options)
    return dataclasses.replace(setup, profile=str(profile))


def run_until(bridge, condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    bridge.run(until=lambda b: condition(b) or time.monotonic() > deadline)
    assert condition(bridge), (dict(bridge.counters), bridge.store.runs(),
                               ReplicaStore(bridge.store.engine).sums(
                                   bridge.store.runs()[0]["run_id"]),
                               {k: g.last_error for k, g in bridge.gates.items()})


def checked(run: str, sites=SITES):
    def condition(bridge) -> bool:
        sums = ReplicaStore(bridge.store.engine).sums(run)
        return (bridge.idle and bridge.source_done.is_set()
                and (bridge.store.run(run) or {}).get("phase") == PHASE_DONE
                and all(sums.get(rse, {}).get("checked_at") for rse in sites))
    return condition


def replicas_in_rucio(rucio_catalog, did: str) -> dict[str, set[str]]:
    """file name → the RSEs Rucio has a replica of it at (the public client call)."""
    from rucio.client import Client

    scope, name = did.split(":", 1)
    client = Client()
    return {r["name"]: set(r["rses"]) for r in client.list_replicas([{"scope": scope,
                                                                      "name": name}])}


def test_every_stf_is_copied_verified_and_registered_at_both_e1_sites(tmp_path, rucio_env,
                                                                      rucio_catalog):
    run = str(first_run_number())
    log, sim = recorded(tmp_path, text=TEXT, first_run=int(run))
    setup = butterfly_setup(tmp_path, rucio_env)
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup, stack)
        replay(bridge, log)
        run_until(bridge, checked(run))
        stream = bridge.store.run(run)["stream_did"]
        replicas = replicas_in_rucio(rucio_catalog, stream)
        assert len(replicas) == sim.stf_files == 8
        assert all(rses == {"DAQ_DISK", *SITES} for rses in replicas.values()), replicas
        buffer = tmp_path / "buffer" / f"swf.{run}.run"
        for rse in SITES:  # the copies are real files, equal to the DAQ's
            paths = rucio_catalog.replica_paths(rse, [f"group.daq:{n}" for n in replicas])
            for did, path in paths.items():
                name = did.split(":", 1)[1]
                assert adler32_file(path) == adler32_file(buffer / name)
        daq = running_checksum(sorted((p.name, adler32_file(p)) for p in buffer.glob("*.stf")))
        status = run_status(setup.state, run)["runs"][0]
        assert status["sites"] == {rse: {"files": 8, "checksum": daq, "checked": True,
                                         "alarm": None} for rse in SITES}
        assert bridge.store.dead_letters() == []
        assert bridge.counters["replicated_E1_BNL_DISK"] == 8
        # the run dataset's butterfly rules are satisfied by the copies (no transfer daemon
        # runs here: without them they would stay REPLICATING)
        from rucio.client import Client

        scope, name = stream.split(":", 1)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # the judge makes each file's lock after attaching
            rules = list(Client().list_did_rules(scope, name))
            if rules and all(r["state"] == "OK" and r["locks_ok_cnt"] == 8 for r in rules):
                break
            time.sleep(1)
        assert {r["rse_expression"]: (r["state"], r["locks_ok_cnt"]) for r in rules} == \
            {rse: ("OK", 8) for rse in SITES}


class Flaky(LocalTransfer):
    """The local transfer, failing for one site while ``broken`` (a site outage), and
    corrupting the copy of the files named in ``corrupt``."""

    def __init__(self, site: str):
        self.site, self.broken, self.corrupt, self.failed = site, True, set(), 0

    def copy(self, source: str, destination: str) -> str:
        if self.broken and f"/{self.site}/" in destination:
            self.failed += 1
            raise TransferError(f"{self.site} unreachable (injected)")
        adler = super().copy(source, destination)
        if Path(source).name in self.corrupt and "/E1_JLAB_DISK/" in destination:
            return "deadbeef"
        return adler


def test_a_site_down_gets_nothing_then_catches_up_and_the_sums_agree(tmp_path, rucio_env,
                                                                     rucio_catalog):
    run = str(first_run_number())
    log, _ = recorded(tmp_path, text=TEXT, first_run=int(run))
    down = butterfly_setup(tmp_path, rucio_env, down=("E1_BNL_DISK",))
    with contextlib.ExitStack() as stack:  # BNL marked down (as --site-down does)
        bridge = build_bridge(down, stack)
        replay(bridge, log)
        run_until(bridge, checked(run, sites=("E1_JLAB_DISK",)))
        stream = bridge.store.run(run)["stream_did"]
        assert all(rses == {"DAQ_DISK", "E1_JLAB_DISK"}
                   for rses in replicas_in_rucio(rucio_catalog, stream).values())
        status = run_status(down.state)
        assert status["sites"]["E1_BNL_DISK"]["down"] is True
        assert "E1_BNL_DISK" not in status["runs"][0]["sites"]
    with contextlib.ExitStack() as stack:  # back: the next bridge catches up on the done run
        bridge = build_bridge(butterfly_setup(tmp_path, rucio_env), stack)
        bridge.source_done.set()  # no messages this time: only the catch-up
        run_until(bridge, checked(run), timeout=60)
        assert all(rses == {"DAQ_DISK", *SITES}
                   for rses in replicas_in_rucio(rucio_catalog, stream).values())
        sums = ReplicaStore(bridge.store.engine).sums(run)
        assert sums["E1_BNL_DISK"]["checksum"] == sums["E1_JLAB_DISK"]["checksum"]
        assert run_status(down.state)["sites"]["E1_BNL_DISK"]["down"] is False


def test_failed_health_checks_mark_a_site_down_until_it_answers_again(tmp_path, rucio_env,
                                                                      rucio_catalog):
    run = str(first_run_number())
    log, _ = recorded(tmp_path, text=TEXT, first_run=int(run))
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(butterfly_setup(tmp_path, rucio_env, replicate_batch=2), stack)
        flaky = Flaky("E1_BNL_DISK")
        bridge.work.lanes.butterfly.transfer = flaky
        replay(bridge, log)
        run_until(bridge, lambda b: ReplicaStore(b.store.engine).sites()
                  .get("E1_BNL_DISK", {}).get("down") and b.idle, timeout=60)
        reason = ReplicaStore(bridge.store.engine).sites()["E1_BNL_DISK"]["reason"]
        assert "3 failed copies in a row" in reason and "unreachable (injected)" in reason
        # JLab is not held up by BNL
        run_until(bridge, checked(run, sites=("E1_JLAB_DISK",)))
        flaky.broken = False  # BNL answers again: it is caught up
        run_until(bridge, checked(run))
        assert not ReplicaStore(bridge.store.engine).sites()["E1_BNL_DISK"]["down"]
        sums = ReplicaStore(bridge.store.engine).sums(run)
        assert sums["E1_BNL_DISK"]["checksum"] == sums["E1_JLAB_DISK"]["checksum"]
        assert sums["E1_BNL_DISK"]["files"] == 8


def test_a_corrupt_copy_is_an_alarm_and_a_dead_letter_naming_the_file(tmp_path, rucio_env):
    run = str(first_run_number())
    log, _ = recorded(tmp_path, text=TEXT, first_run=int(run))
    bad = f"swf.{run}.000003.stf"
    setup = butterfly_setup(tmp_path, rucio_env)
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup, stack)
        flaky = Flaky("nowhere")
        flaky.broken, flaky.corrupt = False, {bad}
        bridge.work.lanes.butterfly.transfer = flaky
        replay(bridge, log)
        run_until(bridge, lambda b: checked(run, ("E1_BNL_DISK",))(b) and
                  b.counters["replica_alarms"] >= 1)
        (dead,) = bridge.store.dead_letters()
        assert dead["msg_type"] == "replica" and bad in dead["reason"]
        assert json.loads(dead["body"])["files"] == [bad]
        assert "E1_JLAB_DISK" in dead["reason"] and "deadbeef" in dead["reason"]
        sums = ReplicaStore(bridge.store.engine).sums(run)
        assert sums["E1_JLAB_DISK"]["files"] == 7  # the bad copy is not registered
        assert sums["E1_BNL_DISK"]["alarm"] is None
