"""The web front of the local panda-server: run by the PanDA venv's Python, standard library only
(it never imports swfflow).

Production serves ``pandaserver/server/panda.py`` with Apache + mod_wsgi + mod_gridsite; this
front sets what Apache would (reference/panda-server.md, "Web front"): ``SCRIPT_NAME`` = the
request path with an empty ``PATH_INFO``, the client's DN in ``SSL_CLIENT_S_DN`` (which makes a
request "secure" with ``token_authType = None``), and no empty ``CONTENT_LENGTH`` (wsgiref sends
one on GET, which the app cannot parse). Threads serve the requests, as mod_wsgi's do.
``GET /cache/NAME`` serves a file of the server's cache folder, as production's Apache
``Alias /cache/`` does: that is where runGen (and swfflow's pilot) fetch a job's sandbox.

It also stands in for pg_cron: every ``--cron-interval`` seconds it runs the procedure calls given
with ``--cron-call`` (the per-minute jobs of panda-database's ``post_step_cron.sql``), without
which JEDI's ContentsFeeder finds no datasets.

    python panda_wsgi.py --port 25080 --dn /CN=swf --dsn "dbname=… user=panda host=…"
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 64


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), format % args))


def cache_file(cache_dir: str, path: str) -> str | None:
    """The file of the cache folder a ``/cache/NAME`` request names (None: no such file)."""
    name = path[len("/cache/"):]
    if not name or "/" in name or name.startswith("."):
        return None
    full = os.path.join(cache_dir, name)
    return full if os.path.isfile(full) else None


def serve_cache(cache_dir: str, environ, start_response):
    found = cache_file(cache_dir, environ.get("PATH_INFO", ""))
    if found is None or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found"]
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(os.path.getsize(found)))])
    if environ["REQUEST_METHOD"] == "HEAD":
        return [b""]
    wrapper = environ.get("wsgi.file_wrapper")
    handle = open(found, "rb")  # closed by the server once sent
    return wrapper(handle, 1 << 20) if wrapper else iter(lambda: handle.read(1 << 20), b"")


def front(app, dn: str, cache_dir: str):
    """Wrap the PanDA WSGI app with what Apache + mod_gridsite would set."""
    def application(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/cache/"):
            return serve_cache(cache_dir, environ, start_response)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        environ["PATH_INFO"] = ""
        environ["SSL_CLIENT_S_DN"] = dn
        if not environ.get("CONTENT_LENGTH"):
            environ.pop("CONTENT_LENGTH", None)
        return app(environ, start_response)
    return application


def cron_loop(dsn: str, calls: list[str], interval: float) -> None:
    import psycopg2

    while True:
        try:
            with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
                for call in calls:
                    cursor.execute(call)
        except Exception as exc:  # keep going: the next round may succeed
            sys.stderr.write(f"cron stand-in: {exc}\n")
        time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dn", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--cron-call", action="append", default=[])
    parser.add_argument("--cron-interval", type=float, default=10.0)
    args = parser.parse_args()
    from pandaserver.server.panda import application

    if args.cron_call:
        threading.Thread(target=cron_loop, args=(args.dsn, args.cron_call, args.cron_interval),
                         daemon=True).start()
    server = make_server("127.0.0.1", args.port, front(application, args.dn, args.cache_dir),
                         server_class=ThreadingServer, handler_class=QuietHandler)
    sys.stderr.write(f"panda-server front on http://127.0.0.1:{args.port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
