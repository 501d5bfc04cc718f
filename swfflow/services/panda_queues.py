"""The PanDA queues of the local PanDA: one per Echelon-1 site, each writing to that site's
Rucio storage (reference/panda-server.md, "Seed rows that worked").

PanDA's configurator fills these tables from CRIC in production; here they are rows written
into each fresh database (``seed_sql``): the site (``site``), its storage endpoint
(``ddm_endpoint``, named like the local Rucio's RSE so JEDI's Rucio client and the pilot
find the files there), the queue (``panda_site`` and its CRIC JSON in ``schedconfig_json``)
and which endpoint the queue reads and writes (``panda_ddm_relation``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

CLOUD = "EIC"  # the profile's workingGroup: JEDI brokers in cloud = workingGroup without a site


@dataclass(frozen=True)
class Queue:
    name: str   # the PanDA queue (what a task's ``site`` names, what a pilot asks for)
    site: str   # the CRIC site
    rse: str    # the Rucio storage element the queue reads from and writes to


QUEUES = (Queue("BNL_PanDA_1", "BNL", "E1_BNL_DISK"),
          Queue("JLAB_PanDA_1", "JLab", "E1_JLAB_DISK"))


def by_name(name: str) -> Queue | None:
    return next((q for q in QUEUES if q.name == name), None)


def queue_json(queue: Queue, vo: str) -> dict:
    """The queue's CRIC description, the fields JEDI's SiteMapper and brokerage read.

    ``corecount = -1`` keeps each task's own ``coreCount`` on its jobs (a positive value
    replaces it, 0 makes every job single-core); ``catchall`` without ``singularity`` and
    an empty ``container_type`` let a pilot run jobs without a container runtime."""
    return {"status": "online", "type": "unified", "queue_type": "unified",
            "vo_name": vo, "cloud": CLOUD, "pandasite": queue.site, "atlas_site": queue.site,
            "nickname": queue.name, "siteid": queue.name, "ddm": queue.rse,
            "corecount": -1, "capability": "ucore", "maxtime": 86400, "mintime": 0,
            "maxrss": 0, "minrss": 0, "maxwdir": 0, "catchall": "allow_no_pilot",
            "container_type": "", "jobseed": "std", "tier": "T1", "state": "ACTIVE"}


def _q(value: object) -> str:
    """A SQL literal; the values are this module's own constants."""
    return "'" + str(value).replace("'", "''") + "'"


def seed_sql(vo: str) -> str:
    rows = []
    for q in QUEUES:
        rows += [
            (f"insert into doma_panda.site (site_name, role, tier_level, state) values "
             f"({_q(q.site)}, 'nucleus', 1, 'ACTIVE');"),
            ("insert into doma_panda.ddm_endpoint (ddm_endpoint_name, site_name, "
             "ddm_spacetoken_name, space_total, space_free, space_used, is_tape, type, "
             "blacklisted, blacklisted_read, blacklisted_write, detailed_status) values "
             f"({_q(q.rse)}, {_q(q.site)}, {_q(q.rse)}, 100000, 100000, 0, 'N', 'DATADISK', "
             "'N', 'N', 'N', '{}');"),
            ("insert into doma_panda.panda_site (panda_site_name, site_name, storage_site_name, "
             f"default_ddm_endpoint, is_local) values ({_q(q.name)}, {_q(q.site)}, "
             f"{_q(q.site)}, {_q(q.rse)}, 'Y');"),
            ("insert into doma_panda.panda_ddm_relation (panda_site_name, ddm_endpoint_name, "
             "is_local, roles, order_read, order_write, default_read, default_write, scope) "
             f"values ({_q(q.name)}, {_q(q.rse)}, 'Y', 'read_lan,write_lan', 1, 1, 'Y', 'Y', "
             "'default');"),
            ("insert into doma_panda.schedconfig_json (panda_queue, data, last_update) values "
             f"({_q(q.name)}, {_q(json.dumps(queue_json(q, vo)))}, now());"),
        ]
    return "\n".join(rows)
