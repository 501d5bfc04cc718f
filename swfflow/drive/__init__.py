"""The one engine: a plan instance (a run, or a batch) walked by
:class:`~swfflow.drive.flow_run.FlowRun` through an Executor and a Catalog.

Used unchanged by ``swfflow run`` (local backends), ``swfflow submit`` (PanDA + Rucio) and the
stream bridge (which calls :meth:`FlowRun.tick` from its loop as messages arrive).
"""

from swfflow.drive.flow_run import FlowRun
from swfflow.drive.phases import TaskPhase
from swfflow.drive.store import DriverStore

__all__ = ["DriverStore", "FlowRun", "TaskPhase"]
