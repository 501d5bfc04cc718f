"""The job sandbox on PanDA's cache, shipped the way prun ships one (docs/panda.md, "Sandbox").

A job runs ``swfflow job --task KEY``, which needs the workflow's folder with ``plan.json`` at
its top. Before the first task of a plan is submitted, that folder (dot-entries and
``__pycache__`` left out) and the plan are packed into one gzipped tarball, named after its
content (``sources.swfflow.<sha256>.tar.gz``: the ``sources.`` prefix is what gives it the
server's sandbox size limit), and uploaded with panda-client's ``putFile`` (``reuseSandbox``: the
server answers with the name of an identical tarball it already has). Each task's parameters
then carry what prun's carry: ``sourceURL`` (the server's ``scheme://host:port``) and the two
constant job parameters runGen reads, ``--sourceURL ${SURL}`` and ``-a NAME`` (JEDI substitutes
``${SURL}``, and keeps a sandbox named by ``-a`` alive while the task makes jobs). The pilot
downloads ``${SURL}/cache/NAME``, unpacks it into the job's folder and runs the rest of the job
parameters there (``swfflow.pilot.sandbox``).

The tarball is byte-for-byte the same for the same folder and plan (sorted members, no times,
no owners), so submitting again, or another run with the same plan, uploads nothing new.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from swfflow.errors import ConfigError, ServiceError
from swfflow.plan.model import Plan, TaskSpec

log = logging.getLogger(__name__)

PREFIX = "sources.swfflow."
SUFFIX = ".tar.gz"
PLAN_NAME = "plan.json"
# runGen's sandbox options, each its own constant as prun writes them (JEDI finds the sandbox by
# a constant that is exactly "-a NAME")
SOURCE_URL_ITEM = "--sourceURL ${SURL}"
ARCHIVE_OPTION = "-a"
# the server refuses sources.* uploads above 768 MB; a workflow folder that large is a mistake
MAX_BYTES = 256 * 1024 * 1024
SKIPPED_NAMES = frozenset({"__pycache__"})
UPLOAD_TIMEOUT_S = 600.0  # one upload of a sandbox, at most


def members(folder: Path) -> Iterator[tuple[str, Path]]:
    """(name in the tarball, path) of every regular file under ``folder``, sorted; hidden
    entries, ``__pycache__`` and a ``plan.json`` at the top (the plan shipped replaces it) are
    left out. Symbolic links are followed (a job's folder has no use for dangling ones)."""
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_NAMES)
        for name in sorted(files):
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if name.startswith(".") or relative == PLAN_NAME or not path.is_file():
                continue
            yield relative, path


def pack(folder: Path, plan_json: str) -> bytes:
    """The sandbox tarball: ``folder``'s files and ``plan.json`` at the top, reproducibly."""
    raw = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [(PLAN_NAME, plan_json.encode(), 0o644)]
        entries += [(name, path, path.stat().st_mode) for name, path in members(folder)]
        for name, content, mode in entries:
            data = content if isinstance(content, bytes) else content.read_bytes()
            total += len(data)
            if total > MAX_BYTES:
                raise ConfigError(
                    f"the job sandbox of {folder} is over {MAX_BYTES // 2**20} MB (at {name})",
                    where=str(folder),
                    hint="keep the workflow in a folder of its own: everything in it (but "
                         "hidden entries) is shipped to every PanDA job")
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if mode & 0o111 else 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    # mtime 0 and no file name: the same inputs give the same bytes (and the same name)
    with gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def sandbox_name(tarball: bytes) -> str:
    return f"{PREFIX}{hashlib.sha256(tarball).hexdigest()[:32]}{SUFFIX}"


def with_sandbox(params: dict[str, Any], name: str, source_url: str) -> dict[str, Any]:
    """The task parameters with the sandbox prun's way: ``sourceURL`` and the two constants
    first in ``jobParameters`` (any earlier sandbox items replaced)."""
    items = [item for item in params.get("jobParameters") or []
             if not _is_sandbox_item(item)]
    sandbox = [{"type": "constant", "value": SOURCE_URL_ITEM},
               {"type": "constant", "value": f"{ARCHIVE_OPTION} {name}"}]
    return {**params, "sourceURL": source_url, "jobParameters": sandbox + items}


def _is_sandbox_item(item: dict[str, Any]) -> bool:
    value = str(item.get("value", "")) if item.get("type") == "constant" else ""
    return value == SOURCE_URL_ITEM or value.startswith(f"{ARCHIVE_OPTION} {PREFIX}")


def named_sandbox(params: dict[str, Any]) -> str | None:
    """The sandbox a task's parameters name (``-a NAME``), if any."""
    for item in params.get("jobParameters") or []:
        value = str(item.get("value", "")) if item.get("type") == "constant" else ""
        if value.startswith(f"{ARCHIVE_OPTION} {PREFIX}"):
            return value.split(" ", 1)[1]
    return None


class SandboxShipper:
    """The ``prepare`` step of a plan's tasks on PanDA: packs the sandbox and names it in each
    task's parameters; ``uploads`` sends it when the executor really inserts a task (a task
    found on the server by name needs nothing). A task the plan does not hold (a run-time
    instance, ``drive/instances.py``) gets a sandbox whose plan holds it too, so ``swfflow job
    --task KEY`` finds it. Tasks without job parameters (the driver's ExpressionTools) pass
    unchanged."""

    def __init__(self, plan: Plan, source_path: str, *, uploads: CacheUploads,
                 source_url: str):
        self.plan = plan
        self.folder = Path(source_path).resolve().parent if source_path else Path.cwd()
        self.uploads = uploads
        self.source_url = source_url
        self._keys = {task.key for task in plan.tasks}
        self._packed: dict[str, str] = {}  # plan JSON digest → sandbox name
        self._lock = threading.Lock()
        # the plan's own sandbox goes up now, while the run's datasets are made, so that the
        # first submission (the streaming task, at the start of a run) does not wait for it
        self.uploads.early(lambda: self.stage(plan))

    def __call__(self, task: TaskSpec) -> TaskSpec:
        if not task.params.get("jobParameters"):
            return task
        plan = self.plan if task.key in self._keys else \
            replace(self.plan, tasks=[*self.plan.tasks, task])
        return replace(task, params=with_sandbox(task.params, self.stage(plan),
                                                 self.source_url))

    def stage(self, plan: Plan) -> str:
        """The name of the sandbox for ``plan``, packed and handed to ``uploads``."""
        text = plan.to_json()
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self._lock:
            if digest not in self._packed:
                tarball = pack(self.folder, text)
                self._packed[digest] = self.uploads.stage(tarball)
            return self._packed[digest]


class CacheUploads:
    """The sandboxes packed for the tasks an executor may submit, and the ones it uploaded:
    each is uploaded once, by the first submission that names it (thread-safe)."""

    def __init__(self, upload: Callable[[Path], str]):
        self.upload = upload
        self._staged: dict[str, bytes] = {}
        self._uploaded: dict[str, str] = {}  # our name → the name on the server
        self._lock = threading.Lock()
        self._early: list[threading.Thread] = []

    def early(self, stage: Callable[[], str]) -> None:
        """Stage and upload in a thread of its own, now; a failure (the server down) is left
        to the first submission that needs the sandbox, which tries again."""
        def run() -> None:
            try:
                self.uploaded(stage())
            except Exception as exc:  # noqa: BLE001 - retried by ensure(), which reports it
                log.debug("early sandbox upload failed: %s", exc)

        thread = threading.Thread(target=run, name="sandbox-upload", daemon=True)
        self._early.append(thread)
        thread.start()

    def close(self, timeout_s: float = UPLOAD_TIMEOUT_S) -> None:
        """Wait for the early uploads (each bounded by the upload's own timeout)."""
        for thread in self._early:
            thread.join(timeout=timeout_s)

    def stage(self, tarball: bytes) -> str:
        name = sandbox_name(tarball)
        with self._lock:
            if name not in self._uploaded:
                self._staged[name] = tarball
        return name

    def ensure(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` once the sandbox they name is on the server (renamed when the server
        had an identical file under another name); unchanged without a sandbox we packed."""
        name = named_sandbox(params)
        on_server = self.uploaded(name) if name is not None else None
        if on_server is None or on_server == name:
            return params
        return with_sandbox(params, on_server, params["sourceURL"])

    def uploaded(self, name: str) -> str | None:
        """The name on the server of the sandbox staged as ``name``, uploaded now if it was
        not yet (None: not a sandbox staged here)."""
        with self._lock:
            if name not in self._staged and name not in self._uploaded:
                return None
            if name not in self._uploaded:
                with tempfile.TemporaryDirectory(prefix="swfflow-sandbox-") as tmp:
                    path = Path(tmp) / name
                    path.write_bytes(self._staged[name])
                    self._uploaded[name] = self.upload(path)
                del self._staged[name]
            return self._uploaded[name]


# --- the upload, in a child process ------------------------------------------------------------
# putFile's answer when the cache has a file of that name (pandaserver file_server_api)
CACHE_OVERWRITE = "ERROR: cannot overwrite file"


def name_in_cache(answer: str, name: str, *, where: str) -> str:
    """The name of the uploaded file ``name`` on the server, from putFile's ``answer``: an
    identical file's (``reuseSandbox``), or its own; a file of that name already there is the
    same file (the names hold a digest)."""
    if answer.startswith("NewFileName:"):
        return answer.split(":", 1)[1]
    if answer == "True" or answer.startswith(CACHE_OVERWRITE):
        return name
    raise ServiceError(f"PanDA refused the job sandbox {name}: {answer}", where=where,
                       hint="the server's cache folder must be writable, and your "
                            "credentials accepted (secure connection)")


# panda-client's putFile sends the path it is given as the file's name, and the server records
# that name as is (the cache file itself is stored under the last path element): prun calls it
# from the sandbox's own folder with a bare name. A child process can do the same without
# moving the current folder of this (multi-threaded) one.


def upload_in_child(path: Path, server_url: str, *, timeout_s: float = UPLOAD_TIMEOUT_S
                    ) -> tuple[int, str]:
    """panda-client's ``putFile(NAME, reuseSandbox=True)`` run in ``path``'s folder by a child
    process pointed at ``server_url``: (status, answer)."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, PANDA_URL=server_url, PANDA_URL_SSL=server_url,
               PANDACACHE_URL=server_url, PANDA_BEHIND_REAL_LB="1")
    try:
        done = subprocess.run([sys.executable, "-m", __name__, path.name], cwd=path.parent,
                              env=env, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return 255, f"the upload did not end within {timeout_s:.0f} s"
    lines = done.stdout.strip().splitlines()
    try:
        status, answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        return 255, f"the upload process ended with {done.returncode}: {done.stderr[-300:]}"
    return int(status), str(answer)


def _upload_main(argv: list[str]) -> int:
    import contextlib
    import json
    import sys

    from pandaclient import Client

    with contextlib.redirect_stdout(sys.stderr):  # panda-client's chatter
        status, answer = Client.putFile(argv[0], False, False, True)
    print(json.dumps([status, str(answer)]))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_upload_main(sys.argv[1:]))
