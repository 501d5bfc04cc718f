"""The Rucio Catalog: open run datasets, files with adler32 + bytes, batched attach, rules.

A :class:`~swfflow.backends.base.Catalog` over ``rucio.client.Client``. Every call is
idempotent: an existing dataset, an existing replica, an attached file or an existing rule is
not an error and is never duplicated, so re-running after a crash completes half-done work.

Transient failures (connection refused or reset, timeouts, HTTP 5xx, ``DatabaseException``) are
retried with exponential backoff (tenacity); after the last attempt a
:class:`~swfflow.errors.ServiceError` names the server and the call. Permanent errors (a bad
DID, access denied, a closed dataset, …) are never retried.
"""

from __future__ import annotations

import configparser
import copy
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from rucio.common import exception as rucio_errors
from tenacity import (RetryError, Retrying, retry_if_exception, stop_after_attempt,
                      wait_exponential, wait_random)

from swfflow.backends.base import CatalogBase, FileRecord
from swfflow.checksum import normalize_adler32
from swfflow.errors import ConfigError, ServiceError
from swfflow.plan.model import ReplicationRule

DEFAULT_RSE = "DAQ_DISK"
E1_RSES = ("E1_BNL_DISK", "E1_JLAB_DISK")
# raw data goes to both Echelon-1 sites: one rule, one copy at each
BUTTERFLY_RULE = ReplicationRule(rse_expression="|".join(E1_RSES), copies=len(E1_RSES))

_T = TypeVar("_T")
_TRANSIENT_TYPES = (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError, ConnectionError,
                    rucio_errors.ServerConnectionException, rucio_errors.DatabaseException)
_HTTP_5XX = re.compile(r"http status code: 5\d\d")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the server or the network, not the request."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    # an HTTP 5xx without a Rucio exception class comes back as the bare base class
    return type(exc) is rucio_errors.RucioException and bool(_HTTP_5XX.search(str(exc)))


def split_did(did: str) -> tuple[str, str]:
    scope, sep, name = did.partition(":")
    if not sep or not scope or not name:
        raise ConfigError(f"{did!r} is not a Rucio DID", hint="write it as scope:name")
    return scope, name


def file_guid(did: str) -> str:
    """The file's GUID, derived from its DID so a retried registration gives the same one.
    PanDA needs one per file (JEDI's Rucio client slices it; files without one break its
    ``getFilesInDataset``)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"rucio-did:{did}").hex


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _pfn(value: str) -> str:
    """A local path becomes a file:// URL; URLs are kept."""
    return value if "://" in value else "file://localhost" + os.path.abspath(value)


class RucioCatalog(CatalogBase):
    """A Catalog on a Rucio server. Build it with :meth:`from_config` or the server's URL."""

    parallel_clients = True  # a client is not thread-safe, a twin is cheap (for_thread)

    def __init__(self, host: str, *, account: str = "root", auth_type: str = "userpass",
                 creds: Mapping[str, Any] | None = None, default_rse: str = DEFAULT_RSE,
                 batch_size: int = 500, attempts: int = 5, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0, client_factory: Callable[[], Any] | None = None):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        self.host = host.rstrip("/")
        self.default_rse = default_rse
        self.batch_size = batch_size
        self._client_args = {"rucio_host": self.host, "auth_host": self.host,
                             "account": account, "auth_type": auth_type,
                             "creds": dict(creds or {})}
        self._client_factory = client_factory
        self._client: Any = None
        self._retrying = dict(stop=stop_after_attempt(attempts),
                              wait=wait_exponential(multiplier=backoff_s, max=max_backoff_s)
                              + wait_random(0, backoff_s),
                              retry=retry_if_exception(is_transient))
        self._deterministic: dict[str, bool] = {}

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **options: Any
                    ) -> RucioCatalog:
        """From a rucio.cfg ``[client]`` section (default: ``$RUCIO_CONFIG``)."""
        path = path or os.environ.get("RUCIO_CONFIG")
        if not path:
            raise ConfigError("no Rucio client configuration",
                              hint="set RUCIO_CONFIG (e.g. from `swfflow services status`)")
        parser = configparser.ConfigParser()
        if not parser.read(path) or not parser.has_section("client"):
            raise ConfigError("not a Rucio client configuration (no [client] section)",
                              where=str(path))
        section = parser["client"]
        if not section.get("rucio_host"):
            raise ConfigError("the [client] section has no rucio_host", where=str(path))
        creds = {key: section[key] for key in ("username", "password") if key in section}
        return cls(section.get("rucio_host", ""), account=section.get("account", "root"),
                   auth_type=section.get("auth_type", "userpass"), creds=creds, **options)

    def for_thread(self) -> RucioCatalog:
        """The same catalog with a client of its own, for use from another thread (a Rucio
        client is not thread-safe): the bridge's concurrent attach calls each take one."""
        twin = copy.copy(self)
        twin._client, twin._deterministic = None, dict(self._deterministic)
        return twin

    # --- the one way every server call goes ------------------------------------------------
    def _call(self, call: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<call>(*args)`` with retries on transient failures only."""
        def attempt() -> Any:
            if self._client is None:  # the constructor logs in: retried like any call
                self._client = (self._client_factory or self._make_client)()
            result = getattr(self._client, call)(*args, **kwargs)
            # generators (list_*) talk to the server only when consumed: consume inside
            return list(result) if isinstance(result, Iterator) else result

        try:
            for trial in Retrying(reraise=False, **self._retrying):
                with trial:
                    return attempt()
        except RetryError as failed:
            cause = failed.last_attempt.exception()
            raise ServiceError(
                f"Rucio server {self.host} failed on {call}() after "
                f"{failed.last_attempt.attempt_number} attempts: {type(cause).__name__}: {cause}",
                where=f"{self.host} {call}",
                hint="check `swfflow services status` or the server log; re-running is safe "
                     "(every catalog call is idempotent)") from cause
        raise AssertionError("unreachable")  # pragma: no cover

    def _make_client(self) -> Any:
        from rucio.client import Client

        return Client(**self._client_args)

    def _permanent(self, exc: Exception, call: str, did: str) -> ServiceError:
        return ServiceError(f"Rucio server {self.host} refused {call}() for {did}: "
                            f"{type(exc).__name__}: {exc}", where=f"{self.host} {call}")

    # --- datasets ---------------------------------------------------------------------------
    def create_dataset(self, did: str, *, meta: Mapping[str, Any] | None = None,
                       rules: Sequence[ReplicationRule] = ()) -> bool:
        scope, name = split_did(did)
        try:
            self._call("add_dataset", scope, name, meta=dict(meta or {}) or None)
            created = True
        except rucio_errors.DataIdentifierAlreadyExists:
            created = False
            if meta:  # refresh: a re-run may carry metadata the first attempt did not set
                self._call("set_metadata_bulk", scope, name, dict(meta))
        except rucio_errors.RucioException as exc:
            raise self._permanent(exc, "add_dataset", did) from exc
        self.add_rules(did, rules)
        return created

    def close_dataset(self, did: str) -> None:
        scope, name = split_did(did)
        if not self.is_open(did):
            return
        try:
            self._call("set_status", scope, name, open=False)
        except rucio_errors.UnsupportedOperation:
            if self.is_open(did):  # not "already closed" by a concurrent closer
                raise

    def is_open(self, did: str) -> bool:
        return bool(self._get_did(did)["open"])

    def dataset_exists(self, did: str) -> bool:
        try:
            self._get_did(did)
        except ConfigError:
            return False
        return True

    def _get_did(self, did: str) -> dict[str, Any]:
        scope, name = split_did(did)
        try:
            return self._call("get_did", scope, name)
        except rucio_errors.DataIdentifierNotFound as exc:
            raise ConfigError(f"dataset {did} does not exist in Rucio ({self.host})",
                              hint="create it before attaching files") from exc

    # --- files ------------------------------------------------------------------------------
    def add_files(self, dataset: str, files: Sequence[FileRecord], *,
                  rse: str | None = None) -> int:
        """Register replicas on ``rse`` and attach them, ``batch_size`` files per call.

        Optimistic: no listing of the dataset first (that grows with the dataset); a batch
        that is partly attached already is completed file by file."""
        scope, name = split_did(dataset)
        rse = rse or self.default_rse
        new = list({f.did: f for f in files}.values())
        if not self._get_did(dataset)["open"]:
            attached = {f"{c['scope']}:{c['name']}"
                        for c in self._call("list_content", scope, name)}
            missing = [f for f in new if f.did not in attached]
            if missing:
                raise ConfigError(f"dataset {dataset} is closed; cannot attach "
                                  f"{len(missing)} file(s) such as {missing[0].did}")
            return 0
        deterministic = self._is_deterministic(rse)
        count = 0
        for batch in _chunks(new, self.batch_size):
            replicas = [self._replica(f, deterministic, rse) for f in batch]
            try:
                self._call("add_replicas", rse, replicas)
            except rucio_errors.RucioException as exc:
                raise self._permanent(exc, "add_replicas", batch[0].did) from exc
            count += self._attach(scope, name, [{"scope": r["scope"], "name": r["name"]}
                                                for r in replicas])
        return count

    def replica_paths(self, rse: str, dids: Sequence[str]) -> dict[str, str]:
        """Rucio's path for each DID on a deterministic posix RSE (lfns2pfns is a GET: 50
        names per call keep its URL under the server's request-line limit)."""
        paths: dict[str, str] = {}
        for batch in _chunks(list(dids), 50):
            for did, pfn in self._call("lfns2pfns", rse, list(batch), operation="write").items():
                parts = urlsplit(pfn)
                if parts.scheme != "file":
                    raise ConfigError(f"RSE {rse} gives {pfn} for {did}: not a local file",
                                      hint="the local transfer copies to posix RSEs only")
                paths[did] = parts.path
        return paths

    def add_replicas(self, rse: str, files: Sequence[FileRecord]) -> None:
        """Register copies made on ``rse``, available. A replication rule's judge may have
        made the replica already (COPYING, waiting for a transfer): adding it again is
        accepted, and setting it AVAILABLE completes the rule's lock, as a finished
        transfer does. The judge inserting the same replica at the same moment fails one
        call: it is tried again once."""
        deterministic = self._is_deterministic(rse)
        for batch in _chunks(list(files), self.batch_size):
            replicas = [self._replica(f, deterministic, rse) for f in batch]
            available = [{"scope": r["scope"], "name": r["name"], "state": "A"}
                         for r in replicas]
            for attempt in (1, 2):
                try:
                    self._call("add_replicas", rse, replicas)
                    self._call("update_replicas_states", rse, available)
                    break
                except rucio_errors.RucioException as exc:
                    if attempt == 2:
                        raise self._permanent(exc, "add_replicas", batch[0].did) from exc
                    time.sleep(0.5)  # the judge's insert is committed by then

    def set_file_metadata(self, files: Sequence[FileRecord]) -> None:
        for batch in _chunks([f for f in files if f.meta], self.batch_size):
            dids = [{**dict(zip(("scope", "name"), split_did(f.did))), "meta": dict(f.meta)}
                    for f in batch]
            try:
                self._call("set_dids_metadata_bulk", dids)
            except rucio_errors.RucioException as exc:
                raise self._permanent(exc, "set_dids_metadata_bulk", batch[0].did) from exc

    def _attach(self, scope: str, name: str, dids: list[dict[str, str]]) -> int:
        try:
            self._call("attach_dids", scope, name, dids)
            return len(dids)
        except rucio_errors.FileAlreadyExists:
            pass  # someone (or a retried call) attached some: go file by file
        attached = {(c["scope"], c["name"]) for c in self._call("list_content", scope, name)}
        count = 0
        for did in dids:
            if (did["scope"], did["name"]) in attached:
                continue
            try:
                self._call("attach_dids", scope, name, [did])
                count += 1
            except rucio_errors.FileAlreadyExists:
                pass  # attached meanwhile by a concurrent writer
        return count

    def _replica(self, record: FileRecord, deterministic: bool, rse: str) -> dict[str, Any]:
        scope, name = split_did(record.did)
        replica: dict[str, Any] = {"scope": scope, "name": name, "bytes": int(record.size),
                                   "adler32": normalize_adler32(record.adler32),
                                   "meta": {**(record.meta or {}), "guid": file_guid(record.did)}}
        if not deterministic:  # the file is where it is: its path comes with it
            if not record.pfn:
                raise ConfigError(f"file {record.did} has no pfn, which RSE {rse} needs",
                                  hint=f"{rse} is non-deterministic: give each file its path")
            replica["pfn"] = _pfn(record.pfn)
        return replica

    def _is_deterministic(self, rse: str) -> bool:
        if rse not in self._deterministic:
            try:
                self._deterministic[rse] = bool(self._call("get_rse", rse)["deterministic"])
            except rucio_errors.RSENotFound as exc:
                raise ConfigError(f"RSE {rse} does not exist in Rucio ({self.host})",
                                  hint="see `rucio list-rses`") from exc
        return self._deterministic[rse]

    def list_files(self, did: str) -> list[FileRecord]:
        scope, name = split_did(did)
        self._get_did(did)
        files = self._call("list_files", scope, name)
        if not files:
            return []
        pfns = {f"{r['scope']}:{r['name']}": _first_pfn(r)
                for r in self._call("list_replicas", [{"scope": scope, "name": name}])}
        dids = [{"scope": f["scope"], "name": f["name"]} for f in files]
        metas = {f"{m['scope']}:{m['name']}": m
                 for m in self._call("get_metadata_bulk", dids, plugin="ALL")}
        records = []
        for f in files:
            key = f"{f['scope']}:{f['name']}"
            meta = _user_meta(metas.get(key, {}))
            records.append(FileRecord(did=key, size=int(f["bytes"]),
                                      adler32=normalize_adler32(f["adler32"]),
                                      pfn=pfns.get(key), meta=meta))
        return records

    # --- replication rules ------------------------------------------------------------------
    def add_rules(self, did: str, rules: Sequence[ReplicationRule]) -> list[str]:
        """Create the rules (an identical existing rule is found, not duplicated); their ids."""
        scope, name = split_did(did)
        ids = []
        for rule in rules:
            try:
                ids += self._call("add_replication_rule", [{"scope": scope, "name": name}],
                                  rule.copies, rule.rse_expression, lifetime=rule.lifetime_s,
                                  grouping="DATASET")
            except rucio_errors.DuplicateRule:
                ids += [r["id"] for r in self.list_rules(did)
                        if r["rse_expression"] == rule.rse_expression]
            except rucio_errors.RucioException as exc:
                raise self._permanent(exc, "add_replication_rule", did) from exc
        return ids

    def list_rules(self, did: str) -> list[dict[str, Any]]:
        """The dataset's rules: id, rse_expression, copies, state, locks_*_cnt, …"""
        scope, name = split_did(did)
        return self._call("list_did_rules", scope, name)


# columns of Rucio's DID table that are bookkeeping, not metadata a user set
_DID_BOOKKEEPING = frozenset((
    "scope name account did_type type availability bytes length adler32 md5 guid guid_ events "
    "created_at updated_at accessed_at access_cnt closed_at deleted_at eol_at expired_at "
    "is_open open monotonic hidden obsolete suppressed purge_replicas complete is_new "
    "is_archive constituent transient").split())


def _user_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What was set on a file (run_number, sequence, …) out of get_metadata(plugin=ALL)."""
    return {k: v for k, v in meta.items() if k not in _DID_BOOKKEEPING and v is not None}


def _first_pfn(replica: Mapping[str, Any]) -> str | None:
    for pfns in (replica.get("rses") or {}).values():
        if pfns:
            return pfns[0]
    return None
