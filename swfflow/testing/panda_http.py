"""The contract server's HTTP layer: the real server's wire format and request handling.

The envelope (``{"success", "message", "data"}``), the datetime encoding
(``{"__datetime__": ISO}``), argument casting the way pandaserver's ``request_validation`` does
it, and the request handler that routes each request to an endpoint of
:class:`~swfflow.testing.panda_server.PandaContractServer`, which owns the routes and the tasks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

log = logging.getLogger(__name__)

# (the PandaContractServer, the arguments, the caller) → answer; the server module imports
# this one, so the server is not named here by type
Endpoint = Callable[[Any, dict, str], dict]
Route = tuple[str, tuple[str, Endpoint]]  # endpoint name, (expected method, endpoint)


class BadArgument(Exception):
    """An argument failed the server's type checks; the message is the server's."""


def envelope(success: bool, message: str = "", data: Any = None) -> dict[str, Any]:
    return {"success": success, "message": message, "data": data}


class WireEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return {"__datetime__": o.isoformat()}
        if isinstance(o, set | frozenset | tuple):
            return list(o)
        return super().default(o)


# --- argument handling, the way pandaserver's request_validation casts them ------------------
def typed_arg(args: dict[str, Any], name: str, kind: type, default: Any = ..., *,
              method: str) -> Any:
    if name not in args:
        if default is ...:
            raise BadArgument(f"Argument error: missing a required argument: '{name}'")
        return default
    value = args[name]
    if method == "GET" and isinstance(value, str) and kind is not str:
        try:
            if kind is bool:
                return value.lower() in ("true", "1")
            if kind is int:
                return int(float(value))
            return json.loads(value)
        except ValueError:
            raise BadArgument(f"Type error: '{name}' with value '{value}' could not be casted to "
                              f"type {kind.__name__} from str.") from None
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        if value is None and default is None:
            return None
        raise BadArgument(f"Type error: '{name}' must be of type {kind.__name__}, got "
                          f"{type(value).__name__}.")
    return value


def multipart_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """A multipart/form-data body: field → value, or (file name, bytes) for a file."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        content = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        fields[name] = (filename, content) if filename is not None else content.decode()
    return fields


# --- the request handler -------------------------------------------------------------------
CACHE_PREFIX = "/cache/"  # files of the server's cache (production: Apache's Alias)

def handler_for(server: Any,
                route: Callable[[str], Route | None]) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to ``server``; ``route`` maps a URL path to its endpoint."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            path = urlparse(self.path)
            if method == "GET" and path.path.startswith(CACHE_PREFIX):
                content = server.cache.get(path.path[len(CACHE_PREFIX):])
                if content is None:
                    self._reply(404, b"Not Found", "text/plain")
                else:
                    self._reply(200, content, "application/octet-stream")
                return
            found = route(path.path)
            if found is None:
                self._reply(404, b"Not Found", "text/plain")
                return
            name, (expected, endpoint) = found
            server.calls.append(name)
            self._note_auth()
            if server.fail_next > 0:
                server.fail_next -= 1
                self._reply(500, b"Internal Server Error (injected)", "text/plain")
                return
            try:
                args = self._args(method, path.query)
                if method != expected:
                    answer = envelope(False, f"expecting {expected}, received {method}")
                else:
                    answer = endpoint(server, args, method)
            except BadArgument as exc:
                answer = envelope(False, str(exc))
            except ValueError:
                answer = envelope(False, "failed to load JSON")
            self._reply(200, json.dumps(answer, cls=WireEncoder).encode(), "application/json")

        def _args(self, method: str, query: str) -> dict[str, Any]:
            if method == "GET":
                return {k: v[0] if len(v) == 1 else v for k, v in parse_qs(query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if not body:
                return {}
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                return multipart_fields(content_type, body)
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("body is not a JSON object")
            return data

        def _note_auth(self) -> None:
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                server.tokens_seen.add(auth[len("Bearer "):])
            if self.headers.get("Origin"):
                server.origins_seen.add(self.headers["Origin"])

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
