"""STF files in the DAQ buffer: real files, sparse when large, adler32 matching the content.

Each file starts with a small deterministic header (JSON metadata, like the testbed's stub
STFs) and is extended to its nominal size with a hole, so a 2 GB STF costs one disk block.
Files are written under a temporary name and published with ``link()``, which never replaces
an existing file: a written STF is never overwritten (req 6.8), and a reader never sees half
a file.
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
    path: Path
    size: int
    checksum: str  # adler32, 8 lowercase hex digits

    @property
    def file_url(self) -> str:
        return self.path.resolve().as_uri()


def stf_header(metadata: dict[str, object]) -> bytes:
    """The deterministic content at the start of every STF."""
    return (json.dumps({"swfflow_stf": 1, **metadata}, sort_keys=True) + "\n").encode()


def write_stf(directory: Path, filename: str, header: bytes, size: int) -> StfFile:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / filename
    partial = directory / f".{filename}.part"
    partial.unlink(missing_ok=True)  # left over from a crash
    checksum = write_sparse_file(partial, header, size)
    try:
        os.link(partial, final)
    except FileExistsError:
        raise RunFailed(f"STF file {final} already exists; refusing to overwrite it",
                        hint="was the run counter reset? Use a fresh --buffer or --run-counter") from None
    finally:
        partial.unlink(missing_ok=True)
    return StfFile(final, size, checksum)
