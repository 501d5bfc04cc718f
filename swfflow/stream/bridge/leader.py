"""One active bridge per subscription (issue 15, part 4): any number of ``swfflow bridge``
processes may run on the same state store and broker; the one holding the **bridge lock** is
active, the others are standbys that take over when it dies.

Why a lock held by a connection and not a lease row with an expiry: the lock goes with the
process. ``kill -9`` (or a crash, an OOM kill) closes its sockets, the database ends the
session and the lock is free at once, so a standby polling every :data:`POLL_S` takes over
within a second, with no clock to trust and no renewals to miss. A lease can only be taken
over once it has expired, so its expiry bounds the failover time from below, and a paused
(GC, swapped) holder that renews late is a second active.

- **PostgreSQL**: a session advisory lock (``pg_try_advisory_lock``) on a connection of its
  own, outside the pool (a pooled connection could be recycled, which would drop the lock
  silently). The session asks the server to probe the client every few seconds
  (``tcp_keepalives_*``, ``tcp_user_timeout``), so a host that vanishes without closing its
  sockets frees the lock after about :data:`SERVER_NOTICES_S`, not the kernel's two hours.
- **SQLite**: an exclusive ``flock`` on ``<database>.lock`` beside the file (one host, like
  SQLite itself); the kernel drops it with the process.

**Fencing.** The active one checks its lock connection every :data:`CHECK_S`; when a check
fails, or none succeeded for :data:`LOST_AFTER_S` (shorter than the time the server needs to
drop the session), it stops at once (:class:`LeaderWatch`). Consuming is fenced a second
time by the broker: a durable subscription's ``client-id`` admits one connection at a time.

While standby a bridge holds no subscription and writes nothing: it has loaded the workflow,
connected its catalog and its broker link, and waits. The messages the dead one had received
and not acked are redelivered by the broker to the new active one, which also resumes every
recorded-but-unattached STF from the store: every effect is keyed, so nothing is done twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from swfflow.errors import ConfigError
from swfflow.stream.tables import LEADERS

log = logging.getLogger("swfflow.bridge")
POLL_S = 0.5  # a standby tries the lock this often
CHECK_S = 1.0  # the active one checks its lock connection this often
LOST_AFTER_S = 6.0  # no good check for this long: the lock is taken as lost (< 9 s below)
# the database probes an idle lock connection after 3 s, then every 2 s, 3 times: a vanished
# client's session (and lock) ends after about 9 s (tcp_user_timeout bounds unacked sends)
SERVER_KEEPALIVE = {"tcp_keepalives_idle": 3, "tcp_keepalives_interval": 2,
                    "tcp_keepalives_count": 3, "tcp_user_timeout": 9000}
SERVER_NOTICES_S = 9.0


class BridgeLock(Protocol):
    def try_acquire(self) -> bool: ...
    def check(self) -> None:
        """Raise if the lock may no longer be held."""
    def release(self) -> None: ...


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name (PostgreSQL's advisory lock space)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class PgAdvisoryLock:
    def __init__(self, engine: Engine, name: str):
        self.engine, self.key = engine, lock_key(name)
        self.conn: Any = None

    def _connect(self) -> Any:
        dialect = self.engine.dialect
        args, params = dialect.create_connect_args(self.engine.url)
        conn = dialect.dbapi.connect(*args, **params, application_name="swfflow-bridge-lock",
                                     connect_timeout=10, keepalives=1, keepalives_idle=3,
                                     keepalives_interval=2, keepalives_count=3)
        conn.autocommit = True  # never idle in a transaction
        with conn.cursor() as cursor:
            for setting, value in SERVER_KEEPALIVE.items():
                cursor.execute(f"SET {setting} = {int(value)}")
        return conn

    def try_acquire(self) -> bool:
        if self.conn is None:
            self.conn = self._connect()
        try:
            with self.conn.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                return bool(cursor.fetchone()[0])
        except Exception:
            self._drop()
            raise

    def check(self) -> None:
        # a raw DB-API connection never reconnects by itself: a query answered on it is
        # answered by the session that holds the lock
        with self.conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def release(self) -> None:
        self._drop()  # ending the session releases its advisory locks

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already gone
                pass


class FileLock:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        if self.fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def check(self) -> None:
        pass  # a local flock is held until the descriptor is closed

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


def _sqlite_lock(engine: Engine, name: str) -> BridgeLock:
    database = engine.url.database
    if not database or database == ":memory:":
        raise ConfigError("an in-memory SQLite state store cannot be shared by two bridges",
                          hint="give --state sqlite:///FILE or a postgresql:// URL")
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return FileLock(Path(f"{database}.bridge-{digest}.lock"))


LOCKS: dict[str, Callable[[Engine, str], BridgeLock]] = {
    "postgresql": PgAdvisoryLock, "sqlite": _sqlite_lock}


def bridge_lock(engine: Engine, name: str) -> BridgeLock:
    """The lock for the bridges of one subscription ``name`` on this state store."""
    try:
        make = LOCKS[engine.dialect.name]
    except KeyError:
        raise ConfigError(f"the bridge cannot run on a {engine.dialect.name} state store",
                          hint="use sqlite:///FILE or postgresql://user@host/db") from None
    return make(engine, name)


def holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def wait_until_active(lock: BridgeLock, engine: Engine, name: str,
                      stopping: threading.Event) -> bool:
    """Standby until the lock is ours (True), or until ``stopping`` is set (False). Who is
    active is logged once, and again whenever it changes."""
    seen: Any = ()  # who was last said to be active
    said = ""  # the last error said (each once, not every poll)
    while not stopping.is_set():
        try:
            acquired = lock.try_acquire()
        except Exception as exc:  # noqa: BLE001 - the database away: keep waiting, say why
            acquired, error = False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if error != said:
                said = error
                log.error("standby: cannot reach the state store for the bridge lock "
                          "(trying again every %.1f s): %s", POLL_S, error)
        if acquired:
            _record_active(engine, name)
            log.warning("active: this bridge (%s) holds the bridge lock %s", holder(), name)
            return True
        current = active_bridge(engine, name)
        if current != seen:
            seen = current
            log.warning("standby: bridge %s is active for %s; taking over when it stops",
                        (current or {}).get("holder", "(another)"), name)
        stopping.wait(POLL_S)
    return False


def _record_active(engine: Engine, name: str) -> None:
    """Who is active since when (``br_leaders``), for ``swfflow status`` and the tests."""
    try:
        LEADERS.create(engine, checkfirst=True)
        with engine.begin() as conn:
            conn.execute(delete(LEADERS).where(LEADERS.c.name == name))
            conn.execute(LEADERS.insert().values(name=name, holder=holder(), pid=os.getpid(),
                                                 since=time.time()))
    except Exception:  # noqa: BLE001 - only a record for the eyes: the lock is what counts
        log.exception("recording this bridge as the active one failed")


def active_bridge(engine: Engine, name: str) -> dict[str, Any] | None:
    """The bridge that last became active for ``name`` (holder, pid, since), if any."""
    try:
        with engine.connect() as conn:
            row = conn.execute(select(LEADERS).where(LEADERS.c.name == name)).first()
    except Exception:  # noqa: BLE001 - the table does not exist yet: no bridge ran
        return None
    return dict(row._mapping) if row else None


class LeaderWatch:
    """The active bridge's fence: checks the lock every :data:`CHECK_S` in a thread;
    :meth:`lost` is true once a check failed or none succeeded for :data:`LOST_AFTER_S`
    (a check hanging on a dead connection counts as failed)."""

    def __init__(self, lock: BridgeLock, on_lost: Callable[[], None]):
        self.lock, self.on_lost = lock, on_lost
        self.last_ok = time.monotonic()
        self.failure: str | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bridge-lock", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(CHECK_S):
            try:
                self.lock.check()
            except Exception as exc:  # noqa: BLE001 - any failure: the lock may be gone
                if self.stopping.is_set():  # released on purpose meanwhile (the bridge ends)
                    return
                self.failure = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                self.on_lost()
                return
            self.last_ok = time.monotonic()

    def lost(self) -> bool:
        if self.failure is None and time.monotonic() - self.last_ok > LOST_AFTER_S:
            self.failure = f"no answer on the lock connection for {LOST_AFTER_S:.0f} s"
        return self.failure is not None

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=CHECK_S + 1.0)  # a check on a dead connection: not long


# --- the command's use of it (swfflow bridge) --------------------------------------------------
def become_active(engine: Engine, name: str, stack: ExitStack,
                  stopping: threading.Event) -> LeaderWatch | None:
    """Wait (standby) until this process holds the bridge lock of ``name``; its fence, or
    None when ``stopping`` was set first. The lock is released when ``stack`` closes."""
    lock = bridge_lock(engine, name)
    stack.callback(lock.release)
    if not wait_until_active(lock, engine, name, stopping):
        return None
    watch = LeaderWatch(lock, on_lost=lambda: None)
    stack.callback(watch.stop)
    return watch


class Handover:
    """Called once when the active bridge ends: the subscription closed (its client-id is free
    for the next bridge), the runs' flows stopped (they submit tasks), then the lock released:
    a standby takes over only when nothing of this bridge acts any more."""

    def __init__(self, bridge: Any, subscription: Any, watch: LeaderWatch):
        self.bridge, self.subscription, self.watch = bridge, subscription, watch
        self.done = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        if self.subscription is not None:
            self.subscription.close()
        self.bridge.open.detach_all()
        self.watch.stop()
        self.watch.lock.release()


def fenced(until: Callable[[Any], bool] | None, watch: LeaderWatch,
           bridge: Any) -> Callable[[Any], bool]:
    """The loop's stop condition, and the fence: a bridge whose lock may be lost stops at
    once (another one may be active)."""
    def check(loop: Any) -> bool:
        if watch.lost():
            bridge.fence()
            return True
        return until is not None and until(loop)

    return check

