"""Shared helpers of the bridge tests: simulate a schedule, build a bridge, check catalogs."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from swfflow.daqsim.runs import RunCounter
from swfflow.daqsim.schedule import load_schedule
from swfflow.daqsim.sim import DaqSimulator, SimConfig, SimSummary

WORKFLOW = Path(__file__).parent / "data" / "bridge" / "stfsum.cwl"
PROFILE = Path(__file__).parent / "data" / "bridge" / "profile.yaml"  # output scope user.swfflow
OUTPUT_SCOPE = "user.swfflow"

# run_imminent, start, 3 STFs, pause, resume, 3 STFs, end_run
ONE_RUN = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,2"}
- {state: run, substate: physics, span: "0,0,0,0,3", stf_interval: 1}
- {state: run, substate: standby, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,3", stf_interval: 1}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""


def schedule(tmp: Path, text: str = ONE_RUN, name: str = "schedule.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def simulate(tmp: Path, *, text: str = ONE_RUN, bus=None, namespace: str | None = None,
             record: Path | None = None, seed: int = 1, counter: Path | None = None,
             fast: bool = True, factor: float = 1.0, stf_size: int = 4096,
             first_run: int = 100010) -> SimSummary:
    """Run the DAQ simulator; messages to ``bus`` and/or appended to ``record``."""
    plan = load_schedule(schedule(tmp, text, f"schedule-{seed}.yaml"))
    config = SimConfig(buffer=tmp / "buffer", namespace=namespace, fast=fast, factor=factor,
                       seed=seed, stf_size=(stf_size, stf_size))
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(record, "a", encoding="utf-8")) if record else None
        simulator = DaqSimulator(plan, config, bus, RunCounter(counter or tmp / "run-counter", first=first_run),
                                 record=sink)
        return simulator.simulate()


def recorded(tmp: Path, **options) -> tuple[Path, SimSummary]:
    log = tmp / "messages.jsonl"
    summary = simulate(tmp, record=log, **options)
    return log, summary


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def setup_for(tmp: Path, *, state: str | None = None, catalog: str = "local",
              rucio_config: str | None = None, backend: str = "local",
              panda_url: str | None = None, **options):
    from swfflow.stream.bridge.setup import Setup

    options.setdefault("tick_s", 0.2)
    options.setdefault("batch_ms", 20.0)
    return Setup(workflow=str(WORKFLOW), profile=str(PROFILE), catalog=catalog, backend=backend,
                 state=state or f"sqlite:///{tmp / 'state' / 'bridge.db'}",
                 workdir=tmp / "work", jobs=2, no_container=True, rucio_config=rucio_config,
                 panda_url=panda_url, options=options)


@contextlib.contextmanager
def pg_database(prefix: str = "swfflow_bridge"):
    """A fresh PostgreSQL database on the machine's server (dropped after): its state URL."""
    import uuid

    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def string_log(*bodies: str) -> io.StringIO:
    return io.StringIO("\n".join(bodies) + "\n")


def first_run_number() -> int:
    """Run numbers unique in the test session's shared Rucio database."""
    import random

    return random.SystemRandom().randrange(200_000, 900_000_000)


class TcpGate:
    """A TCP forwarder in front of a real server that can be cut (refuse and drop every
    connection) and restored on the same port: the server is "down" for its clients while it
    keeps running for the other tests that share it."""

    def __init__(self, target_host: str, target_port: int):
        import socket
        import threading

        self.target = (target_host, target_port)
        self.lock = threading.Lock()
        self.open_sockets: list[socket.socket] = []
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        import socket
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        import socket

        with self.lock:
            listener, self.listener = self.listener, None
        if listener is not None:
            # shutdown first: a bare close() does not wake the thread blocked in accept(),
            # which would then accept one more connection through the "cut" gate
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self.lock:
            for sock in self.open_sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.open_sockets.clear()

    def _accept(self, listener) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.listener is not listener:  # cut meanwhile: this one is refused too
                    client.close()
                    server.close()
                    return
                self.open_sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass


# --- bridge processes (issue 15 part 4: an active one and standbys) -------------------------------
E1_SITES = ("E1_BNL_DISK", "E1_JLAB_DISK")


def wait_for(condition, timeout: float, what: str, every: float = 0.05):
    """``condition()``'s first true value, polled every ``every`` s; fails after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def butterfly_profile(tmp: Path, sites: tuple[str, ...] = E1_SITES) -> Path:
    profile = tmp / "profile.yaml"
    profile.write_text("scopes:\n  output: user.swfflow\n"
                       + (f"bridge:\n  sites: [{', '.join(sites)}]\n" if sites else ""))
    return profile


class Bridges:
    """``swfflow bridge`` processes of one subscription on one state store (the bridge lock
    makes one of them active, the others standbys), each logging to ``tmp/bridge-N.log``."""

    def __init__(self, tmp: Path, broker: str, state: str, name: str, profile: Path,
                 extra: tuple[str, ...] = ()):
        from swfflow.state import state_engine

        self.tmp, self.broker, self.state, self.name = tmp, broker, state, name
        self.profile, self.extra = profile, extra
        self.engine = state_engine(state)
        self.procs: list = []

    def start(self):
        import os
        import subprocess
        import sys

        argv = [sys.executable, "-c", "from swfflow.cli import main; main()", "bridge",
                str(WORKFLOW), "--profile", str(self.profile), "--broker", self.broker,
                "--subscription", self.name, "--namespace", self.name, "--catalog", "rucio",
                "--backend", "dryrun", "--state", self.state, "--workdir", str(self.tmp / "work"),
                "--tick", "0.2", "--batch-ms", "20", *self.extra]
        with open(self.tmp / f"bridge-{len(self.procs)}.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True,
                                    env=dict(os.environ))
        self.procs.append(proc)
        return proc

    def lock_sessions(self) -> int:
        """Bridges holding or waiting for the lock (each has its own lock connection)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'swfflow-bridge-lock'")).scalar()

    def active(self):
        """The live process that holds the lock, if any."""
        from swfflow.stream.bridge.leader import active_bridge

        row = active_bridge(self.engine, self.name)
        alive = [p for p in self.procs if p.poll() is None]
        return next((p for p in alive if row and p.pid == row["pid"]), None)

    def start_pair(self, timeout: float = 60.0) -> None:
        """An active bridge and a standby, both ready."""
        self.start()
        wait_for(self.active, timeout, "a bridge to become active\n" + self.logs())
        self.start()
        wait_for(lambda: self.lock_sessions() == 2, timeout, "the standby\n" + self.logs())

    def first_attached_after(self, moment: float) -> float | None:
        from sqlalchemy import func, select

        from swfflow.stream.tables import FILES

        with self.engine.connect() as conn:
            return conn.execute(select(func.min(FILES.c.attached_at))
                                .where(FILES.c.attached_at > moment)).scalar()

    def kill_active(self, timeout: float, attach_timeout: float) -> tuple[float, float]:
        """Once a standby is ready, SIGKILL the active bridge; (seconds until a standby is
        active, until it attached an STF). A new standby is started then (not waited for:
        the next kill waits for one)."""
        import os
        import signal
        import time

        wait_for(lambda: self.lock_sessions() >= 2, 60, "a standby\n" + self.logs())
        victim = self.active()
        assert victim is not None, self.logs()
        killed_at = time.time()
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        wait_for(self.active, timeout, "the standby to take over\n" + self.logs())
        took_over = time.time() - killed_at
        attached = wait_for(lambda: self.first_attached_after(killed_at), attach_timeout,
                            "an STF attached by the new active bridge\n" + self.logs())
        self.start()
        return took_over, attached - killed_at

    def logs(self) -> str:
        return "\n".join((self.tmp / f"bridge-{i}.log").read_text(errors="replace")[-3000:]
                         for i in range(len(self.procs)))

    def stop(self, timeout: float = 90.0) -> list[int | None]:
        """SIGTERM to each live one; their exit codes (None: had to be killed)."""
        import os
        import signal
        import subprocess

        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                codes.append(None)
        self.engine.dispose()
        return codes
