"""Rich progress on stderr: one line per task with its phase and jobs done.

Where the job counts come from depends on the executor: the local one lists its jobs; PanDA
reports file counts in its bulk status. :class:`Progress` takes a ``counts`` function for that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn

from swfflow.drive.driver import Driver

# task → (done, total or None, the backend's own status word or "")
Counts = Callable[[Any], tuple[int, int | None, str]]


class Progress:
    def __init__(self, driver: Driver, *, enabled: bool = True, counts: Counts | None = None):
        self.driver = driver
        self.enabled = enabled
        self.counts = counts or self._local_job_counts
        self.bars = RichProgress(TextColumn("{task.description:<28}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[phase]}"),
                                 console=Console(stderr=True), disable=not enabled)
        self.ids: dict[str, Any] = {}

    def __enter__(self) -> Progress:
        self.bars.start()
        for key in self.driver.tasks:
            self.ids[key] = self.bars.add_task(key, total=None, phase="pending")
        return self

    def __exit__(self, *exc: object) -> None:
        self.update()
        self.bars.stop()

    def update(self) -> None:
        for key, task in self.driver.tasks.items():
            done, total, raw = self.counts(task)
            phase = task.phase.value + (f" ({raw})" if raw else "")
            self.bars.update(self.ids[key], completed=done, total=total or None, phase=phase)

    def _local_job_counts(self, task: Any) -> tuple[int, int | None, str]:
        rows = getattr(self.driver.executor, "job_rows", None)
        if rows is None or not task.task_id:
            return 0, None, ""
        jobs = rows(task.task_id)
        return sum(j.state == "done" for j in jobs), len(jobs), ""
