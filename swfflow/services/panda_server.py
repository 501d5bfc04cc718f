"""A real PanDA: panda-server 1.0.4 (REST API) and JEDI on the local PostgreSQL
(reference/panda-server.md).

- **Venv**: its own (``$SWFFLOW_PANDA_VENV`` or ``<state>/panda/venv``): panda-server depends on
  ``panda-client-light``, which ships the same ``pandaclient`` module as swfflow's panda-client.
  The sdist's build hook fails as root (it looks up the user ``atlpan``), so the wheel is built
  by an unprivileged user (``nobody`` with the system Python when we are root) and installed
  without its dependencies, then its dependency list minus ``mod_wsgi`` plus ``psycopg2-binary``
  and ``rucio-clients`` (about 2.5 min the first time, ≈660 MB).
- **Database**: ``swfflow_panda_<hash>`` per state directory, a copy of a template built from
  panda-database's schema folder in place (``swfflow.services.panda_db``).
- **Web front**: ``panda_wsgi.py`` on 127.0.0.1, the client DN ``CLIENT_DN`` (production role),
  plus the pg_cron stand-in. Clients: ``PANDA_URL_SSL=PANDA_URL=<url>/server/panda``.
- **JEDI**: ``JediMaster`` with one process per agent and short loop cycles.

Configuration is ``<state>/panda/etc/panda/*.cfg`` (``PANDA_HOME=<state>/panda``), logs are in
``<state>/panda/log/``.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from swfflow.errors import ServiceError
from swfflow.services import panda_db, postgres
from swfflow.services.state import (ServiceHome, ServiceStatus, choose_port, pid_file_alive,
                                    run_checked, start_detached, stop_pid, tail, wait_ready,
                                    write_atomic)

NAME = "panda"
VERSION = "1.0.4"
PREFERRED_PORT = 25080
START_TIMEOUT_S = 120.0
JEDI_TIMEOUT_S = 60.0
# panda-server's own dependencies (its pyproject.toml) minus mod_wsgi (needs apxs), plus the
# PostgreSQL driver and the Rucio client JEDI's DDM client uses; pinned where upstream moves fast
REQUIREMENTS = (
    "panda-common==0.1.11", "panda-client-light==2.2.0", "pyOpenSSL", "python-daemon",
    "stomp.py", "pyyaml", "pyjwt", "polars", "requests", "psutil>=5.4.8", "idds-common==2.6.21",
    "idds-client==2.6.21", "idds-workflow==2.6.21", "idds-doma==2.6.21", "idds-atlas==2.6.21",
    "ruamel.yaml", "cwl-utils>=0.13", "packaging", "snakemake==9.27.1", "numpy", "scipy",
    "werkzeug", "bs4", "psycopg2-binary==2.9.13", "rucio-clients==41.5.1")
CLIENT_DN = "/DC=local/DC=swfflow/CN=swf"  # the web front's client; clean_user_id → "swf"
VO = "wlcg"
CRON_INTERVAL_S = 10
FEED_INTERVAL_MIN = 0  # JEDI re-lists an open dataset on every feeder loop (2 s)
WSGI_SCRIPT = Path(__file__).with_name("panda_wsgi.py")
# modules PanDA's processes import (setupper plugin) and run (the adder): PanDA venv only
EXT_DIR = Path(__file__).with_name("panda_ext")
ADDER_SCRIPT = EXT_DIR / "swf_adder.py"


# --- the venv ------------------------------------------------------------------------------------
def venv_path(home: ServiceHome) -> Path:
    return Path(os.environ.get("SWFFLOW_PANDA_VENV") or home.dir / "venv")


def _unprivileged() -> tuple[list[str], str]:
    """(command prefix, Python) to build the wheel as a non-root user."""
    if os.geteuid() != 0:
        return [], sys.executable
    python = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    if not python or not shutil.which("runuser"):
        raise ServiceError("cannot build panda-server as a non-root user",
                           hint="needs runuser and a system python3 (/usr/bin/python3)")
    return ["runuser", "-u", "nobody", "--"], python


def _install_server(venv: Path) -> None:
    """Build panda-server's wheel unprivileged and install it without its dependencies."""
    prefix, python = _unprivileged()
    with tempfile.TemporaryDirectory(prefix="swfflow-panda-build-") as build:
        if prefix:
            shutil.chown(build, "nobody")
        # the build hook makes <VIRTUAL_ENV>/var/log/panda: point it into the build folder
        run_checked([*prefix, "env", f"HOME={build}", f"VIRTUAL_ENV={build}/env",
                     "PIP_NO_CACHE_DIR=1", python, "-m", "pip", "wheel", "-q", "--no-deps",
                     f"panda-server=={VERSION}", "-w", f"{build}/wheels"],
                    what="build the panda-server wheel")
        (wheel,) = Path(build, "wheels").glob("panda_server-*.whl")
        run_checked([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(wheel)],
                    what="install the panda-server wheel")


def ensure_venv(venv: Path) -> None:
    postgres.ensure_venv(venv, REQUIREMENTS, what="panda-server", before=_install_server,
                         key=f"panda-server=={VERSION}")


# --- configuration -------------------------------------------------------------------------------
def _configs(home: ServiceHome, port: int, database: str) -> dict[str, dict[str, dict]]:
    """File name → section → key → value of PanDA's three configuration files."""
    host, pg_port, _ = postgres.pg()
    log = home.dir / "log"
    db = {"dbhost": host, "dbport": pg_port, "dbuser": panda_db.DB_ROLE,
          "dbpasswd": panda_db.DB_PASSWORD, "dbname": database, "backend": "postgres"}
    schemas = {"schemaPANDA": "DOMA_PANDA", "schemaMETA": "DOMA_PANDAMETA",
               "schemaPANDAARCH": "DOMA_PANDAARCH", "schemaJEDI": "DOMA_PANDA",
               "schemaDEFT": "DOMA_DEFT"}
    agent = {"nWorkers": 1, "loopCycle": 5}
    # JEDI's Rucio client when the state directory has a Rucio; else the stub (no look-ups)
    ddm = "AtlasDDMClient" if rucio_config(home) else "GenDDMClient"
    return {
        # the HTTP log emitters (monitoring) point nowhere: nothing here asks for them
        "panda_common.cfg": {"logger": {
            "logdir": log, "log_level": os.environ.get("SWFFLOW_PANDA_LOG_LEVEL", "INFO"), "rotating_policy": "none", "nemitters": 1,
            "loghost": "127.0.0.1", "monport-apache": 9, "method": "GET", "encoding": "url",
            "loghost_new": "127.0.0.1", "monport-apache_new": 9, "method_new": "POST",
            "encoding_new": "json", "monurlprefix": "/logger/logger/query"}},
        "panda_server.cfg": {
            "server": {**db, **schemas, "logdir": log, "loggername": "prod",
                       "cache_dir": home.dir / "cache", "nDBConnection": 2,
                       "usedbtimeout": True, "dbtimeout": 300, "dbbridgeverbose": False,
                       "dump_sql": False, "cursor_dump": False, "entryVerbose": False,
                       "nrun_interval": 5, "nrun_hosts": 1, "nrun_snum": 999,
                       "keyDir": home.dir / "keys", "pserverhost": "127.0.0.1",
                       "pserverport": port, "pserverporthttp": port, "pserverportcache": port,
                       "pserverhosthttp": "127.0.0.1", "pserveralias": "127.0.0.1",
                       "useJEDI": True, "token_authType": None, "production_dns": CLIENT_DN,
                       "pilot_owners": CLIENT_DN, "record_statuschange": True,
                       "adder_plugins": "any:pandaserver.dataservice.adder_dummy_plugin:"
                                        "AdderDummyPlugin",
                       # inputs are ready where Rucio has them: our pilot stages them in
                       "setupper_plugins": "any:swf_setupper:SwfSetupperPlugin"},
            "daemon": {"enable": False}},
        "panda_jedi.cfg": {
            "master": {"uname": "", "gname": "", "loggername": "jedi"},
            "db": {**db, **schemas, "nWorkers": 2},
            "ddm": {"modConfig": f"{VO}:1:pandajedi.jediddm.{ddm}:{ddm}",
                    "voWithScope": VO, "user_scope_in_lowercase": True},
            # checkInterval (whole minutes: the config reader keeps "0.05" a string, which
            # breaks the feeder's query): how long an open dataset rests between two listings;
            # production's 5 is the anchor of STF → job latency, 0 = every loop (docs/panda.md)
            "confeeder": {"procConfig": f"{VO}:any:1", **agent, "loopCycle": 2,
                          "checkInterval": FEED_INTERVAL_MIN},
            "taskrefine": {"modConfig": f"{VO}:any:pandajedi.jedirefine.GenTaskRefiner:"
                                        "GenTaskRefiner", "procConfig": f"{VO}:any:1", **agent},
            "jobbroker": {"modConfig": f"{VO}:any:pandajedi.jedibrokerage.GenJobBroker:"
                                       "GenJobBroker"},
            "jobthrottle": {"modConfig": f"{VO}:any:pandajedi.jedithrottle.GenJobThrottler:"
                                         "GenJobThrottler"},
            "jobgen": {"procConfig": f"{VO}:any:1:", "nTasks": 50, "nFiles": 5000,
                       **agent, "lockInterval": 5},
            # the labels by name: its query takes "any" literally (prodSourceLabel='any'), so a
            # task would never be finished
            "postprocessor": {"modConfig": f"{VO}:any:pandajedi.jedipprocess.GenPostProcessor:"
                                           "GenPostProcessor",
                              "procConfig": f"{VO}:{','.join(panda_db.LABELS)}:1",
                              "nTasks": 50, **agent},
            "watchdog": {"modConfig": f"{VO}:any:pandajedi.jedidog.GenWatchDog:GenWatchDog",
                         "procConfig": f"{VO}:any:1", "loopCycle": 60, "waitForPicked": 30,
                         "waitForPending": 60, "timeoutForPending": 7, "waitForLocked": 60,
                         "waitForThrottled": 120, "waitForExhausted": 48,
                         "waitForAchieved": 60},
            "taskbroker": {"procConfig": f"{VO}:managed:0", "nWorkers": 1, "loopCycle": 600},
            "tcommando": {"procConfig": f"{VO}:any:1", **agent},
            "tasksetup": {"modConfig": f"{VO}:any:pandajedi.jedisetup.GenTaskSetupper:"
                                       "GenTaskSetupper"},
            "msgprocessor": {}, "mq": {}},
    }


def _write_configs(home: ServiceHome, port: int, database: str) -> None:
    etc = home.dir / "etc" / "panda"
    for sub in (etc, home.dir / "log", home.dir / "cache" / "jedilog"):
        sub.mkdir(parents=True, exist_ok=True)
    for file_name, sections in _configs(home, port, database).items():
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # PanDA's keys are case-sensitive
        for section, values in sections.items():
            parser[section] = {key: str(value) for key, value in values.items()}
        with open(etc / f".{file_name}.tmp", "w") as out:
            parser.write(out)
        os.replace(etc / f".{file_name}.tmp", etc / file_name)


def rucio_config(home: ServiceHome) -> Path | None:
    """The client configuration of the Rucio server in the same state directory, if any."""
    config = home.dir.parent / "rucio" / "client" / "rucio.cfg"
    return config if config.is_file() else None


def _env(home: ServiceHome, venv: Path, url: str) -> dict[str, str]:
    site = next((venv / "lib").glob("python3*/site-packages"))
    api = f"{url}/server/panda"
    rucio = {"RUCIO_CONFIG": str(rucio_config(home)), "RUCIO_ACCOUNT": "root"} \
        if rucio_config(home) else {}
    return dict(os.environ, **rucio, PANDA_HOME=str(home.dir), PANDA_NO_ROOT="1",
                PYTHONPATH=os.pathsep.join([str(EXT_DIR), *(str(site / sub) for sub in
                                                             ("pandacommon", "pandaserver", ""))]),
                PANDA_URL=api, PANDA_URL_SSL=api, PANDA_API_URL=f"{url}/api/v1",
                PANDA_API_URL_SSL=f"{url}/api/v1", PANDA_BEHIND_REAL_LB="1")


# --- lifecycle -----------------------------------------------------------------------------------
def is_alive(url: str, timeout: float = 3.0) -> bool:
    request = urllib.request.Request(f"{url}/api/v1/system/is_alive",
                                     headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read()).get("success") is True
    except (OSError, ValueError):
        return False


def _jedi_pid_file(home: ServiceHome) -> Path:
    return home.dir / "jedi.pid"


def _adder_pid_file(home: ServiceHome) -> Path:
    return home.dir / "adder.pid"


def _recorded(home: ServiceHome) -> dict:
    try:
        return json.loads((home.dir / "database.json").read_text())
    except (OSError, ValueError):
        return {}


def start(home: ServiceHome, *, fresh_session: str | None = None,
          schema: str | os.PathLike[str] | None = None) -> ServiceStatus:
    """Start (or keep) the server and JEDI; with a new ``fresh_session`` id, on an empty
    database."""
    folder = panda_db.schema_dir(schema)  # a clear error first when the schema is missing
    recorded = _recorded(home)
    database = panda_db.database_name(home.dir)
    needs_reset = (not recorded.get("ready") or not postgres.database_exists(database)
                   or (fresh_session is not None and recorded.get("session") != fresh_session))
    current = status(home)
    if current.healthy and not needs_reset:
        return current
    stop(home)
    started = time.monotonic()
    venv = venv_path(home)
    ensure_venv(venv)
    if needs_reset:
        write_atomic(home.dir / "database.json", "{}")
        panda_db.fresh_database(folder, home.dir, VO)
        write_atomic(home.dir / "database.json", json.dumps(
            {"ready": True, "session": fresh_session, "database": database}) + "\n")
    port = choose_port(home.endpoint().get("port") or PREFERRED_PORT)
    url = f"http://127.0.0.1:{port}"
    _write_configs(home, port, database)
    env = _env(home, venv, url)
    host, pg_port, _ = postgres.pg()
    dsn = (f"dbname={database} user={panda_db.DB_ROLE} password={panda_db.DB_PASSWORD} "
           f"host={host} port={pg_port}")
    log = home.dir / "log" / "web.log"
    argv = [str(venv / "bin" / "python"), str(WSGI_SCRIPT), "--port", str(port),
            "--dn", CLIENT_DN, "--dsn", dsn, "--cache-dir", str(home.dir / "cache"),
            "--cron-interval", str(CRON_INTERVAL_S)]
    for call in panda_db.cron_calls(folder):
        argv += ["--cron-call", call]
    pid = start_detached(argv, log=log, pid_file=home.pid_file, env=env, cwd=home.dir)
    home.write_endpoint(port=port, url=url, api=f"{url}/server/panda", log=str(log),
                        database=database, venv=str(venv))
    try:
        wait_ready("panda-server", lambda: is_alive(url), pid=pid,
                   logs=[log, home.dir / "log" / "panda-Entry.log"], timeout=START_TIMEOUT_S)
        _start_jedi(home, venv, env)
        start_detached([str(venv / "bin" / "python"), str(ADDER_SCRIPT)],
                       log=home.dir / "log" / "adder.log", pid_file=_adder_pid_file(home),
                       env=env, cwd=home.dir)
    except ServiceError:
        stop(home)  # never leave a half-started PanDA behind
        raise
    write_atomic(home.dir / "started.json",
                 json.dumps({"seconds": round(time.monotonic() - started, 1)}) + "\n")
    return status(home)


def _start_jedi(home: ServiceHome, venv: Path, env: dict[str, str]) -> None:
    """JediMaster daemonises (python-daemon) and writes its own pid file; its agents are in
    its process group, which ``stop`` kills as a whole."""
    pid_file, log = _jedi_pid_file(home), home.dir / "log" / "jedi-master.log"
    pid_file.unlink(missing_ok=True)  # JediMaster refuses to start over an existing one
    with open(log, "ab") as out:
        launcher = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", "pandajedi.jediorder.JediMaster",
             "--pid", str(pid_file)], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, env=env, cwd=home.dir, start_new_session=True)
    deadline = time.monotonic() + JEDI_TIMEOUT_S
    while time.monotonic() < deadline:
        if pid_file_alive(pid_file):
            launcher.wait(timeout=10)
            return
        if launcher.poll() not in (None, 0):
            break
        time.sleep(0.2)
    launcher.kill()
    launcher.wait()
    raise ServiceError(f"JEDI did not start within {JEDI_TIMEOUT_S:.0f} s", where=str(log),
                       hint=tail(log))


def stop(home: ServiceHome) -> bool:
    adder = stop_pid(_adder_pid_file(home), timeout=10.0, group=True)
    jedi = stop_pid(_jedi_pid_file(home), timeout=10.0, group=True)
    return stop_pid(home.pid_file, timeout=20.0, group=True) or jedi or adder


def purge(home: ServiceHome) -> None:
    """Drop this directory's database (the services are stopped first by the caller)."""
    postgres.drop_database(panda_db.database_name(home.dir))


def status(home: ServiceHome) -> ServiceStatus:
    endpoint = home.endpoint()
    pid, url = home.pid(), endpoint.get("url")
    alive = bool(pid and url and is_alive(url))
    jedi = pid_file_alive(_jedi_pid_file(home))
    adder = pid_file_alive(_adder_pid_file(home))
    healthy = alive and jedi and adder and bool(_recorded(home).get("ready"))
    detail = (f"panda-server {VERSION} + JEDI, database {endpoint.get('database')}, "
              f"PANDA_URL={endpoint.get('api')}" if healthy
              else "JEDI not running" if alive and not jedi
              else "the adder daemon is not running" if alive
              else "not running" if not pid else f"pid {pid} alive but is_alive not answering")
    return ServiceStatus(NAME, healthy, pid=pid, port=endpoint.get("port"), url=url,
                         detail=detail, log=endpoint.get("log"))
