"""The butterfly's copy step: an STF from the DAQ buffer to an Echelon-1 storage endpoint,
verified by the adler32 of the copy as read back at the destination (issue 15, part 2).

One small interface, :class:`Transfer`, so a real XRootD or FTS transfer can replace the local
one: ``copy(source, destination)`` puts the file there and returns the destination's adler32
(8 lowercase hex digits, zero-padded), which the caller compares with the DAQ's. Here the E1
RSEs are local directories (the Rucio fixture's posix RSEs), so :class:`LocalTransfer` copies
with plain file calls: sparse-aware (an STF is mostly a hole: a 2 GB nominal file costs one
block to copy) and atomic (written to a temporary name, fsynced, then renamed), so a crash
never leaves a half file under the final name.

Also here: the per-run **running checksum** of a site (:func:`fold`), an order-independent
digest of the (file name, adler32) pairs a site holds, so two sites that received the same
STFs in a different order agree, and a missing, extra or altered file shows.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Protocol

from swfflow.checksum import adler32_file
from swfflow.errors import SwfflowError

_SEEK_DATA = getattr(os, "SEEK_DATA", None)
_SEEK_HOLE = getattr(os, "SEEK_HOLE", None)
CHUNK = 4 * 1024 * 1024
EMPTY_SUM = "0" * 16  # the running checksum of no files


class TransferError(SwfflowError):
    """A copy failed (source unreadable, destination unwritable): retried later."""

    exit_code = 1


class Transfer(Protocol):
    def copy(self, source: str, destination: str) -> str:
        """Copy ``source`` to ``destination`` (both as the endpoint names them); the adler32
        of the copy, as the destination computes it."""


class LocalTransfer:
    """Posix copy between local directories (the RSE directories stand in for XRootD)."""

    def copy(self, source: str, destination: str) -> str:
        target = Path(destination)
        partial = target.with_name(f".{target.name}.part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(source, "rb", buffering=0) as src, open(partial, "wb", buffering=0) as dst:
                size = os.fstat(src.fileno()).st_size
                for start, end in _data_regions(src.fileno(), size):
                    _copy_range(src.fileno(), dst.fileno(), start, end)
                os.ftruncate(dst.fileno(), size)  # a trailing hole
                os.fsync(dst.fileno())
            os.replace(partial, target)
            return adler32_file(target)  # read back from the destination
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise TransferError(f"copy {source} → {destination} failed: "
                                f"{exc.strerror or exc}") from None


def _data_regions(fd: int, size: int):
    """(start, end) of the regions holding data; holes are skipped (read as zeros)."""
    if _SEEK_DATA is None or _SEEK_HOLE is None:
        yield 0, size
        return
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, _SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            if exc.errno == errno.EINVAL:  # the file system cannot tell: copy it all
                yield position, size
                return
            raise
        end = os.lseek(fd, start, _SEEK_HOLE)
        yield start, end
        position = end


def _copy_range(src: int, dst: int, start: int, end: int) -> None:
    os.lseek(src, start, os.SEEK_SET)
    os.lseek(dst, start, os.SEEK_SET)
    remaining = end - start
    while remaining > 0:
        data = os.read(src, min(CHUNK, remaining))
        if not data:
            return
        os.write(dst, data)
        remaining -= len(data)


def fold(running: str, filename: str, adler32: str) -> str:
    """Add one (file, adler32) to a running checksum: the sum modulo 2^64 of a digest of each
    pair, so the order files arrive in does not matter (sites copy in parallel)."""
    digest = int.from_bytes(hashlib.sha256(f"{filename}:{adler32}".encode()).digest()[:8], "big")
    return f"{(int(running, 16) + digest) % 2**64:016x}"


def running_checksum(pairs) -> str:
    """The running checksum of (file name, adler32) pairs."""
    total = EMPTY_SUM
    for filename, adler32 in pairs:
        total = fold(total, filename, adler32)
    return total
