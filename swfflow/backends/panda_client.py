"""panda-client as swfflow drives it: the lazy import, aiming it at one server, credentials.

panda-client keeps its server URL in module globals and reads its credentials from the
environment; everything here is about living with that. The executor
(:mod:`swfflow.backends.panda`) is the only caller, and ``load_client`` and ``redact`` stay
importable from there.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from typing import Any

from swfflow.errors import ConfigError

CLIENT_LOCK = threading.Lock()  # panda-client keeps its server URL in module globals


def load_client() -> Any:
    """Import ``pandaclient.Client`` lazily, never at swfflow import time.

    Without ``PANDA_BEHIND_REAL_LB`` panda-client resolves the cache server's host name *at
    import* (offline, the import itself fails) and rewrites every request's host to a random DNS
    alias of the server. swfflow talks to the one server it is configured with, so it sets the
    variable when the user has not.
    """
    os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
    from pandaclient import Client

    return Client


def point_client_at(client: Any, url: str, api_base: str) -> None:
    """Aim panda-client's module-level server settings at ``url`` (what its own
    ``useDevServer``/``useIntrServer`` do), so several swfflow servers can coexist."""
    if client.server_base_path_ssl != api_base:
        client.baseURL = client.baseURLSSL = url
        client.server_base_path = client.server_base_path_ssl = api_base


# --- secrets -------------------------------------------------------------------------------

_TOKEN_VARS = ("PANDA_AUTH_ID_TOKEN", "OIDC_AUTH_ID_TOKEN")
_BEARER = re.compile(r"(Bearer\s+)[^\s\"',}]+")


def _secret_values() -> list[str]:
    values = [os.environ[v] for v in _TOKEN_VARS if os.environ.get(v)]
    token_file = os.environ.get("OIDC_AUTH_TOKEN_FILE")
    if token_file:
        with contextlib.suppress(OSError):
            with open(token_file, encoding="utf-8") as fh:
                values.append(fh.read().strip())
    return [v.strip() for v in values if len(v.strip()) >= 6]


def redact(text: str) -> str:
    """``text`` with every credential value swfflow knows of replaced by ``***``."""
    for secret in _secret_values():
        text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text)


def check_auth_environment() -> None:
    """Catch the panda-client settings that would make it exit the process or prompt."""
    if os.environ.get("PANDA_AUTH") == "oidc":
        if not (os.environ.get("PANDA_AUTH_VO") or os.environ.get("OIDC_AUTH_VO")):
            raise ConfigError("PANDA_AUTH=oidc needs the VO in PANDA_AUTH_VO",
                              hint="export PANDA_AUTH_VO=<your VO>, e.g. wlcg")
