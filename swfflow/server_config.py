"""Where the PanDA and Rucio servers are, found as their own clients find them: panda-client's
``PANDA_URL_SSL``/``PANDA_URL`` (+ its auth variables) and rucio-clients' ``RUCIO_CONFIG`` (or
``$RUCIO_HOME/etc/rucio.cfg``, ``/opt/rucio/etc/rucio.cfg``); command-line options win."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from swfflow.errors import ConfigError

RUCIO_CONFIG_PLACES = ("{RUCIO_HOME}/etc/rucio.cfg", "/opt/rucio/etc/rucio.cfg")


@dataclass(frozen=True)
class Servers:
    panda_url: str | None  # None: panda-client's own default
    rucio_config: str


def rucio_config_path(explicit: str | None = None) -> str:
    """Where rucio-clients would read its configuration, or a clear error."""
    if explicit:
        return explicit
    if os.environ.get("RUCIO_CONFIG"):
        return os.environ["RUCIO_CONFIG"]
    home = os.environ.get("RUCIO_HOME")
    for place in RUCIO_CONFIG_PLACES:
        if "{RUCIO_HOME}" in place and not home:
            continue
        path = place.format(RUCIO_HOME=home)
        if Path(path).is_file():
            return path
    raise ConfigError("no Rucio client configuration found",
                      hint="set RUCIO_CONFIG (or RUCIO_HOME) as for the rucio client, or pass "
                           "--rucio-config; `swfflow services status` prints the local one")


def servers(panda_url: str | None = None, rucio_config: str | None = None) -> Servers:
    return Servers(panda_url=panda_url or os.environ.get("PANDA_URL_SSL")
                   or os.environ.get("PANDA_URL"), rucio_config=rucio_config_path(rucio_config))
