"""The driver: one plan instance (a run, or a batch) driven through an Executor and a Catalog.

Used unchanged by ``swfflow run`` (local backends), ``swfflow submit`` (PanDA + Rucio) and the
stream bridge (event-driven: it calls :meth:`Driver.tick` when messages arrive).
"""

from swfflow.drive.driver import Driver, DriverTask, TaskPhase
from swfflow.drive.store import DriverStore

__all__ = ["Driver", "DriverStore", "DriverTask", "TaskPhase"]
