"""A real Rucio 41 server on the local PostgreSQL, served by gunicorn (reference/rucio.md §1-§6).

The server package lives in its own venv (it pins ``stomp-py<=8.2``; swfflow's venv has only
``rucio-clients``): ``$SWFFLOW_RUCIO_VENV`` or ``<state>/rucio/venv``. It uses a dedicated role
and database on PostgreSQL (``$SWFFLOW_PGHOST``:``$SWFFLOW_PGPORT``, trust auth as
``$SWFFLOW_PGUSER``), account ``root`` with userpass login, scopes, and three posix RSEs:

- ``DAQ_DISK`` — non-deterministic with prefix ``/``: files are registered where the DAQ wrote
  them, any absolute path on this machine;
- ``E1_BNL_DISK``, ``E1_JLAB_DISK`` — deterministic, under ``<state>/rucio/rse/``: the targets
  of the butterfly replication rule.

Clients use ``RUCIO_CONFIG=<state>/rucio/client/rucio.cfg``. Next to gunicorn runs the
judge-evaluator daemon, so a rule on an open dataset covers the files attached later (locks
appear within seconds; ``rucio_judge.py`` says why its back-off is shortened). No transfer daemons run: those locks stay REPLICATING.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

from swfflow.services import postgres
from swfflow.services.state import (ServiceHome, ServiceStatus, choose_port, pid_file_alive,
                                    run_checked, start_detached, stop_pid, wait_ready,
                                    write_atomic)

NAME = "rucio"
PREFERRED_PORT = 8080
START_TIMEOUT_S = 60.0
SERVER_REQUIREMENTS = ("rucio==41.5.1", "rucio-clients==41.5.1", "psycopg[binary]==3.3.9",
                       "gunicorn==27.0.1")
DB_ROLE, DB_PASSWORD = "swfflow_rucio", "rucio"
ROOT_USER, ROOT_PASSWORD = "swfflow", "swfflow-secret"
SCOPES = ("swf", "group.daq", "user.swfflow")
DAQ_RSE = "DAQ_DISK"
E1_RSES = ("E1_BNL_DISK", "E1_JLAB_DISK")
WSGI_APP = "rucio.web.rest.flaskapi.v1.main:application"

SERVER_CFG = """\
[common]
logdir = {log_dir}
loglevel = WARNING

[database]
default = {db_url}
schema = dev
pool_size = 10
max_overflow = 20

[bootstrap]
userpass_identity = {user}
userpass_pwd = {password}
userpass_email = {user}@localhost

[policy]
permission = generic
schema = generic
lfn2pfn_algorithm_default = hash

[alembic]
cfg = {home}/etc/alembic.ini

[monitor]
enable_metrics = False

[api]
endpoints_remove = opendata, opendata_public
"""

CLIENT_CFG = """\
[client]
rucio_host = {url}
auth_host = {url}
auth_type = userpass
username = {user}
password = {password}
account = root
request_retries = 1
auth_token_file_path = {home}/token/root

[policy]
lfn2pfn_algorithm_default = hash
"""

# the logging sections are mandatory: alembic's env.py calls fileConfig() (reference §8)
ALEMBIC_INI = """\
[alembic]
script_location = rucio.db.sqla:migrate_repo
sqlalchemy.url = {db_url}
version_table_schema = dev

[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARN
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic
[formatter_generic]
format = %(levelname)s [%(name)s] %(message)s
"""

BUILD_SCHEMA = ("from rucio.db.sqla.util import build_database, create_base_vo, "
                "create_root_account; build_database(); create_base_vo(); create_root_account()")


# --- PostgreSQL and the venv ---------------------------------------------------------------------
def database_name(home: ServiceHome) -> str:
    """One database per state directory (so test runs never share one)."""
    return postgres.per_directory_name("swfflow_rucio", home.dir)


def _database_url(home: ServiceHome, name: str | None = None) -> str:
    host, port, _ = postgres.pg()
    return (f"postgresql+psycopg://{DB_ROLE}:{DB_PASSWORD}@{host}:{port}/"
            f"{name or database_name(home)}")


def drop_database(home: ServiceHome) -> None:
    postgres.drop_database(database_name(home))


def _template_name() -> str:
    return "swfflow_rucio_template_" + SERVER_REQUIREMENTS[0].split("==")[1].replace(".", "_")


def _build_template(home: ServiceHome, venv: Path, building: str) -> None:
    """Rucio's schema and root account in database ``building``."""
    etc = home.dir / "template-etc"
    etc.mkdir(parents=True, exist_ok=True)
    values = {"home": home.dir, "url": "http://127.0.0.1", "user": ROOT_USER,
              "password": ROOT_PASSWORD, "db_url": _database_url(home, building),
              "log_dir": home.dir / "log"}
    write_atomic(etc / "rucio.cfg", SERVER_CFG.format(**values).replace(
        f"cfg = {home.dir}/etc/alembic.ini", f"cfg = {etc}/alembic.ini"))
    write_atomic(etc / "alembic.ini", ALEMBIC_INI.format(**values))
    run_checked([str(venv / "bin" / "python"), "-c", BUILD_SCHEMA],
                what="build Rucio schema and root account",
                env=dict(os.environ, RUCIO_CONFIG=str(etc / "rucio.cfg")))


def _fresh_database(home: ServiceHome, venv: Path) -> None:
    """Drop the database and recreate it as a copy of the schema template (built once per
    machine and Rucio version)."""
    postgres.ensure_role(DB_ROLE, DB_PASSWORD)
    template = _template_name()
    postgres.ensure_template(template, DB_ROLE,
                             lambda building: _build_template(home, venv, building))
    postgres.copy_template(template, database_name(home), DB_ROLE)


def venv_path(home: ServiceHome) -> Path:
    return Path(os.environ.get("SWFFLOW_RUCIO_VENV") or home.dir / "venv")


def ensure_venv(venv: Path) -> None:
    postgres.ensure_venv(venv, SERVER_REQUIREMENTS, what="the Rucio server")


# --- configuration -------------------------------------------------------------------------------
def client_config(home: ServiceHome) -> Path:
    return home.dir / "client" / "rucio.cfg"


def _write_configs(home: ServiceHome, url: str) -> None:
    values = {"home": home.dir, "url": url, "user": ROOT_USER, "password": ROOT_PASSWORD,
              "db_url": _database_url(home), "log_dir": home.dir / "log"}
    for sub in ("etc", "client", "log", "token"):
        (home.dir / sub).mkdir(parents=True, exist_ok=True)
    write_atomic(home.dir / "etc" / "rucio.cfg", SERVER_CFG.format(**values))
    write_atomic(home.dir / "etc" / "alembic.ini", ALEMBIC_INI.format(**values))
    write_atomic(client_config(home), CLIENT_CFG.format(**values))


def _scopes() -> list[str]:
    """The fixed scopes plus those the active swfflow profile writes to, so a workflow
    compiled with that profile can create its datasets on this server."""
    from swfflow.plan.profile import load_profile

    profile = load_profile()
    return sorted({*SCOPES, profile.scopes.stream, profile.scopes.output})


def _bootstrap_content(home: ServiceHome, url: str) -> None:
    """Scopes, RSEs with posix protocols and quotas; each step tolerates 'already exists'."""
    from rucio.client import Client
    from rucio.common.exception import Duplicate, RSEProtocolPriorityError

    client = Client(rucio_host=url, auth_host=url, account="root", auth_type="userpass",
                    creds={"username": ROOT_USER, "password": ROOT_PASSWORD})

    def tolerate(call, *args, **kwargs) -> None:
        try:
            call(*args, **kwargs)
        except (Duplicate, RSEProtocolPriorityError):
            pass

    for scope in _scopes():
        tolerate(client.add_scope, "root", scope)
    prefixes = {DAQ_RSE: "/"} | {rse: str(home.dir / "rse" / rse) + "/" for rse in E1_RSES}
    for rse, prefix in prefixes.items():
        Path(prefix).mkdir(parents=True, exist_ok=True)
        tolerate(client.add_rse, rse, deterministic=rse != DAQ_RSE)
        tolerate(client.add_protocol, rse, {
            "scheme": "file", "hostname": "localhost", "port": 0, "prefix": prefix,
            "impl": "rucio.rse.protocols.posix.Default",
            "domains": {"lan": {"read": 1, "write": 1, "delete": 1},
                        "wan": {"read": 1, "write": 1, "delete": 1,
                                "third_party_copy_read": 1, "third_party_copy_write": 1}}})
        client.set_local_account_limit("root", rse, 10**15)  # rules check the quota


# --- lifecycle -----------------------------------------------------------------------------------
def ping(url: str, timeout: float = 2.0) -> str | None:
    """The server's version if ``url``/ping answers, else None."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as reply:
            return json.loads(reply.read()).get("version")
    except (OSError, ValueError):
        return None


def _recorded(home: ServiceHome) -> dict:
    try:
        return json.loads((home.dir / "database.json").read_text())
    except (OSError, ValueError):
        return {}


def start(home: ServiceHome, *, fresh_session: str | None = None) -> ServiceStatus:
    """Start (or keep) the server; with a new ``fresh_session`` id, on an empty database."""
    recorded = _recorded(home)
    needs_reset = (not recorded.get("ready") or not postgres.database_exists(database_name(home))
                   or (fresh_session is not None and recorded.get("session") != fresh_session))
    current = status(home)
    if current.healthy and not needs_reset:
        return current
    stop(home)  # never reset under a running server: stale pooled connections (reference §2)
    venv = venv_path(home)
    ensure_venv(venv)
    port = choose_port(home.endpoint().get("port") or PREFERRED_PORT)
    url = f"http://127.0.0.1:{port}"
    _write_configs(home, url)
    if needs_reset:
        write_atomic(home.dir / "database.json", "{}")
        _fresh_database(home, venv)
    log = home.dir / "log" / "gunicorn.log"
    # no --preload: the app opens database connections at import, which forked workers would
    # then share (seen: crossed replies, a UUID where the VO name belongs, hung requests)
    argv = [str(venv / "bin" / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "2",
            "--threads", "4", "--timeout", "120", "--no-control-socket", WSGI_APP]
    env = dict(os.environ, RUCIO_CONFIG=str(home.dir / "etc" / "rucio.cfg"))
    pid = start_detached(argv, log=log, pid_file=home.pid_file, env=env, cwd=home.dir)
    home.write_endpoint(port=port, url=url, log=str(log), config=str(client_config(home)),
                        database=database_name(home))
    wait_ready(NAME, lambda: ping(url) is not None, pid=pid, logs=[log],
               timeout=START_TIMEOUT_S)
    if needs_reset:
        _bootstrap_content(home, url)
        write_atomic(home.dir / "database.json",
                     json.dumps({"ready": True, "session": fresh_session,
                                 "database": database_name(home)}) + "\n")
    _start_judge(home, venv, env)
    return status(home)


def _judge_pid_file(home: ServiceHome) -> Path:
    return home.dir / "judge-evaluator.pid"


def _start_judge(home: ServiceHome, venv: Path, env: dict[str, str]) -> None:
    """The daemon that applies rules to files attached after the rule was made."""
    if home.pid() and pid_file_alive(_judge_pid_file(home)):
        return
    launcher = Path(__file__).with_name("rucio_judge.py")  # Rucio's daemon, short back-off
    start_detached([str(venv / "bin" / "python"), str(launcher)],
                   log=home.dir / "log" / "judge-evaluator.log",
                   pid_file=_judge_pid_file(home), env=env, cwd=home.dir)


def stop(home: ServiceHome) -> bool:
    stop_pid(_judge_pid_file(home), timeout=20.0)
    return stop_pid(home.pid_file, timeout=20.0)


def purge(home: ServiceHome) -> None:
    """Drop this directory's database, if one was made (the caller stopped the server)."""
    if not _recorded(home) and not home.endpoint().get("database"):
        return  # never started here: PostgreSQL need not even be reachable
    drop_database(home)
    write_atomic(home.dir / "database.json", "{}")  # the next start builds a fresh one


def status(home: ServiceHome) -> ServiceStatus:
    endpoint = home.endpoint()
    pid, url = home.pid(), endpoint.get("url")
    version = ping(url) if pid and url else None
    ready = bool(_recorded(home).get("ready"))
    judge = pid_file_alive(_judge_pid_file(home))
    healthy = bool(version) and ready and judge
    detail = (f"Rucio {version}, database {endpoint.get('database')}, "
              f"RUCIO_CONFIG={endpoint.get('config')}" if healthy
              else "judge-evaluator not running" if version and ready
              else "not running" if not pid
              else "not bootstrapped" if version else f"pid {pid} alive but /ping not answering")
    return ServiceStatus(NAME, healthy, pid=pid, port=endpoint.get("port"), url=url,
                         detail=detail, log=endpoint.get("log"))
