"""Values that are datasets still being written: passed on unopened, looked into only when
someone needs the files.

A task that reads its inputs from datasets (the run's stream, a producer it pipelines on)
gets :class:`DatasetRef` s, not file lists, so it can start while its producer still runs
(JEDI ``noWaitParent`` / ``runUntilClosed``). Whoever needs the actual files — an expression,
a ``when``, a task that takes files as values, the workflow's outputs — calls
:meth:`DatasetValues.materialize`, which waits for the dataset's writer to finish (or, for the
run's stream, for the dataset to be closed) and lists it.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swfflow.backends.base import Catalog
from swfflow.bundle import bundle_members
from swfflow.plan.model import TaskSpec
from swfflow.errors import RunFailed

# how often a wait for a closing stream looks at the catalog
_POLL_S = 0.1
_JOB_NUMBER = re.compile(r"\._(\d{6})\.")  # JEDI-style file names: <dataset>.<task>._<job>.…

# writer task key → (its master dataset, that dataset's writer, {job number: input DIDs})
Lineage = Callable[[str], tuple[str | None, str | None, dict[int, list[str]]]]


@dataclass(frozen=True)
class DatasetRef:
    did: str
    writer: str | None  # key of the task that writes it; None: the run's stream
    single: bool = False  # the port holds one File (a gather's result), not a list


def dataset_refs(value: Any) -> list[DatasetRef]:
    """Every DatasetRef inside ``value``."""
    if isinstance(value, DatasetRef):
        return [value]
    if isinstance(value, list):
        return [ref for item in value for ref in dataset_refs(item)]
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in dataset_refs(item)]
    return []


class DatasetValues:
    """``wait_writer(key)`` blocks until the task ``key`` is final and raises
    :class:`RunFailed` if it failed."""

    def __init__(self, catalog: Catalog, wait_writer: Callable[[str], None],
                 stopped: threading.Event, lock: threading.Lock, lineage: Lineage | None = None,
                 waiting: Callable[[], AbstractContextManager[None]] = nullcontext):
        self.catalog = catalog
        self.waiting = waiting  # around a wait for the stream to close (the run's bookkeeping)
        self.lineage = lineage
        self.wait_writer = wait_writer
        self.stopped = stopped
        self.lock = lock

    def materialize(self, value: Any) -> Any:
        if isinstance(value, DatasetRef):
            return self.files(value)
        if isinstance(value, list):
            return [self.materialize(item) for item in value]
        if isinstance(value, dict) and dataset_refs(value):
            return {key: self.materialize(item) for key, item in value.items()}
        return value

    def wait(self, ref: DatasetRef) -> None:
        """Until no file will be added to the dataset."""
        if ref.writer is not None:
            self.wait_writer(ref.writer)
            return
        with self.waiting():
            while self._is_open(ref.did):
                if self.stopped.wait(_POLL_S):
                    raise RunFailed(f"dataset {ref.did} not read: the run was stopped",
                                    hint="run the same command again to resume")

    def files(self, ref: DatasetRef) -> Any:
        self.wait(ref)
        with self.lock:
            records = self.catalog.list_files(ref.did)
        if ref.writer is not None:  # a task's files, in the order of what they were made of
            order = self._order(ref.writer, ref.did, records, {})
            records = sorted(records, key=lambda r: order[r.did])
        values = [v for r in records for v in (
            _task_file_values(r) if ref.writer is not None else [r.cwl_value()])]
        if not ref.single:
            return values
        if len(values) > 1:
            raise RunFailed(f"task {ref.writer} wrote {len(values)} files into {ref.did}, "
                            "where its step gives one File",
                            hint="a step that reads a whole dataset must run as one job: "
                                 "raise swf:Sizing maxFilesPerJob, or declare the output File[]")
        return values[0] if values else None

    def _order(self, writer: str, did: str, records: list[Any],
               memo: dict[str, dict[str, tuple[float, ...]]]) -> dict[str, tuple[float, ...]]:
        """Where each of a task's output files belongs: at the place of the input files its
        job read (a pipelining task gets its producer's files in completion order, but CWL
        wants the scatter order), then by job number. Each dataset up the chain is listed and
        placed once (``memo``: dataset → its files' places)."""
        if did in memo:
            return memo[did]
        master, master_writer, jobs = self.lineage(writer) if self.lineage else (None, None, {})
        master_order: dict[str, tuple[float, ...]] = {}
        if master is not None and jobs:
            with self.lock:
                inputs = self.catalog.list_files(master)
            master_order = ({r.did: (float(i),) for i, r in enumerate(inputs)}
                            if master_writer is None  # the stream: the order of announcement
                            else self._order(master_writer, master, inputs, memo))
        places = {}
        for record in records:
            match = _JOB_NUMBER.search(record.did)
            number = int(match.group(1)) if match else math.inf
            read = jobs.get(int(number), []) if match else []
            first = min((master_order.get(f, (math.inf,)) for f in read), default=())
            places[record.did] = first + (number,)
        memo[did] = places
        return places

    def _is_open(self, did: str) -> bool:
        with self.lock:
            return self.catalog.is_open(did)


def reads_datasets(spec: TaskSpec, job: dict[str, Any]) -> bool:
    """Does ``job`` give each dataset port of the task exactly the datasets it reads
    (and no other port a dataset)?"""
    wanted: dict[str, set[str]] = {}
    for item in spec.inputs:
        if item.dataset is not None:
            wanted.setdefault(item.port, set()).add(item.dataset)
    if not wanted:
        return False
    for port, value in job.items():
        refs = dataset_refs(value)
        if port not in wanted:
            if refs:
                return False
            continue
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(i, DatasetRef) for i in items) or \
                {r.did for r in refs} != wanted[port]:
            return False
    return set(wanted) <= set(job)


def is_array(cwl_type: str) -> bool:
    """Does a port of this CWL type hold a list (or may it: Any)?"""
    return cwl_type.rstrip("?").endswith("[]") or cwl_type.rstrip("?") in ("Any", "array")


def _task_file_values(record: Any) -> list[dict[str, Any]]:
    """A task's output file as the CWL values it holds: a job's bundle (swfflow.bundle) is
    its files, under the tool's names, unpacked next to it (a local file; one a server
    catalog lists by URL is given as it is)."""
    path = Path(record.pfn) if record.pfn and "://" not in record.pfn else None
    members = bundle_members(path) if path is not None and path.is_file() else None
    if members is None:
        return [record.cwl_value()]
    return [{"class": "File", "location": m.resolve().as_uri(), "size": m.stat().st_size,
             "basename": m.name} for m in members]
