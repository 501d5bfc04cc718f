"""A PanDA server double that the real panda-client talks to (the "contract server").

It serves the panda-client 2.x REST endpoints swfflow uses, under ``/api/v1/…``, with the real
server's envelope (``{"success", "message", "data"}``), datetime encoding
(``{"__datetime__": ISO}``), submission codes and message texts, and the real request checks
(method, argument types, task ownership, production-only commands). Tasks live in a
:class:`~swfflow.testing.panda_tasks.TaskStore` that walks them through JEDI's states and hands
them to a pluggable runner; the wire format and request handling are in
:mod:`swfflow.testing.panda_http`.

What it does not do: TLS and credential checks (every caller is the configured ``user``; an
``Authorization: Bearer`` token is recorded so tests can see it was sent), job-level endpoints,
the sandbox cache.

Run it::

    python -m swfflow.testing.panda_server --port 25080 [--state-file tasks.json]
    export PANDA_URL_SSL=http://127.0.0.1:25080/server/panda PANDA_URL=$PANDA_URL_SSL \
           PANDA_BEHIND_REAL_LB=1

Test-only control endpoints (not PanDA's): ``POST /_contract/force_status`` with ``{"task_id",
"status", "error_dialog"}`` pins a task in a status; ``GET /_contract/tasks`` lists them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import threading
from http.server import ThreadingHTTPServer
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from swfflow.backends.panda_states import JEDI_STATUSES
from swfflow.plan.model import Plan, TaskSpec
from swfflow.testing.panda_http import (
    BadArgument,
    Endpoint,
    Route,
    envelope,
    handler_for,
    typed_arg,
)
from swfflow.testing.panda_cache import FileCache
from swfflow.testing.panda_runner import (ExecutorRunner, StateMachineRunner, TaskRunner,
                                          local_pilot, specs_from_template)
from swfflow.testing.panda_tasks import TaskStore

log = logging.getLogger(__name__)

MESSAGE_TASK_ID = "jediTaskID must be an integer"
MESSAGE_PROD_ROLE = "production or pilot role required"
MESSAGE_TASK_OWNER = "not the task owner or no production role"
REGEX_META = r"^$*+?\|()"


class PandaContractServer:
    """The HTTP server plus the task store and the thread that ticks it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 runner: TaskRunner | None = None, state_file: str | Path | None = None,
                 user: str = "swfuser", tick_s: float = 0.05, production_role: bool = False,
                 register_s: float = 0.0):
        # register_s: how long a new task stays unknown, as before JEDI has read it
        self.store = TaskStore(runner or StateMachineRunner(), state_file=state_file,
                               production_role=production_role, register_s=register_s)
        self.user = user
        self.production_role = production_role
        self.tick_s = tick_s
        self.tokens_seen: set[str] = set()  # bearer tokens received (never logged)
        self.origins_seen: set[str] = set()
        self.calls: list[str] = []  # endpoint of every request, in order
        self.fail_next = 0  # answer this many next requests with HTTP 500 (fault injection)
        self.cache = FileCache()  # uploaded sandboxes (GET /cache/NAME)
        self._httpd = ThreadingHTTPServer((host, port), handler_for(self, _route))
        self._httpd.daemon_threads = True
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self._httpd.server_address[0]
        return f"http://{host}:{self.port}/server/panda"

    def env(self) -> dict[str, str]:
        """The environment panda-client needs to talk to this server."""
        return {"PANDA_URL": self.url, "PANDA_URL_SSL": self.url, "PANDACACHE_URL": self.url,
                "PANDA_BEHIND_REAL_LB": "1"}

    def start(self) -> PandaContractServer:
        self._threads = [threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                          name="panda-contract-http"),
                         threading.Thread(target=self._tick_loop, daemon=True,
                                          name="panda-contract-tick")]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> PandaContractServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.store.tick()
            except Exception:  # a broken runner must not stop the server
                log.exception("task runner failed")

    # --- endpoints -----------------------------------------------------------------------
    def is_alive(self, args: dict, method: str) -> dict:
        return envelope(True)

    def submit(self, args: dict, method: str) -> dict:
        params = typed_arg(args, "task_parameters", dict, method=method)
        parent = typed_arg(args, "parent_tid", int, None, method=method)
        code, message = self.store.insert(params, self.user, parent)
        if code not in (0, 3):
            return envelope(False, message, code)
        match = re.search(r"jediTaskID=(\d+)", message)
        return envelope(True, message, int(match.group(1)) if match else None)

    def get_status(self, args: dict, method: str) -> dict:
        task = self.store.get(typed_arg(args, "task_id", int, method=method))
        return envelope(True, data=task.status) if task else envelope(False, "Task not found")

    def get_details(self, args: dict, method: str) -> dict:
        task = self.store.get(typed_arg(args, "task_id", int, method=method))
        if task is None:
            return envelope(False, "Task not found or error retrieving the details")
        data: dict[str, Any] = {
            "inDS": task.params.get("dsForIN", ""), "statistics": "",
            "outDS": ",".join(i["dataset"] for i in task.params.get("jobParameters", [])
                              if isinstance(i, dict) and i.get("param_type") == "output"),
            "PandaID": list(task.job_ids), "mergeStatus": None, "mergePandaID": []}
        if typed_arg(args, "include_status", bool, False, method=method):
            data["status"] = task.status
        if typed_arg(args, "include_parameters", bool, False, method=method):
            data["cliParams"] = task.params.get("cliParams", "")
        return envelope(True, data=data)

    def get_task_parameters(self, args: dict, method: str) -> dict:
        task = self.store.get(typed_arg(args, "task_id", int, method=method))
        return envelope(True, data=task.params) if task else envelope(False, "Task not found")

    def get_job_ids(self, args: dict, method: str) -> dict:
        task = self.store.get(typed_arg(args, "task_id", int, method=method))
        return envelope(True, data=list(task.job_ids) if task else [])

    def get_tasks_detailed_info_since(self, args: dict, method: str) -> dict:
        since = typed_arg(args, "since", str, None, method=method)
        n_tasks = typed_arg(args, "n_tasks", int, 500, method=method)
        criteria, patterns = {}, {}
        raw = typed_arg(args, "filters", str, None, method=method)
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                return envelope(False, "filters is not valid JSON")
            if not isinstance(parsed, dict):
                return envelope(False, "filters must be a JSON object")
            for key, value in parsed.items():
                regex = any(c in str(value) for c in REGEX_META)
                (patterns if regex else criteria)[key] = str(value)
        tasks = self.store.select(self.user, since, criteria, n_tasks)
        if tasks is None:
            return envelope(False, "Failed to retrieve task IDs")
        result = []
        for task in tasks:  # regex filters come after the row limit, as on the real server
            details = self.store.details(task)
            if all(_search(p, details[k]) for k, p in patterns.items() if k in details):
                result.append(details)
        return envelope(True, data=result)

    def _owned(self, args: dict, method: str) -> int:
        task_id = typed_arg(args, "task_id", int, method=method)
        task = self.store.get(task_id)
        if not self.production_role and (task is None or task.userName != self.user):
            raise BadArgument(MESSAGE_TASK_OWNER)
        return task_id

    def _command(self, name: str, args: dict, method: str, *, owner: bool) -> dict:
        if owner:
            task_id = self._owned(args, method)
        else:
            if not self.production_role:
                return envelope(False, MESSAGE_PROD_ROLE)
            task_id = typed_arg(args, "task_id", int, method=method)
        code, message = self.store.command(task_id, name)
        return envelope(code == 0, message, code)

    def retry(self, args: dict, method: str) -> dict:
        task_id = self._owned(args, method)
        new = typed_arg(args, "new_parameters", dict, None, method=method)
        task = self.store.get(task_id)
        if new and task is not None:
            with self.store.lock:
                task.params.update(new)
        code, message = self.store.command(task_id, "retry")
        if code == 4 and task is not None and task.status in ("running", "scouting", "pending") \
                and task.prodSourceLabel == "user":
            code, message = 0, f"retry has been triggered for failed jobs while the task is " \
                               f"still {task.status}"
        return envelope(True, message, code)  # the real endpoint always says success

    # --- test control --------------------------------------------------------------------
    def force_status(self, args: dict, method: str) -> dict:
        task_id = typed_arg(args, "task_id", int, method=method)
        status = typed_arg(args, "status", str, method=method)
        if self.store.get(task_id) is None:
            return envelope(False, "Task not found")
        if status not in JEDI_STATUSES and not args.get("allow_unknown"):
            return envelope(False, f"unknown JEDI status {status!r}")
        self.store.force_status(task_id, status, args.get("error_dialog"))
        return envelope(True)

    def list_tasks(self, args: dict, method: str) -> dict:
        with self.store.lock:
            return envelope(True, data=[self.store.details(t) for t in self.store.tasks.values()])


def _search(pattern: str, value: Any) -> bool:
    try:
        return re.search(pattern, str(value)) is not None
    except re.error:
        return False


ROUTES: dict[str, tuple[str, Endpoint]] = {
    "system/is_alive": ("GET", PandaContractServer.is_alive),
    "task/submit": ("POST", PandaContractServer.submit),
    "task/get_status": ("GET", PandaContractServer.get_status),
    "task/get_details": ("GET", PandaContractServer.get_details),
    "task/get_task_parameters": ("GET", PandaContractServer.get_task_parameters),
    "task/get_job_ids": ("GET", PandaContractServer.get_job_ids),
    "task/get_tasks_detailed_info_since": ("GET",
                                           PandaContractServer.get_tasks_detailed_info_since),
    "task/kill": ("POST", lambda s, a, m: s._command("kill", a, m, owner=True)),
    "task/finish": ("POST", lambda s, a, m: s._command("finish", a, m, owner=True)),
    "task/pause": ("POST", lambda s, a, m: s._command("pause", a, m, owner=False)),
    "task/resume": ("POST", lambda s, a, m: s._command("resume", a, m, owner=False)),
    "task/retry": ("POST", PandaContractServer.retry),
    "file_server/upload_cache_file": ("POST", lambda s, a, m: s.cache.upload(a, m)),
    "file_server/validate_cache_file": ("POST", lambda s, a, m: s.cache.validate(a, m)),
}
CONTROL_ROUTES: dict[str, tuple[str, Endpoint]] = {
    "force_status": ("POST", PandaContractServer.force_status),
    "tasks": ("GET", PandaContractServer.list_tasks),
}


def _route(path: str) -> Route | None:
    for prefix, table in (("/api/v1/", ROUTES), ("/_contract/", CONTROL_ROUTES)):
        if path.startswith(prefix) and path[len(prefix):] in table:
            name = path[len(prefix):]
            return name, table[name]
    return None


@contextlib.contextmanager
def pilots_for_template(template: Plan, prepare: Callable[[TaskSpec], TaskSpec],
                        workdir: str | Path, *, rucio_config: str | None = None,
                        jobs: int = 2, no_container: bool = True, tick_s: float = 0.1
                        ) -> Iterator[Any]:
    """A running contract server whose runner executes, as the pilots would, every task the
    bridge submits for ``template``: its spec found by instantiating the template for the run
    the task's name carries, made runnable by ``prepare``, run by the local executor over the
    Rucio server of ``rucio_config``, with its state and job folders under ``workdir``."""
    workdir, spec_of = Path(workdir), specs_from_template(template)
    # a Rucio client of its own: the runner works in the server's tick thread
    pilot = local_pilot(workdir / "pilot", workdir / "jedi.db", jobs=jobs,
                        no_container=no_container, rucio_config=rucio_config)
    runner = ExecutorRunner(pilot, lambda params: prepare(spec_of(params)))
    try:
        with PandaContractServer(runner=runner, tick_s=tick_s) as panda:
            yield panda
    finally:
        pilot.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m swfflow.testing.panda_server",
        description="PanDA REST contract server for tests: tasks walk through JEDI's states; "
                    "without --plan-dir nothing is executed (StateMachineRunner).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=25080)
    parser.add_argument("--state-file", help="keep tasks in this JSON file across restarts")
    parser.add_argument("--user", default="swfuser", help="the user every caller is")
    parser.add_argument("--run-seconds", type=float, default=2.0,
                        help="how long each task 'runs' before it is done")
    parser.add_argument("--production-role", action="store_true",
                        help="treat callers as having the production role")
    parser.add_argument("--plan-dir", help="run tasks for real: the local executor over Rucio "
                        "($RUCIO_CONFIG), finding each task in the instantiated plan files "
                        "(*.json) of this directory by its taskName")
    parser.add_argument("--workdir", default="panda-runner",
                        help="with --plan-dir: where job directories and state go")
    parser.add_argument("--jobs", type=int, default=2, help="with --plan-dir: parallel jobs")
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if opts.plan_dir:
        from swfflow.testing.panda_runner import local_runner

        runner: TaskRunner = local_runner(opts.plan_dir, opts.workdir, jobs=opts.jobs)
    else:
        runner = StateMachineRunner(run_s=opts.run_seconds)
    server = PandaContractServer(opts.host, opts.port, state_file=opts.state_file,
                                 user=opts.user, production_role=opts.production_role,
                                 runner=runner)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server.start()
    print(f"PanDA contract server on {server.url}", flush=True)
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
