"""Rich progress on stderr: one line per task with its phase and jobs done."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn

from swfflow.drive.driver import Driver


class Progress:
    def __init__(self, driver: Driver, *, enabled: bool = True):
        self.driver = driver
        self.enabled = enabled
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
        rows = getattr(self.driver.executor, "job_rows", None)
        for key, task in self.driver.tasks.items():
            done = total = 0
            if rows is not None and task.task_id:
                jobs = rows(task.task_id)
                total, done = len(jobs), sum(j.state == "done" for j in jobs)
            self.bars.update(self.ids[key], completed=done, total=total or None,
                             phase=task.phase.value)
