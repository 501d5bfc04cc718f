"""The phases a task of a plan instance goes through, as the state store records them, and how
a backend's task state maps onto them."""

from __future__ import annotations

from enum import Enum

from swfflow.backends.base import TaskState


class TaskPhase(str, Enum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # its `when` was false, or its scatter empty
    BLOCKED = "blocked"  # a task it needed failed: never submitted, or stopped


DONE = frozenset({TaskPhase.SUCCEEDED, TaskPhase.SKIPPED})
FINAL = DONE | {TaskPhase.FAILED, TaskPhase.BLOCKED}
LIVE = frozenset({TaskPhase.SUBMITTED, TaskPhase.RUNNING})
PHASE_OF_STATE = {
    TaskState.SUBMITTED: TaskPhase.SUBMITTED, TaskState.WAITING: TaskPhase.SUBMITTED,
    TaskState.RUNNING: TaskPhase.RUNNING, TaskState.UNKNOWN: TaskPhase.SUBMITTED,
    TaskState.SUCCEEDED: TaskPhase.SUCCEEDED, TaskState.PARTIAL: TaskPhase.FAILED,
    TaskState.FAILING: TaskPhase.FAILED, TaskState.FAILED: TaskPhase.FAILED,
    TaskState.EXHAUSTED: TaskPhase.FAILED,
}
