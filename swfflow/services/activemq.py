"""ActiveMQ 5 (Debian's ``activemq`` package) with only a STOMP connector, run from its own base
directory without systemd (reference/activemq.md §1-§3).

STOMP listens on 127.0.0.1:61613 when that port is free, else on a free port; the chosen port is
in ``<state>/activemq/endpoint.json``. Messages are persistent (KahaDB). No AMQP connector is
opened (RabbitMQ may hold 5672). No authentication plugin: any login is accepted, as the broker
listens on the loopback interface only.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from swfflow.errors import ServiceError
from swfflow.services.state import (ServiceHome, ServiceStatus, choose_port, run_checked,
                                    start_detached, stop_pid, wait_ready)

NAME = "activemq"
PREFERRED_PORT = 61613
ACTIVEMQ_HOME = Path("/usr/share/activemq")
JAR = ACTIVEMQ_HOME / "bin" / "activemq.jar"
START_TIMEOUT_S = 90.0

# ${...} are ActiveMQ's own placeholders, filled from -D system properties at start.
ACTIVEMQ_XML = """\
<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="swfflow"
          persistent="true" dataDirectory="${activemq.data}">
    <persistenceAdapter><kahaDB directory="${activemq.data}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp"
        uri="stomp://127.0.0.1:${activemq.stomp.port}?transport.closeAsync=false"/>
    </transportConnectors>
  </broker>
</beans>
"""

# the package ships slf4j-log4j12, so the broker logs through log4j 1.2 (reference §2)
LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, f
log4j.appender.f=org.apache.log4j.FileAppender
log4j.appender.f.File={log}
log4j.appender.f.layout=org.apache.log4j.PatternLayout
log4j.appender.f.layout.ConversionPattern=%d %-5p %m%n
"""


def ensure_installed() -> None:
    """Install Debian's activemq package non-interactively if its jar is missing."""
    if JAR.exists():
        return
    if not shutil.which("apt-get"):
        raise ServiceError("ActiveMQ is not installed and apt-get is not available",
                           where=str(JAR), hint="install ActiveMQ 5.17 (Debian package 'activemq')")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "activemq"]
    try:
        run_checked(install, what="apt-get install activemq", env=env)
    except ServiceError:  # stale package lists on a fresh machine
        run_checked(["apt-get", "update", "-q"], what="apt-get update", env=env)
        run_checked(install, what="apt-get install activemq", env=env)
    if not JAR.exists():
        raise ServiceError("the activemq package installed no jar", where=str(JAR))


def stomp_ready(port: int, timeout: float = 2.0) -> bool:
    """True if a STOMP CONNECT on ``port`` is answered by ActiveMQ (not another broker)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"CONNECT\naccept-version:1.1\nhost:127.0.0.1\n"
                         b"login:swfflow\npasscode:swfflow\n\n\0")
            reply = sock.recv(500)
    except OSError:
        return False
    return reply.startswith(b"CONNECTED") and b"server:ActiveMQ" in reply


def start(home: ServiceHome) -> ServiceStatus:
    current = status(home)
    if current.healthy:
        return current
    if home.pid():  # alive but not answering: restart it cleanly
        stop(home)
    ensure_installed()
    conf, data, tmp = home.dir / "conf", home.dir / "data", home.dir / "tmp"
    for directory in (conf, data, tmp):
        directory.mkdir(parents=True, exist_ok=True)
    log = data / "activemq.log"
    (conf / "activemq.xml").write_text(ACTIVEMQ_XML)
    (conf / "log4j.properties").write_text(LOG4J_PROPERTIES.format(log=log))
    # keep the port of an earlier start so clients' saved URLs stay valid
    port = choose_port(home.endpoint().get("port") or PREFERRED_PORT)
    # Debian's default heap (/usr/share/activemq/activemq-options): with 256 MB the broker
    # spent more CPU per message under a flood (bench/bridge.py: 0.6-0.8 ms against 0.3-0.6)
    argv = ["java", "-Xms512m", "-Xmx512m", "-Djava.awt.headless=true",
            f"-Dactivemq.stomp.port={port}", f"-Dactivemq.home={ACTIVEMQ_HOME}",
            f"-Dactivemq.base={home.dir}", f"-Dactivemq.conf={conf}", f"-Dactivemq.data={data}",
            f"-Djava.io.tmpdir={tmp}", f"-Dlog4j.configuration=file:{conf / 'log4j.properties'}",
            "-jar", str(JAR), "start", f"xbean:file:{conf / 'activemq.xml'}"]
    pid = start_detached(argv, log=data / "console.log", pid_file=home.pid_file, cwd=home.dir)
    home.write_endpoint(port=port, url=f"stomp://127.0.0.1:{port}", log=str(log))
    wait_ready(NAME, lambda: stomp_ready(port), pid=pid, logs=[log, data / "console.log"],
               timeout=START_TIMEOUT_S)
    return status(home)


def stop(home: ServiceHome) -> bool:
    return stop_pid(home.pid_file, timeout=30.0)


def status(home: ServiceHome) -> ServiceStatus:
    endpoint = home.endpoint()
    pid, port = home.pid(), endpoint.get("port")
    healthy = bool(pid and port and stomp_ready(int(port)))
    detail = ("STOMP CONNECT answered by ActiveMQ" if healthy
              else "not running" if not pid else f"pid {pid} alive but STOMP not answering")
    return ServiceStatus(NAME, healthy, pid=pid, port=port, url=endpoint.get("url"),
                         detail=detail, log=endpoint.get("log"))
