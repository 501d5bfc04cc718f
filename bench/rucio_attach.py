"""Register + attach N real files into an open Rucio dataset: one by one vs in batches.

Runs against a real Rucio server: the one ``$RUCIO_CONFIG`` names, else the local one from
``swfflow services`` (started if needed). Each mode uses fresh files and a fresh dataset, with
real adler32 checksums and run/sequence metadata, through :class:`RucioCatalog`:

- ``per-file``: one ``add_files([f])`` per file, as a naive per-STF handler would do;
- ``batch=1``: one ``add_files(all)`` call with batch size 1 (two server calls per file);
- ``batch=B``: one ``add_files(all)`` call with batch size B (default 500).

    python bench/rucio_attach.py [--files 1000] [--batch 500]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

from swfflow.backends.base import FileRecord
from swfflow.backends.rucio import RucioCatalog
from swfflow.checksum import adler32_file


def make_files(directory: Path, count: int, run: int) -> list[FileRecord]:
    tag = uuid.uuid4().hex[:8]
    records = []
    for seq in range(1, count + 1):
        path = directory / f"swf.{run}.{seq:06d}.{tag}.stf"
        path.write_bytes(os.urandom(200))  # testbed STF stubs are ≈200 B
        records.append(FileRecord(did=f"swf:{path.name}", size=200, adler32=adler32_file(path),
                                  pfn=str(path), meta={"run_number": run, "sequence": seq}))
    return records


def timed(catalog: RucioCatalog, files: list[FileRecord], per_file: bool) -> float:
    """files/s for registering and attaching ``files`` into a new open dataset."""
    dataset = f"swf:bench.{uuid.uuid4().hex[:12]}.run"
    catalog.create_dataset(dataset)
    start = time.perf_counter()
    if per_file:
        attached = sum(catalog.add_files(dataset, [record]) for record in files)
    else:
        attached = catalog.add_files(dataset, files)
    elapsed = time.perf_counter() - start
    assert attached == len(files) == len(catalog.list_files(dataset)), "not all attached"
    return len(files) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    config = os.environ.get("RUCIO_CONFIG")
    if not config:
        from swfflow import services
        from swfflow.services.rucio_server import client_config

        services.up(["rucio"])
        config = str(client_config(services.ServiceHome(services.state_dir(), "rucio")))
    modes = [("per-file", 1, True), ("batch=1", 1, False), (f"batch={args.batch}", args.batch,
                                                             False)]
    rates = {}
    with tempfile.TemporaryDirectory(prefix="swfflow-bench-") as tmp:
        for run, (label, batch, per_file) in enumerate(modes, start=1):
            catalog = RucioCatalog.from_config(config, batch_size=batch)
            files = make_files(Path(tmp), args.files, run)
            rates[label] = timed(catalog, files, per_file)
            print(f"{label:>10}: {rates[label]:8.1f} files/s ({args.files} files)", flush=True)
    baseline, batched = rates["per-file"], rates[f"batch={args.batch}"]
    print(f"batched / per-file: {batched / baseline:.1f}x   "
          f"batched / batch=1: {batched / rates['batch=1']:.1f}x")


if __name__ == "__main__":
    main()
