"""STF files in the DAQ buffer: real files, sparse when large, adler32 matching the content.

Each file starts with a small deterministic header (JSON metadata, like the testbed's stub
STFs) and is extended to its nominal size with a hole, so a 2 GB STF costs one disk block.
Files are created with ``O_EXCL``, so a written STF is never overwritten (req 6.8). The file is
complete before its ``stf_gen`` is sent; consumers act on messages, not on directory scans, so
one metadata operation per STF is enough (a temporary name + ``link()`` tripled the cost).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from swfflow.checksum import write_sparse_file
from swfflow.errors import RunFailed


@dataclass(frozen=True)
class StfFile:
    path: str
    size: int
    checksum: str  # adler32, 8 lowercase hex digits

    @property
    def file_url(self) -> str:
        return Path(self.path).as_uri()


def stf_header(metadata: dict[str, object]) -> bytes:
    """The deterministic content at the start of every STF."""
    return (json.dumps({"swfflow_stf": 1, **metadata}, sort_keys=True) + "\n").encode()


def write_stf(directory: str, filename: str, header: bytes, size: int) -> StfFile:
    """Write one STF into an existing absolute ``directory`` (plain strings: this runs per STF,
    tens of thousands of times per simulated day)."""
    final = os.path.join(directory, filename)
    try:
        checksum = write_sparse_file(final, header, size)
    except FileExistsError:
        raise RunFailed(f"STF file {final} already exists; refusing to overwrite it",
                        hint="was the run counter reset? Use a fresh --buffer or --run-counter") from None
    return StfFile(final, size, checksum)
