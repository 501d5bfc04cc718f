"""Prometheus metrics of what the stores hold, computed at scrape time (a custom collector on
its own registry): the stores are the truth, so a restarted monitor loses no counts, and
several monitors over one store agree.

Counters are cumulative over the store's life; latencies are histograms over every STF the
store keeps. They are read with the monitor's snapshot (:class:`swfflow.monitor.app.Snapshots`),
so any number of scrapers cost one read of the store per snapshot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import case, func, inspect, select
from sqlalchemy.engine import Engine

from swfflow.monitor.model import Status

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def _latency_columns(latency: Any, present: Any) -> list[Any]:
    """count, sum and one cumulative bucket count per bound — computed by the database, so a
    scrape of a store of a million STFs brings no STF row into Python."""
    return [func.count(present), func.coalesce(func.sum(latency), 0.0),
            *(func.coalesce(func.sum(case((latency <= bound, 1), else_=0)), 0)
              for bound in LATENCY_BUCKETS)]


def _buckets(count: int, cumulative: Sequence[Any]) -> list[tuple[str, int]]:
    return ([(str(b), int(n)) for b, n in zip(LATENCY_BUCKETS, cumulative, strict=True)]
            + [("+Inf", int(count))])


def _histogram(name: str, doc: str, values: Sequence[Any]) -> HistogramMetricFamily:
    count, total, *cumulative = values
    return HistogramMetricFamily(name, doc, buckets=_buckets(count, cumulative),
                                 sum_value=float(total))


def _bridge_metrics(engine: Engine) -> Iterable[Metric]:
    from swfflow.stream.tables import DEAD, FILES, MESSAGES

    attach = FILES.c.attached_at - FILES.c.gen_at
    meta = FILES.c.meta_at - FILES.c.attached_at
    with engine.connect() as conn:
        processed = conn.execute(select(func.count()).select_from(MESSAGES)).scalar_one()
        dead = conn.execute(select(DEAD.c.msg_type, func.count()).group_by(DEAD.c.msg_type)).all()
        # one pass over the STF rows for both histograms and the counts
        columns = [func.count(), *_latency_columns(attach, FILES.c.attached_at),
                   *_latency_columns(meta, FILES.c.meta_at)]
        n_stfs, *both = conn.execute(select(*columns)).one()
    width = len(LATENCY_BUCKETS) + 2
    attached, metadata = both[:width], both[width:]
    n_dead = sum(n for _, n in dead)
    # stf_gen messages are kept as STF rows, not message ids: count both
    received = CounterMetricFamily("swfflow_messages_received",
                                   "DAQ messages the bridge received and kept an effect of")
    received.add_metric([], processed + n_stfs + n_dead)
    yield received
    dead_family = CounterMetricFamily("swfflow_messages_dead_lettered",
                                      "Messages that could never be processed",
                                      labels=["msg_type"])
    for msg_type, count in dead:
        dead_family.add_metric([msg_type or "unknown"], count)
    yield dead_family
    attached_family = CounterMetricFamily("swfflow_stf_attached", "STFs attached to a run dataset")
    attached_family.add_metric([], attached[0])
    yield attached_family
    yield _histogram("swfflow_stf_attach_latency_seconds", "stf_gen received → attached",
                     attached)
    yield _histogram("swfflow_stf_metadata_latency_seconds",
                     "attached → run/sequence metadata set in the catalog", metadata)
    backlog = GaugeMetricFamily("swfflow_stf_backlog", "STFs recorded but not yet attached")
    backlog.add_metric([], n_stfs - attached[0])
    yield backlog
    yield from _replication_metrics(engine)


def _replication_metrics(engine: Engine) -> Iterable[Metric]:
    """attached → verified copy at each E1 site (the butterfly), one histogram per site."""
    from swfflow.stream.tables import FILES, REPLICAS

    if not inspect(engine).has_table(REPLICAS.name):  # a store from before the butterfly
        return
    latency = REPLICAS.c.copied_at - FILES.c.attached_at
    query = (select(REPLICAS.c.rse, *_latency_columns(latency, REPLICAS.c.copied_at))
             .join(FILES, (FILES.c.run_id == REPLICAS.c.run_id)
                   & (FILES.c.filename == REPLICAS.c.filename))
             .group_by(REPLICAS.c.rse).order_by(REPLICAS.c.rse))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    family = HistogramMetricFamily("swfflow_stf_replication_latency_seconds",
                                   "attached → verified copy at an E1 site", labels=["rse"])
    for rse, count, total, *cumulative in rows:
        family.add_metric([rse], _buckets(count, cumulative), float(total))
    yield family


def _model_metrics(status: Status) -> Iterable[Metric]:
    tasks = GaugeMetricFamily("swfflow_tasks", "Tasks by state and site",
                              labels=["state", "site"])
    counts = Counter((t.phase, t.site or "") for inst in status.instances + status.submitted
                     for t in inst.tasks)
    for (state, site), n in sorted(counts.items()):
        tasks.add_metric([state, site], n)
    yield tasks
    runs = GaugeMetricFamily("swfflow_runs", "DAQ runs by the bridge's phase", labels=["phase"])
    for phase, n in sorted(Counter(r.phase for r in status.runs).items()):
        runs.add_metric([phase], n)
    yield runs
    # the butterfly, per run × E1 site: copies there, and whether its sum equals the DAQ's
    copies = GaugeMetricFamily("swfflow_site_replicated_stfs",
                               "STFs of a run with a verified copy at an E1 site",
                               labels=["run", "rse"])
    matches = GaugeMetricFamily("swfflow_site_checksum_matches_daq",
                                "1 if the site's running checksum of the run equals the DAQ's",
                                labels=["run", "rse"])
    for run in status.runs:
        for site in run.sites:
            copies.add_metric([run.run, site.rse], site.files)
            matches.add_metric([run.run, site.rse], int(site.matches_daq))
    yield copies
    yield matches


def store_metrics(engine: Engine | None) -> list[Metric]:
    """The bridge's counters and latency histograms, read from the store now (a scan of its
    STF rows: the monitor does this once per snapshot, not once per scrape)."""
    if engine is None or not inspect(engine).has_table("br_files"):
        return []
    return list(_bridge_metrics(engine))


class StoreCollector:
    """The prometheus_client collector protocol (``collect()``) over a snapshot: the status
    model and the store's metrics read with it."""

    def __init__(self, read: Callable[[], tuple[Status, list[Metric]]]):
        self.read = read

    def collect(self) -> Iterable[Metric]:
        status, stored = self.read()
        yield from _model_metrics(status)
        yield from stored


def registry_for(read: Callable[[], tuple[Status, list[Metric]]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(read))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
