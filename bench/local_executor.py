"""Local executor throughput: the same streaming task over N files with --jobs 1 and --jobs J,
measured in one run; prints wall times and the speed-up (ratio, not an absolute goal).

    python bench/local_executor.py [--files 8] [--jobs 2] [--sleep 0.5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from pathlib import Path

from swfflow.backends.base import FileRecord, TaskState
from swfflow.backends.local_catalog import LocalCatalog, sqlite_engine
from swfflow.backends.local_executor import LocalExecutor
from swfflow.plan.model import TaskInput, TaskSpec

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'sleep {sleep}; wc -c < "$0" > out.txt']
inputs:
  raw: {{type: File, inputBinding: {{position: 1}}}}
outputs:
  out: {{type: File, outputBinding: {{glob: out.txt}}}}
"""


def one_run(root: Path, files: int, jobs: int, sleep: float) -> float:
    engine = sqlite_engine(root / "state.db")
    catalog = LocalCatalog(engine)
    executor = LocalExecutor(catalog, engine, root / "work", jobs=jobs, attempts=1)
    tool = root / "tool.cwl"
    tool.write_text(TOOL.format(sleep=sleep))
    for did in ("raw:r", "out:r.out", "out:r.log"):
        catalog.create_dataset(did)
    records = []
    for i in range(files):
        path = root / f"f{i}.dat"
        path.write_bytes(b"x" * (i + 1))
        records.append(FileRecord(did=f"raw:f{i}", size=i + 1,
                                  adler32=f"{zlib.adler32(path.read_bytes()):08x}",
                                  pfn=str(path)))
    catalog.add_files("raw:r", records)
    catalog.close_dataset("raw:r")
    spec = TaskSpec(key="t", step="t", name="bench.t", kind="command",
                    params={"dsForIN": "raw:r", "nFilesPerJob": 1},
                    inputs=(TaskInput(port="raw", dataset="raw:r", master=True),),
                    outputs={"out": "out:r.out"}, log_dataset="out:r.log",
                    payload={"tool_uri": tool.as_uri(), "tool": {"inputs": {"raw": "File"}},
                             "job": {}, "split_port": "raw"})
    start = time.perf_counter()
    task_id = executor.submit(spec)
    try:
        while not executor.status([task_id])[task_id].state.terminal:
            time.sleep(0.05)
        assert executor.status([task_id])[task_id].state is TaskState.SUCCEEDED
    finally:
        executor.shutdown()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        serial = one_run(Path(a), args.files, 1, args.sleep)
        parallel = one_run(Path(b), args.files, args.jobs, args.sleep)
    print(f"{args.files} jobs of {args.sleep}s: --jobs 1 {serial:.2f}s, "
          f"--jobs {args.jobs} {parallel:.2f}s, speed-up {serial / parallel:.2f}x, "
          f"overhead per job at --jobs 1: {serial / args.files - args.sleep:.3f}s")


if __name__ == "__main__":
    main()
