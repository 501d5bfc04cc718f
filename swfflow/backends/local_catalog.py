"""The local Catalog: Rucio's dataset/file model in one SQLite file, no server.

Datasets are created open and closed once; files carry size, adler32 (8 hex digits) and a pfn
(a local path); attachments keep their order (``seq``) so a consumer of an open dataset can ask
for "files attached after the ones I have seen" exactly as a JEDI task over an open Rucio
dataset does. Every call is idempotent (see :mod:`swfflow.backends.base`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.engine import Engine

from swfflow.backends.base import CatalogBase, FileRecord
from swfflow.errors import ConfigError
from swfflow.plan.model import ReplicationRule
from swfflow.state import sqlite_engine

_META = MetaData()

DATASETS = Table(
    "catalog_datasets", _META,
    Column("did", String, primary_key=True),
    Column("open", Boolean, nullable=False, default=True),
    Column("meta", JSON, nullable=False, default=dict),
    Column("rules", JSON, nullable=False, default=list),
)
FILES = Table(
    "catalog_files", _META,
    Column("did", String, primary_key=True),
    Column("size", Integer, nullable=False),
    Column("adler32", String(8), nullable=False),
    Column("pfn", String),
    Column("meta", JSON, nullable=False, default=dict),
)
ATTACHMENTS = Table(
    "catalog_attachments", _META,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("dataset", String, nullable=False, index=True),
    Column("file", String, nullable=False),
    Column("rse", String),
)


class LocalCatalog(CatalogBase):
    """A :class:`~swfflow.backends.base.Catalog` in SQLite."""

    def __init__(self, engine: Engine):
        self.engine = engine
        _META.create_all(engine)

    @property
    def host(self) -> str:
        """Where the catalog is (what ``swfflow submit`` records, as Rucio's host)."""
        return str(self.engine.url)

    @classmethod
    def at(cls, path: str | Path) -> LocalCatalog:
        return cls(sqlite_engine(path))

    # --- Catalog protocol -----------------------------------------------------------------
    def create_dataset(self, did: str, *, meta: Mapping[str, Any] | None = None,
                       rules: Sequence[ReplicationRule] = ()) -> bool:
        _check_did(did)
        with self.engine.begin() as conn:
            if conn.execute(select(DATASETS.c.did).where(DATASETS.c.did == did)).first():
                return False
            conn.execute(DATASETS.insert().values(
                did=did, open=True, meta=dict(meta or {}),
                rules=[{"rse_expression": r.rse_expression, "copies": r.copies,
                        "lifetime_s": r.lifetime_s} for r in rules]))
        return True

    def add_files(self, dataset: str, files: Sequence[FileRecord], *,
                  rse: str | None = None) -> int:
        with self.engine.begin() as conn:
            row = conn.execute(select(DATASETS.c.open).where(DATASETS.c.did == dataset)).first()
            if row is None:
                raise ConfigError(f"dataset {dataset} does not exist",
                                  hint="create it before attaching files")
            attached = set(conn.execute(select(ATTACHMENTS.c.file)
                                        .where(ATTACHMENTS.c.dataset == dataset)).scalars())
            new = [f for f in files if f.did not in attached]
            if new and not row.open:
                raise ConfigError(f"dataset {dataset} is closed; cannot attach "
                                  f"{len(new)} file(s) such as {new[0].did}")
            known = set(conn.execute(select(FILES.c.did)
                                     .where(FILES.c.did.in_([f.did for f in new]))).scalars())
            fresh = [f for f in new if f.did not in known]
            if fresh:
                conn.execute(FILES.insert(), [
                    {"did": f.did, "size": f.size, "adler32": f.adler32, "pfn": f.pfn,
                     "meta": dict(f.meta)} for f in fresh])
            seen: set[str] = set()
            rows = []
            for f in new:
                if f.did not in seen:
                    seen.add(f.did)
                    rows.append({"dataset": dataset, "file": f.did, "rse": rse})
            if rows:
                conn.execute(ATTACHMENTS.insert(), rows)
        return len(rows)

    def set_file_metadata(self, files: Sequence[FileRecord]) -> None:
        wanted = {f.did: dict(f.meta) for f in files if f.meta}
        with self.engine.begin() as conn:
            rows = conn.execute(select(FILES.c.did, FILES.c.meta)
                                .where(FILES.c.did.in_(list(wanted)))).all()
            missing = set(wanted) - {r.did for r in rows}
            if missing:
                raise ConfigError(f"file {sorted(missing)[0]} is not registered",
                                  hint="register (attach) files before setting metadata")
            for row in rows:
                conn.execute(FILES.update().where(FILES.c.did == row.did)
                             .values(meta={**(row.meta or {}), **wanted[row.did]}))

    def close_dataset(self, did: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(DATASETS.update().where(DATASETS.c.did == did).values(open=False))

    def is_open(self, did: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(select(DATASETS.c.open).where(DATASETS.c.did == did)).first()
        if row is None:
            raise ConfigError(f"dataset {did} does not exist")
        return bool(row.open)

    def dataset_exists(self, did: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(DATASETS.c.did)
                                .where(DATASETS.c.did == did)).first() is not None

    def list_files(self, did: str) -> list[FileRecord]:
        return self.files_after(did, 0)[1]

    # --- beyond the protocol: incremental reads for open datasets ---------------------------
    def files_after(self, did: str, seq: int) -> tuple[int, list[FileRecord]]:
        """Files attached to ``did`` after attachment number ``seq``, in attachment order,
        and the last attachment number seen (pass it back next time)."""
        query = (select(ATTACHMENTS.c.seq, FILES)
                 .join(FILES, FILES.c.did == ATTACHMENTS.c.file)
                 .where(ATTACHMENTS.c.dataset == did, ATTACHMENTS.c.seq > seq)
                 .order_by(ATTACHMENTS.c.seq))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        records = [FileRecord(did=r.did, size=r.size, adler32=r.adler32, pfn=r.pfn,
                              meta=r.meta or {}) for r in rows]
        return (rows[-1].seq if rows else seq), records

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset with its state and file count (for ``swfflow status``)."""
        return datasets_in(self.engine)


def datasets_in(engine: Engine) -> list[dict[str, Any]]:
    """Every dataset of the local catalog in ``engine``, with its state and file count, read
    without a catalog (``swfflow status``)."""
    counts_q = (select(ATTACHMENTS.c.dataset, func.count().label("n"))
                .group_by(ATTACHMENTS.c.dataset))
    with engine.connect() as conn:
        rows = conn.execute(select(DATASETS).order_by(DATASETS.c.did)).all()
        counts = {r.dataset: r.n for r in conn.execute(counts_q)}
    return [{"did": r.did, "open": bool(r.open), "files": counts.get(r.did, 0)} for r in rows]


def _check_did(did: str) -> None:
    scope, sep, name = did.partition(":")
    if not sep or not scope or not name:
        raise ConfigError(f"dataset name {did!r} is not of the form scope:name")
