"""The two small protocols the driver talks to: an :class:`Executor` and a :class:`Catalog`.

Backends: ``local`` (embedded default: SQLite catalog, process-pool executor), ``rucio``
(Catalog over rucio-clients), ``panda`` (Executor over panda-client) and ``dryrun`` (an
Executor that records and runs nothing). The driver, ``swfflow submit``, the stream bridge and
the Snakemake plugin all use these and nothing else.

Every call is idempotent: creating an existing dataset, attaching an attached file, submitting a
task whose name exists — none is an error, none duplicates anything.

Beyond the calls every backend must answer, each protocol has optional members with a default
(:class:`CatalogBase`, :class:`ExecutorBase`): a backend that can do more overrides them and
says so, nobody asks ``hasattr``. Backends are built by :mod:`swfflow.assemble` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from swfflow.errors import ServiceError, UnsupportedFeature
from swfflow.plan.model import ReplicationRule, TaskSpec


class CommandRefused(ServiceError):
    """The backend answered and refused a task command (no permission, a status that does
    not take it): trying again will not help."""


@dataclass(frozen=True)
class FileRecord:
    """A file in the catalog. ``did`` is "scope:name"; ``adler32`` 8 lowercase hex digits."""

    did: str
    size: int
    adler32: str
    pfn: str | None = None  # where the bytes are (a path or URL), when known
    meta: Mapping[str, Any] = field(default_factory=dict)  # run, sequence, …

    @property
    def name(self) -> str:
        return self.did.split(":", 1)[-1]

    def cwl_value(self) -> dict[str, Any]:
        """This file as a CWL File value. The pfn keeps the name the producer gave the file
        (the DID may carry a job prefix); a URL pfn (root://, https://) is kept as it is."""
        pfn = self.pfn or ""
        location = pfn if "://" in pfn else (Path(pfn).resolve().as_uri() if pfn else self.did)
        return {"class": "File", "location": location, "size": self.size,
                "basename": Path(pfn.split("://", 1)[-1] or self.name).name}


class TaskState(str, Enum):
    """swfflow's view of a task (reference/panda.md §6)."""

    SUBMITTED = "submitted"
    WAITING = "waiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # terminal: some inputs failed
    FAILING = "failing"  # on its way to failed: downstream treats it as failed
    FAILED = "failed"
    EXHAUSTED = "exhausted"  # terminal, retryable
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def ok(self) -> bool:
        return self is TaskState.SUCCEEDED


_TERMINAL = {TaskState.SUCCEEDED, TaskState.PARTIAL, TaskState.FAILED, TaskState.EXHAUSTED}


@dataclass(frozen=True)
class TaskStatus:
    task_id: str
    state: TaskState
    raw: str = ""  # the backend's own status word (JEDI status)
    message: str = ""  # error dialog / log tail when failed
    n_jobs: int = 0
    n_jobs_done: int = 0
    n_jobs_failed: int = 0


@runtime_checkable
class Catalog(Protocol):
    def create_dataset(self, did: str, *, meta: Mapping[str, Any] | None = None,
                       rules: Sequence[ReplicationRule] = ()) -> bool:
        """Create an open dataset (True) or find it existing (False)."""

    def add_files(self, dataset: str, files: Sequence[FileRecord], *,
                  rse: str | None = None) -> int:
        """Register the files (with size, adler32, meta) and attach them to the open dataset,
        in batches. Returns how many were newly attached; already attached ones are skipped."""

    def set_file_metadata(self, files: Sequence[FileRecord]) -> None:
        """Set each registered file's ``meta`` keys (others are kept), in batches; setting
        the same values again changes nothing. (The bridge registers STFs first and sets
        their run/sequence metadata afterwards: per-file metadata is Rucio's slow path.)"""

    def close_dataset(self, did: str) -> None:
        """Close the dataset (no more files); closing a closed dataset is a no-op."""

    def is_open(self, did: str) -> bool: ...

    def dataset_exists(self, did: str) -> bool: ...

    def list_files(self, did: str) -> list[FileRecord]: ...


@runtime_checkable
class Executor(Protocol):
    def submit(self, task: TaskSpec) -> str:
        """Submit the task; return its id. A task of the same name that exists is found and its
        id returned (idempotency by task name), never submitted twice."""

    def status(self, task_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """Bulk status: one call, whatever the number of tasks."""

    def kill(self, task_id: str) -> None: ...

    def finish(self, task_id: str) -> None: ...

    def retry(self, task_id: str) -> None: ...

    def pause(self, task_id: str) -> None:
        """Start no new jobs (running ones finish); pausing a paused or final task is a no-op.
        Raises :class:`CommandRefused` when the backend refuses."""

    def resume(self, task_id: str) -> None:
        """Undo :meth:`pause`; resuming a task that is not paused is a no-op."""


class CatalogBase:
    """The optional members of a :class:`Catalog`, with what a catalog that cannot do more
    answers. A catalog whose client is not thread-safe but can be duplicated (Rucio) sets
    ``parallel_clients`` and returns a twin from :meth:`for_thread`; the bridge then attaches
    with several calls at once, one client each."""

    parallel_clients: ClassVar[bool] = False

    def for_thread(self) -> Any:
        """The catalog to use from another thread (default: this one; only called when
        ``parallel_clients`` is true, or from a single other thread)."""
        return self

    def replica_paths(self, rse: str, dids: Sequence[str]) -> dict[str, str]:
        """Where a copy of each file goes on ``rse`` (a local path), for the bridge's
        butterfly (issue 15). The default: this catalog places no replicas."""
        raise UnsupportedFeature(
            f"{type(self).__name__} places no replicas on storage endpoints ({rse})",
            hint="the butterfly (profile bridge.sites) needs --catalog rucio")

    def add_replicas(self, rse: str, files: Sequence[FileRecord]) -> None:
        """Register copies of files (already in their datasets) on ``rse``; again: a no-op."""
        raise UnsupportedFeature(f"{type(self).__name__} places no replicas ({rse})",
                                 hint="the butterfly (profile bridge.sites) needs "
                                      "--catalog rucio")


class ExecutorBase:
    """The optional members of an :class:`Executor`, with their defaults."""

    # the tasks' jobs really run and write their outputs (a dry run's do not: nothing checks
    # that a required output was written)
    runs_payloads: ClassVar[bool] = True

    def task_outputs(self, task_id: str) -> dict[str, Any]:
        """The parameter outputs (CWL output object) of a finished task, when the executor
        can read them back (the local one can; PanDA cannot: empty)."""
        return {}

    def watch(self, changed: Callable[[], None]) -> None:
        """Call ``changed`` (from any thread) when a task may have changed state, so a
        follower need not wait for its next poll. The default never calls it: poll."""

    def shutdown(self) -> None:
        """Release what the executor holds (worker processes); the default holds nothing."""
