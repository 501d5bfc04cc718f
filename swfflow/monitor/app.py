"""``swfflow monitor``'s web app: the page, the REST API ``/api/v1/…``, server-sent events and
Prometheus ``/metrics`` — all reading the one status model.

FastAPI (on Starlette) because the REST API is the pydantic model itself: FastAPI writes the
OpenAPI document (``/api/v1/openapi.json``, browsable at ``/api/v1/docs``) from the same classes
``swfflow status --json`` prints, so the documentation cannot drift from the data. Live updates
are server-sent events (a plain ``text/event-stream`` response): one-way, through proxies, with
the browser's own reconnection — the page needs nothing pushed back.

Database reads are blocking, so they run in Starlette's thread pool; the event stream shares
one snapshot per poll interval (:class:`Snapshots`) so N open pages cost one read, not N.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from prometheus_client.core import Metric
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from swfflow.monitor.dag import to_svg
from swfflow.monitor.metrics import exposition, registry_for, store_metrics
from swfflow.monitor.model import DeadLetter, Instance, Run, Status, Task
from swfflow.monitor.sources import Source

API = "/api/v1"
KEEPALIVE_S = 15.0  # a comment line so proxies do not close an idle stream
READ_SHARE = 0.03  # of the interval, the CPU time the monitor may spend reading the store


class Snapshots:
    """The summary model and the store's metrics, shared by every reader. Stale-while-
    revalidate: a reader past the interval gets the last snapshot at once and starts one
    background re-read, so no request waits for the store except the very first, and N pages
    and scrapers cost one read per interval. Nobody asking costs nothing.

    The interval is ``poll_s``, or longer when a read costs more CPU than :data:`READ_SHARE`
    of it: a big store makes the page update less often rather than take the bridge's time
    (the monitor shares the machine with it; measured: a scan of 15,000 STF rows for the
    histograms cost 80-170 ms on the 2-core test machine under load)."""

    def __init__(self, source: Source, poll_s: float):
        self.source, self.poll_s = source, poll_s
        self.interval = poll_s
        self.last_cost = 0.0  # CPU seconds of the previous read
        self.lock = threading.Lock()
        self.refreshing = False
        self.at, self.status, self.json = 0.0, None, ""
        self.metrics: list[Metric] = []
        self.json_parts: dict[str, bytes] = {}  # parts of this snapshot, serialised

    def refresh(self) -> None:
        try:
            started = time.thread_time()  # this thread's CPU: the cost to the machine
            status = self.source.read(detail=False)
            stored = store_metrics(self.source.engine)
            text = status.model_dump_json(exclude={"collected_at"})
            cost = time.thread_time() - started
            with self.lock:
                self.status, self.json, self.metrics = status, text, stored
                self.json_parts = {}
                self.at = time.monotonic()
                # the cheaper of the last two reads: a one-off (the first read compiles the
                # queries; a GC pause) does not stretch the interval, a big store does
                self.interval = max(self.poll_s, min(cost, self.last_cost) / READ_SHARE)
                self.last_cost = cost
        finally:
            with self.lock:
                self.refreshing = False

    def serialised(self, part: str, kind: type) -> bytes:
        """One part of the snapshot (``runs``, ``dead_letters``, or ``""`` for all) as JSON,
        serialised once per snapshot however many requests ask for it."""
        self.get()  # fresh enough, or a re-read started
        with self.lock:  # the snapshot now, and its parts: a refresh clears them together
            if part not in self.json_parts:
                value = getattr(self.status, part) if part else self.status
                self.json_parts[part] = _adapter(kind).dump_json(value)
            return self.json_parts[part]

    def with_metrics(self) -> tuple[Status, list[Metric]]:
        status, _ = self.get()
        with self.lock:
            return status, self.metrics

    def get(self) -> tuple[Status, str]:
        with self.lock:
            first = self.status is None
            stale = first or time.monotonic() - self.at >= self.interval
            start = stale and not self.refreshing
            if start:
                self.refreshing = True
        if first and start:
            self.refresh()  # nothing to serve yet: this reader waits once
        elif start:
            threading.Thread(target=self.refresh, daemon=True).start()
        deadline = time.monotonic() + 60
        while True:  # only while another reader makes the first snapshot
            with self.lock:
                if self.status is not None:
                    return self.status, self.json
            if time.monotonic() > deadline:
                raise TimeoutError("the store did not answer within 60 s")
            time.sleep(0.01)


def _instances(status: Status) -> list[Instance]:
    return status.instances + status.submitted


_ADAPTERS: dict[type, TypeAdapter] = {}


def _adapter(kind: type) -> TypeAdapter:
    return _ADAPTERS.setdefault(kind, TypeAdapter(kind))


def as_json(value: object, kind: type) -> Response:
    """The model serialised by pydantic's own (Rust) serializer. The routes still declare
    their ``response_model`` for the OpenAPI document; returning a Response skips FastAPI's
    second validation and its slower generic encoder (a 50-run summary: ~10× faster)."""
    return Response(_adapter(kind).dump_json(value), media_type="application/json")


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def create_app(source: Source, *, poll_s: float = 1.0) -> FastAPI:
    app = FastAPI(title="swfflow monitor", version="1", openapi_url=f"{API}/openapi.json",
                  docs_url=f"{API}/docs", redoc_url=None,
                  description="Runs, DAQ states, tasks, jobs and dead letters of swfflow.")
    snapshots = Snapshots(source, poll_s)
    registry = registry_for(snapshots.with_metrics)
    page = resources.files("swfflow.monitor").joinpath("page.html").read_text()

    def read() -> Status:
        return snapshots.get()[0]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    # summaries come from the shared snapshot (at most --poll seconds old); one run, one task
    # and the DAG read the store when asked
    @app.get(f"{API}/status", response_model=Status, summary="Everything (job counts only)")
    def status() -> Response:
        return json_response(snapshots.serialised("", Status))

    @app.get(f"{API}/runs", response_model=list[Run], summary="DAQ runs a bridge saw")
    def runs() -> Response:
        return json_response(snapshots.serialised("runs", list[Run]))

    @app.get(f"{API}/runs/{{run}}", response_model=Run, summary="One run with its jobs")
    def one_run(run: str) -> Response:
        found = source.read(run, detail=True).runs
        if not found:
            raise HTTPException(404, f"no run {run!r} in {source.label}")
        return as_json(found[0], Run)

    @app.get(f"{API}/instances", response_model=list[Instance],
             summary="Workflow instances: swfflow run, submit, and the bridge's runs")
    def instances() -> Response:
        return as_json(_instances(read()), list[Instance])

    def find_instance(instance: str, detail: bool) -> Instance:
        for inst in _instances(source.read(detail=detail, instance=instance)):
            if inst.instance == instance:
                return inst
        raise HTTPException(404, f"no instance {instance!r} in {source.label}")

    @app.get(f"{API}/instances/{{instance}}/tasks/{{key}}", response_model=Task,
             summary="One task with its jobs: state, exit code, command, outputs, log tail")
    def task(instance: str, key: str) -> Response:
        for found in find_instance(instance, True).tasks:
            if found.key == key:
                return as_json(found, Task)
        raise HTTPException(404, f"no task {key!r} in {instance!r}")

    @app.get(f"{API}/instances/{{instance}}/dag.svg", summary="The task graph as SVG",
             response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}})
    def dag(instance: str) -> Response:
        return Response(to_svg(find_instance(instance, False).tasks),
                        media_type="image/svg+xml")

    @app.get(f"{API}/dead-letters", response_model=list[DeadLetter])
    def dead_letters() -> Response:
        return json_response(snapshots.serialised("dead_letters", list[DeadLetter]))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(exposition(registry), media_type="text/plain; version=0.0.4")

    @app.get(f"{API}/events", summary="Server-sent events: the status model each time it "
             "changes (event `status`)", response_class=StreamingResponse)
    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(_stream(request, snapshots, poll_s),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    return app


async def _stream(request: Request, snapshots: Snapshots, poll_s: float) -> AsyncIterator[str]:
    last, quiet_since = "", time.monotonic()
    while not await request.is_disconnected():
        _, text = await run_in_threadpool(snapshots.get)
        if text != last:
            last, quiet_since = text, time.monotonic()
            yield f"event: status\ndata: {text}\n\n"
        elif time.monotonic() - quiet_since > KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll_s)
