"""Where a run's processing goes (issue 15, part 2): the PanDA queue of one E1 site per run,
chosen by the profile's ``bridge.site_policy`` among the sites of ``bridge.site_queues`` that
are not down (the butterfly's ``br_sites``: profile, ``--site-down``, failed health checks).

- ``round_robin``: the sites in turn, run after run;
- ``weights``: smooth weighted round robin by ``bridge.site_weights`` (2:1 → BNL, BNL, JLab…);
- ``least_loaded``: the site with the fewest open runs.

A run's choice is stored (``br_run_sites``), so a restarted bridge sends the rest of its tasks
to the same queue. When every site is down the run goes to the first one anyway: processing
waits there, archiving does not wait for it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from swfflow.plan.model import Plan
from swfflow.stream.tables import METADATA, OPEN_PHASES, RUN_SITES, RUNS, SITES

log = logging.getLogger("swfflow.bridge")
Policy = Callable[[Sequence[str], list[dict[str, Any]], dict[str, float]], str]


def round_robin(up: Sequence[str], placed: list[dict[str, Any]], weights) -> str:
    last = placed[-1]["rse"] if placed else None
    after = list(up).index(last) + 1 if last in up else 0
    return up[after % len(up)]


def weighted(up: Sequence[str], placed: list[dict[str, Any]], weights) -> str:
    counts = Counter(p["rse"] for p in placed)
    # the site furthest below its share of the runs placed so far (ties: profile order)
    return min(up, key=lambda rse: (counts[rse] + 1) / max(weights.get(rse, 1.0), 1e-9))


def least_loaded(up: Sequence[str], placed: list[dict[str, Any]], weights) -> str:
    open_runs = Counter(p["rse"] for p in placed if p["phase"] in OPEN_PHASES)
    return min(up, key=lambda rse: open_runs[rse])


POLICIES: dict[str, Policy] = {"round_robin": round_robin, "weights": weighted,
                               "least_loaded": least_loaded}


class Placement:
    def __init__(self, engine: Engine, profile: dict[str, Any], down: Sequence[str] = ()):
        section = profile.get("bridge") or {}
        self.engine = engine
        self.queues: dict[str, str] = dict(section.get("site_queues") or {})
        self.policy = POLICIES[section.get("site_policy") or "round_robin"]
        self.weights = dict(section.get("site_weights") or {})
        self.config_down = set(section.get("sites_down") or ()) | set(down)  # and --site-down
        METADATA.create_all(engine)

    def place(self, plan: Plan, run_id: str) -> Plan:
        """The run's plan with every task sent to its site's queue (unchanged without
        ``site_queues``)."""
        if not self.queues:
            return plan
        queue = self.site_of(run_id)[1]
        for task in plan.tasks:
            task.params["site"] = queue
        return plan

    def site_of(self, run_id: str) -> tuple[str, str]:
        """(RSE, queue) of the run: chosen once, then kept."""
        with self.engine.connect() as conn:
            row = conn.execute(select(RUN_SITES).where(RUN_SITES.c.run_id == run_id)).first()
            if row is not None:
                return row.rse, row.queue
            down = {r.rse for r in conn.execute(select(SITES.c.rse).where(SITES.c.down))}
            placed = [dict(r._mapping) for r in conn.execute(
                select(RUN_SITES.c.rse, RUNS.c.phase).join(RUNS, RUNS.c.run_id ==
                                                           RUN_SITES.c.run_id)
                .order_by(RUN_SITES.c.chosen_at))]
        sites = list(self.queues)
        up = [rse for rse in sites if rse not in down | self.config_down] or sites[:1]
        rse = self.policy(up, placed, self.weights)
        try:
            with self.engine.begin() as conn:
                conn.execute(RUN_SITES.insert().values(run_id=run_id, rse=rse,
                                                       queue=self.queues[rse],
                                                       chosen_at=time.time()))
        except IntegrityError:  # chosen meanwhile (another bridge): take that one
            return self.site_of(run_id)
        log.info("run %s: processing at %s (queue %s; sites down: %s)", run_id, rse,
                 self.queues[rse], ", ".join(sorted(down)) or "none")
        return rse, self.queues[rse]
