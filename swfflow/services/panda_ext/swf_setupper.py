"""PanDA's setupper for swfflow's VO: run inside panda-server / JEDI (their venv; never
imports swfflow).

PanDA activates a job only when every input file is ``ready`` at the job's site. ATLAS's
setupper gets there by subscribing a dispatch dataset to the site and waiting for the
transfer; swfflow's pilot stages every input in from Rucio wherever a replica is, so the
inputs JEDI took from the Rucio dataset are ready as they are. Log files get their GUID here,
as the dummy setupper does."""

import uuid

from pandaserver.dataservice.setupper_plugin_base import SetupperPluginBase


class SwfSetupperPlugin(SetupperPluginBase):
    def __init__(self, taskBuffer, jobs, logger, **params):
        SetupperPluginBase.__init__(self, taskBuffer, jobs, logger, params, {})

    def run(self):
        for job in self.jobs:
            for spec in job.Files:
                if spec.type in ("input", "pseudo_input") and spec.status != "ready":
                    spec.status = "ready"
                elif spec.type == "log" and not spec.GUID:
                    spec.GUID = str(uuid.uuid4())
            job.dispatchDBlock = "NULL"  # nothing to dispatch: the job activates now

    def post_run(self):
        pass
