"""The bridge's settings (``swfflow bridge`` options), read by the loop and its collaborators."""

from __future__ import annotations

from dataclasses import dataclass

from swfflow.stream.messages import EPIC_TOPIC


@dataclass
class BridgeConfig:
    namespace: str | None = None  # only this testbed namespace (messages without one pass)
    batch_size: int = 500  # attach when this many STFs wait …
    batch_ms: float = 50.0  # … or when the oldest has waited this long
    attach_parallel: int = 2  # attach calls at once (catalogs with a client per thread)
    # register STFs without their run/sequence metadata and set it once nothing waits to be
    # attached: per-file metadata is Rucio's slow path (about 4x an attach, measured)
    defer_metadata: bool = True
    metadata_batch: int = 200  # STFs per metadata call (bounds how long it holds a slot)
    tick_s: float = 1.0  # follow the runs' tasks this often
    end_timeout_s: float = 120.0  # after end_run, wait this long for announced-but-missing STFs
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    destination: str = EPIC_TOPIC  # where stf_ready goes
    sender: str = "swfflow-bridge"
    emit_ready: bool = True
    rse: str | None = None  # where STF replicas are registered (catalog default if None)
    # the butterfly (issue 15): copy every attached STF to each of these E1 RSEs (profile
    # bridge.sites); the ones marked down (profile bridge.sites_down, --site-down) get none
    sites: tuple[str, ...] = ()
    sites_down: tuple[str, ...] = ()
    replicate_batch: int = 200  # STFs per copy batch and site
    site_failures_down: int = 3  # failed copy batches in a row: the site is down
    site_retry_s: float = 30.0  # a down site is tried again this often (and caught up)
