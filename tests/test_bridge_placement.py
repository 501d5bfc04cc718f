"""Where each run's processing goes (issue 15, part 2): the profile's site policy picks one
E1 site's queue per run among the sites not down; a site marked down mid-way gets no new run
until it is back."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time

from swfflow.stream.bridge.placement import POLICIES
from swfflow.stream.bridge.setup import build_bridge
from swfflow.stream.bridge.sources import replay
from swfflow.stream.replica_store import ReplicaStore
from swfflow.stream.store import PHASE_DONE
from tests.bridge_support import recorded, setup_for

BNL, JLAB = "E1_BNL_DISK", "E1_JLAB_DISK"
QUEUES = {BNL: "BNL_PROD", JLAB: "JLAB_PROD"}


def runs_of(policy, placed, count, up=(BNL, JLAB), weights=None):
    placed = list(placed)
    for _ in range(count):
        placed.append({"rse": POLICIES[policy](list(up), placed, weights or {}),
                       "phase": "prepared"})
    return [p["rse"] for p in placed]


def test_round_robin_alternates_and_weights_keep_their_shares():
    assert runs_of("round_robin", [], 6) == [BNL, JLAB] * 3
    assert runs_of("weights", [], 6, weights={BNL: 2, JLAB: 1}) == [BNL, BNL, JLAB] * 2
    for weights, share in (({BNL: 1, JLAB: 3}, (3, 9)), ({BNL: 5, JLAB: 1}, (10, 2))):
        sites = runs_of("weights", [], 12, weights=weights)
        assert (sites.count(BNL), sites.count(JLAB)) == share
        # never more than one run ahead of its share at any point (smooth)
        for n in range(1, 13):
            assert abs(sites[:n].count(BNL) - n * weights[BNL] / sum(weights.values())) <= 1


def test_least_loaded_counts_only_open_runs_and_a_down_site_gets_none():
    placed = [{"rse": BNL, "phase": "done"}, {"rse": BNL, "phase": "done"},
              {"rse": JLAB, "phase": "prepared"}]
    assert POLICIES["least_loaded"]([BNL, JLAB], placed, {}) == BNL
    assert runs_of("round_robin", [], 3, up=(JLAB,)) == [JLAB] * 3


THREE_RUNS = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,2", stf_interval: 1}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,2", stf_interval: 1}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,2", stf_interval: 1}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""


def test_runs_go_to_the_sites_in_turn_and_a_site_down_gets_no_new_run(tmp_path):
    log, sim = recorded(tmp_path, text=THREE_RUNS)
    runs = [r.run_id for r in sim.runs]
    assert len(runs) == 3
    profile = tmp_path / "profile.yaml"
    profile.write_text("scopes:\n  output: user.swfflow\nbridge:\n"
                       f"  site_queues: {json.dumps(QUEUES)}\n  site_policy: round_robin\n")
    setup = dataclasses.replace(setup_for(tmp_path, backend="dryrun"), profile=str(profile))
    lines = log.read_text().splitlines()
    second = next(i for i, line in enumerate(lines)
                  if json.loads(line)["msg_type"] == "run_imminent"
                  and json.loads(line)["run_id"] == runs[1])
    first_part, rest = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first_part.write_text("\n".join(lines[:second]) + "\n")
    rest.write_text("\n".join(lines[second:]) + "\n")
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup, stack)
        replay(bridge, first_part)
        deadline = time.monotonic() + 60
        bridge.run(until=lambda b: time.monotonic() > deadline or (
            b.idle and (b.store.run(runs[0]) or {}).get("phase") == PHASE_DONE))
        # JLab, next in turn, goes down (its health checks failed): runs 2 and 3 go to BNL
        ReplicaStore(bridge.store.engine).set_site(JLAB, True, "health check (test)")
        replay(bridge, rest)
        bridge.run(until=lambda b: time.monotonic() > deadline or (
            b.idle and all((b.store.run(r) or {}).get("phase") == PHASE_DONE for r in runs)))
        assert [bridge.store.run(r)["phase"] for r in runs] == [PHASE_DONE] * 3
    submitted = [json.loads(line) for line in
                 (tmp_path / "work" / "dryrun-tasks.jsonl").read_text().splitlines()]
    site_of = {}
    for event in submitted:
        if event["event"] == "submit":
            run = next(r for r in runs if f".{r}." in event["name"])
            site_of.setdefault(run, set()).add(event["params"]["site"])
    assert site_of == {runs[0]: {"BNL_PROD"}, runs[1]: {"BNL_PROD"}, runs[2]: {"BNL_PROD"}}
