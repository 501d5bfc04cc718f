"""JEDI-like job splitting of a (possibly still open) dataset — pure functions.

JEDI cuts a task's master input dataset into jobs by ``nFilesPerJob`` or ``nGBPerJob`` (capped
by ``nMaxFilesPerJob``). Over an open dataset only *full* chunks are cut; the remainder waits
for more files or for the dataset to close, when the last, short chunk is cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swfflow.backends.base import FileRecord

GB = 1024 ** 3


@dataclass(frozen=True)
class SplitRule:
    files_per_job: int | None = None
    gb_per_job: float | None = None
    max_files_per_job: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SplitRule:
        return cls(files_per_job=params.get("nFilesPerJob"),
                   gb_per_job=params.get("nGBPerJob"),
                   max_files_per_job=params.get("nMaxFilesPerJob"))

    def _full(self, chunk: Sequence[FileRecord]) -> bool:
        if self.max_files_per_job and len(chunk) >= self.max_files_per_job:
            return True
        if self.files_per_job:
            return len(chunk) >= self.files_per_job
        if self.gb_per_job:
            return sum(f.size for f in chunk) >= self.gb_per_job * GB
        return False  # no sizing at all: one job over everything, cut at close


def split_files(files: Sequence[FileRecord], rule: SplitRule, *,
                closed: bool) -> tuple[list[list[FileRecord]], list[FileRecord]]:
    """Cut ``files`` (not yet assigned, in attachment order) into job chunks.

    Returns (chunks, leftover): leftover is what must wait for more files; it is empty when the
    dataset is ``closed``. With ``nGBPerJob``, a chunk closes when adding the next file would
    exceed the size (a single file larger than the size is a job of its own)."""
    chunks: list[list[FileRecord]] = []
    current: list[FileRecord] = []
    for record in files:
        if rule.gb_per_job and current and not rule.files_per_job and \
                sum(f.size for f in current) + record.size > rule.gb_per_job * GB:
            chunks.append(current)
            current = []
        current.append(record)
        if rule._full(current):
            chunks.append(current)
            current = []
    if closed and current:
        chunks.append(current)
        current = []
    return chunks, current
