"""PanDA's watcher for lost heartbeats, alone: the "General Watcher" part of
``pandaserver/daemons/scripts/copyArchive.py`` (production runs all of copyArchive every few
minutes; the rest of it archives, reassigns and cleans up, which a test server does not need).

Jobs ``running``/``starting``/``stagein``/``stageout`` whose last report is older than the
``HEARTBEAT_TIMEOUT_production`` hours of PanDA's ``config`` table (production default: 2) are
handed to PanDA's own ``Watcher``, which fails them with "lost heartbeat" (EC_Watcher); JEDI
then retries the job's files in a new job while the task has attempts left. The test services
set that timeout to a couple of minutes (swfflow/services/panda_db.py). Imported by
``swf_adder.py`` in the PanDA venv; never imports swfflow."""

import datetime
import sys

from pandacommon.pandautils.PandaUtils import naive_utcnow

HEARTBEAT_KEY = "HEARTBEAT_TIMEOUT_production"
DEFAULT_HOURS = 2  # copyArchive's when the config table has no row
ACTIVE_STATES = ("running", "starting", "stagein", "stageout")
SQL = ("SELECT PandaID FROM ATLAS_PANDA.jobsActive4 WHERE jobStatus IN "
       "(:s1,:s2,:s3,:s4) AND modificationTime<:limit")


class LostHeartbeats:
    def __init__(self):
        from pandaserver.config import panda_config
        from pandaserver.taskbuffer.TaskBuffer import TaskBuffer

        self.task_buffer = TaskBuffer()
        self.task_buffer.init(panda_config.dbhost, panda_config.dbpasswd, nDBConnection=1,
                              useTimeout=True)

    def timeout_hours(self) -> float:
        value = self.task_buffer.getConfigValue("watcher", HEARTBEAT_KEY, "pandaserver",
                                                "atlas")
        return float(value) if value is not None else DEFAULT_HOURS

    def round(self) -> int:
        """Fail the jobs silent for longer than the timeout; how many were found."""
        from pandaserver.jobdispatcher.Watcher import Watcher

        hours = self.timeout_hours()
        limit = naive_utcnow() - datetime.timedelta(hours=hours)
        var_map = {f":s{i}": state for i, state in enumerate(ACTIVE_STATES, 1)}
        var_map[":limit"] = limit
        _, rows = self.task_buffer.querySQLS(SQL, var_map)
        for (panda_id,) in rows or []:
            sys.stderr.write(f"lost heartbeat: job {panda_id} (silent > {hours} h)\n")
            # what copyArchive does: one Watcher per job, its own check of the same limit
            watcher = Watcher(self.task_buffer, panda_id, single=True, sleepTime=60 * hours)
            watcher.start()
            watcher.join()
        return len(rows or [])
