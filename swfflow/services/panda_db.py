"""PanDA's PostgreSQL database, built from the panda-database schema folder used in place.

The schema folder (``../shared/panda-database`` next to the repository, ``$SWFFLOW_PANDA_SCHEMA``
or ``--panda-schema DIR``; either the repository or its ``schema/postgres`` folder) is loaded the
way its ``panda_db_init.sh`` does, minus what this machine lacks (reference/panda-server.md):

- no pg_partman 5 / pg_cron: ``pg_PARTITION.sql`` and ``post_step_cron.sql`` are skipped; every
  partitioned table gets a DEFAULT partition, and the per-minute procedures ``post_step_cron.sql``
  schedules are run by the web front every few seconds instead (``cron_calls``);
- ``worker_node_queue`` (only created by a patch) is created before the scheduler jobs that read it.

Then the rows JEDI needs before it refines a task (the JEDI version row, active work queues, a
global share per label, the resource types). The result is a template database built once per
machine and schema version; each state directory gets a copy (``fresh_database``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from swfflow.errors import ConfigError
from swfflow.services import panda_queues, postgres

SCHEMA_ENV = "SWFFLOW_PANDA_SCHEMA"
# the schema's tables are owned by this role (``ALTER … OWNER TO panda``): a cluster-wide name
DB_ROLE, DB_PASSWORD = "panda", "panda"
# init script order: per component, these kinds of files (panda_db_init.sh)
COMPONENTS = ("PANDA", "PANDAMETA", "PANDAARCH", "PANDABIGMON", "DEFT")
KINDS = ("TABLE", "VIEW", "TYPE", "SEQUENCE", "FUNCTION", "TRIGGER", "SCHEDULER_JOBS", "PROCEDURE")
# a table the scheduler jobs read that only a patch creates: (patch file, table)
PATCH_TABLES = (("0.0.31.patch.sql", "worker_node_queue"),)
CRON_FILE = "post_step_cron.sql"
LABELS = ("test", "managed", "user")
# (name, mincore, maxcore, minrampercore, maxrampercore): JEDI maps each task to one of these
RESOURCE_TYPES = (("SCORE", 1, 1, None, 2000), ("SCORE_HIMEM", 1, 1, 2001, None),
                  ("MCORE", 2, None, None, 2000), ("MCORE_HIMEM", 2, None, 2001, None))


def schema_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The ``schema/postgres`` folder of panda-database; a clear error when it is missing."""
    repo = Path(__file__).resolve().parents[2]
    candidates = ([Path(explicit)] if explicit else
                  [Path(os.environ[SCHEMA_ENV])] if os.environ.get(SCHEMA_ENV) else
                  [repo.parent / "shared" / "panda-database"])
    for base in candidates:
        for folder in (base, base / "schema" / "postgres"):
            if (folder / "sqls" / "pg_PANDA_TABLE.sql").is_file() and (folder / "version").is_file():
                return folder.resolve()
    raise ConfigError(f"PanDA's database schema is not at {candidates[0]}",
                      hint="give the panda-database folder (PanDAWMS/panda-database, or its "
                           f"schema/postgres) with --panda-schema DIR or ${SCHEMA_ENV}")


def schema_version(folder: Path) -> str:
    return (folder / "version").read_text().strip()


def template_name(folder: Path) -> str:
    return "swfflow_panda_template_" + schema_version(folder).replace(".", "_")


def database_name(directory: Path) -> str:
    return postgres.per_directory_name("swfflow_panda", directory)


def _patch_statements(folder: Path, patch: str, table: str) -> str:
    """The CREATE TABLE (+ OWNER) of ``table`` in a patch file, read from the file in place."""
    text = (folder / "sqls" / "patches" / patch).read_text()
    found = re.search(rf"CREATE TABLE IF NOT EXISTS doma_panda\.{table} \(.*?\);\s*"
                      rf"ALTER TABLE doma_panda\.{table} OWNER TO panda;", text, re.S | re.I)
    if not found:
        raise ConfigError(f"no CREATE TABLE {table} in {patch}", where=str(folder))
    return found.group(0)


def cron_calls(folder: Path) -> list[str]:
    """The per-minute procedure calls ``post_step_cron.sql`` would have pg_cron run."""
    text = (folder / "sqls" / CRON_FILE).read_text()
    return re.findall(r"cron\.schedule \('\* \* \* \* \*', '(call doma_panda\.\w+\(\))'\)", text)


# PanDA's watcher (copyArchive; services/panda_ext/swf_watcher.py) fails a job whose pilot
# has not reported for this long, and JEDI retries it. Production: 2 h (the pilot beats every
# 30 min); here 2 min against the pilot's 60 s beat, so a test sees a killed pilot's job retried
HEARTBEAT_TIMEOUT_S = 120
CONFIG_SQL = f"""
    insert into doma_panda.config (app, component, key, value, type, vo, descr) values
    ('pandaserver', 'watcher', 'HEARTBEAT_TIMEOUT_production', '{HEARTBEAT_TIMEOUT_S / 3600}',
     'float', 'atlas', 'hours without a pilot report before a job fails (swfflow tests)');
"""


def _seed_sql(folder: Path, vo: str) -> str:
    major, minor, patch = schema_version(folder).split(".")
    versions = ",".join(f"('{component}', {major}, {minor}, {patch})"
                        for component in ("PanDA", "JEDI"))
    shares = ",".join(f"('swf_{label}', 100, NULL, '{label}', '{vo}', 'N')" for label in LABELS)
    types = ",".join("(" + ", ".join("NULL" if value is None else repr(value) for value in row)
                     + ")" for row in RESOURCE_TYPES)
    return f"""
    insert into doma_panda.pandadb_version (component, major, minor, patch) values {versions};
    update doma_panda.jedi_work_queue set status = 'active', queue_order = 1 where vo = '{vo}';
    insert into doma_panda.global_shares (name, value, parent, prodsourcelabel, vo, throttled)
        values {shares};
    insert into doma_panda.resource_types
        (resource_name, mincore, maxcore, minrampercore, maxrampercore) values {types};
    """


DEFAULT_PARTITIONS = """
do $$ declare t record; begin
  for t in select n.nspname as s, c.relname as r from pg_class c
           join pg_namespace n on n.oid = c.relnamespace
           where c.relkind = 'p' and not c.relispartition loop
    execute format('create table if not exists %I.%I partition of %I.%I default',
                   t.s, t.r || '_default', t.s, t.r);
    execute format('alter table %I.%I owner to panda', t.s, t.r || '_default');
  end loop; end $$;
"""


def build_schema(folder: Path, database: str, vo: str) -> None:
    """Load the schema into ``database`` and add the rows JEDI needs."""
    def run_sql(sql: str, what: str) -> None:
        postgres.psql(sql, what, database=database, timeout=600)

    sqls = folder / "sqls"
    for component in COMPONENTS:
        for kind in KINDS:
            path = sqls / f"pg_{component}_{kind}.sql"
            if kind == "SCHEDULER_JOBS":
                for patch, table in PATCH_TABLES:
                    run_sql(_patch_statements(folder, patch, table), f"create {table}")
            if path.is_file():
                postgres.psql_file(path, f"load {path.name}", database)
    run_sql(DEFAULT_PARTITIONS, "create default partitions")
    postgres.psql_file(sqls / "post_step_panda.sql", "load post_step_panda.sql", database)
    run_sql(_seed_sql(folder, vo), "insert JEDI's seed rows")


def fresh_database(folder: Path, directory: Path, vo: str) -> str:
    """An empty PanDA database for the state directory ``directory`` (a copy of the template)."""
    postgres.ensure_role(DB_ROLE, DB_PASSWORD)
    postgres.psql(f"alter role {DB_ROLE} set search_path = doma_panda, public",
                  "set panda's search_path")
    template = template_name(folder)
    postgres.ensure_template(template, DB_ROLE, lambda name: build_schema(folder, name, vo))
    name = database_name(directory)
    postgres.copy_template(template, name, DB_ROLE)
    # the queues live outside the template: changing them needs no template rebuild
    postgres.psql(panda_queues.seed_sql(vo), "insert the PanDA queues", database=name)
    postgres.psql(CONFIG_SQL, "insert PanDA's configuration rows", database=name)
    return name
