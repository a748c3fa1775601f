"""The daemon's small HTTP server: `/healthz` and `/metrics` on `[http] listen`.

A threaded wsgiref server in a daemon thread of its own: a slow scrape (or a
database that does not answer) never holds up a poller, and the pollers never
wait for it. `/metrics` is prometheus-client's WSGI app over maild's registry;
`/healthz` answers 200 or 503 with the checks as JSON (`maild.health`).
Nothing else is served; it changes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from maild.app import App
from maild.config import listen_address
from maild.errors import ConfigError
from maild.health import health

log = logging.getLogger("maild.http")

StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        log.debug("%s %s", self.address_string(), format % args)


def make_app(app: App) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app(app.metrics.registry)

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            ok, body = health(app)
            data = json.dumps(body, ensure_ascii=False).encode()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
            return [data]
        data = b"not found: try /healthz or /metrics\n"
        start_response("404 Not Found", [("Content-Type", "text/plain"),
                                         ("Content-Length", str(len(data)))])
        return [data]
    return wsgi


class HttpServer:
    """Serve `app` on `listen` (HOST:PORT) until `stop()`."""

    def __init__(self, app: App, listen: str) -> None:
        host, port = listen_address(listen)
        try:
            self.server = make_server(host, port, make_app(app), server_class=_Server,
                                      handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(f"http.listen: cannot listen on {listen}: "
                              f"{exc.strerror or exc}") from None
        self.thread = threading.Thread(target=self.server.serve_forever, name="http",
                                       kwargs={"poll_interval": 0.5}, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HttpServer:
        self.thread.start()
        host = self.server.server_address[0]
        log.info("serving /healthz and /metrics on http://%s:%d", host, self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
