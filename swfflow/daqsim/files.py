"""STF files in the DAQ buffer: real files, sparse when large, adler32 matching the content.

Every STF has the one documented STF format (docs/messages.md, "STF files"): a text header
line ``# STF run=<run> seq=<n> ntf=<tfs> key=value…``, then ``tf,channel,adc`` hit lines, then
zero bytes up to its nominal size. The zeros are a hole, so a 2 GB STF costs one disk block;
readers stop at the first zero byte. ``examples/tools/bin/calibkit.py`` reads this format.
Files are created with ``O_EXCL``, so a written STF is never overwritten (req 6.8). The file is
complete before its ``stf_gen`` is sent; consumers act on messages, not on directory scans, so
one metadata operation per STF is enough (a temporary name + ``link()`` tripled the cost).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from swfflow.checksum import write_sparse_file
from swfflow.errors import RunFailed

STF_MAGIC = "# STF"
TIMEFRAMES = 8  # TFs per STF (at most: only those whose hits fit in the nominal size)
CHANNELS = 16
OCCUPANCY = 0.7  # chance that a channel has a hit in a TF
ADC_MEAN, ADC_SIGMA = 100.0, 8.0  # a calibrated channel's ADC peak (calibkit's TARGET_ADC)


@dataclass(frozen=True)
class StfFile:
    path: str
    size: int
    checksum: str  # adler32, 8 lowercase hex digits

    @property
    def file_url(self) -> str:
        return Path(self.path).as_uri()


def stf_header(run_id: object, sequence: int, ntf: int, **metadata: object) -> str:
    """The header line: ``# STF run=… seq=… ntf=…`` then ``key=value`` pairs (no spaces)."""
    pairs = {"run": run_id, "seq": sequence, "ntf": ntf, **metadata}
    return STF_MAGIC + "".join(f" {key}={str(value).replace(' ', '_')}"
                               for key, value in pairs.items()) + "\n"


def stf_content(run_id: object, sequence: int, rng: random.Random, size: int,
                **metadata: object) -> bytes:
    """The deterministic start of an STF: header plus the hits of as many TFs as fit in
    ``size`` (at most :data:`TIMEFRAMES`); ``rng`` draws the hits."""
    budget = size - len(stf_header(run_id, sequence, TIMEFRAMES, **metadata))
    blocks: list[str] = []
    for tf in range(TIMEFRAMES):
        block = "".join(f"{tf},{channel},{max(1, round(rng.gauss(ADC_MEAN, ADC_SIGMA)))}\n"
                        for channel in range(CHANNELS) if rng.random() < OCCUPANCY)
        if len(block) > budget:
            break
        budget -= len(block)
        blocks.append(block)
    return (stf_header(run_id, sequence, len(blocks), **metadata) + "".join(blocks)).encode()


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
