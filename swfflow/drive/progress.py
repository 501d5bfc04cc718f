"""Rich progress on stderr: one line per task with its phase and jobs done.

The tasks and their phases are what the run records in its state store (run-time instances of
a scatter appear as they are submitted). Where the job counts come from depends on the
executor: the local one lists its jobs; PanDA reports file counts in its bulk status.
:class:`Progress` takes a ``counts`` function for that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn

from swfflow.drive.flow_run import FlowRun

# backend task id (None: not submitted) → (done, total or None, the backend's own status word)
Counts = Callable[[str | None], tuple[int, int | None, str]]


class Progress:
    def __init__(self, flow: FlowRun, *, enabled: bool = True, counts: Counts | None = None):
        self.flow = flow
        self.enabled = enabled
        self.counts = counts or self._local_job_counts
        self.bars = RichProgress(TextColumn("{task.description:<28}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[phase]}"),
                                 console=Console(stderr=True), disable=not enabled)
        self.ids: dict[str, Any] = {}

    def __enter__(self) -> Progress:
        self.bars.start()
        for spec in self.flow.plan.tasks:
            self.ids[spec.key] = self.bars.add_task(spec.key, total=None, phase="pending")
        return self

    def __exit__(self, *exc: object) -> None:
        self.update()
        self.bars.stop()

    def update(self) -> None:
        if not self.enabled:
            return
        for key, row in sorted(self.flow.task_rows().items()):
            if key not in self.ids:  # a run-time instance
                self.ids[key] = self.bars.add_task(key, total=None, phase="pending")
            done, total, raw = self.counts(row["task_id"])
            phase = row["phase"] + (f" ({raw})" if raw else "")
            self.bars.update(self.ids[key], completed=done, total=total or None, phase=phase)

    def _local_job_counts(self, task_id: str | None) -> tuple[int, int | None, str]:
        rows = getattr(self.flow.executor, "job_rows", None)
        if rows is None or not task_id:
            return 0, None, ""
        jobs = rows(task_id)
        return sum(j.state == "done" for j in jobs), len(jobs), ""
