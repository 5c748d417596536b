"""appliance.labload against a real local TLS server (openssl-made certificate).

The server can answer 200, answer 503, or drop a kept-alive connection without an answer
(what a proxy's graceful reload may do between two requests): the load must count the
first as ok, the second as failed, and retry the third once without calling it a failure.
"""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.labload import Load


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    mode = "ok"  # ok | error | drop-reused

    def setup(self) -> None:
        super().setup()
        self.served = 0  # one handler per connection: requests seen on this one

    def do_GET(self) -> None:
        self.served += 1
        if self.mode == "drop-reused" and self.served > 1:
            self.close_connection = True  # closed before any answer on a reused connection
            return
        status = 503 if self.mode == "error" else 200
        body = b'{"items": []}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    work = tmp_path_factory.mktemp("tls")
    key, cert = work / "key.pem", work / "cert.pem"
    openssl = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*openssl.split(), *names, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}", Path(cert).read_text()
    httpd.shutdown()


def run_load(server: tuple[str, str], mode: str, seconds: float = 1.5) -> Load:
    Handler.mode = mode
    with Load({"local": server}, rate=40, connections=2, fresh_every=5) as load:
        time.sleep(seconds)
    return load


def test_paced_keep_alive_requests_all_answered(server: tuple[str, str]) -> None:
    load = run_load(server, "ok")
    stats = load.hosts["local"]
    assert stats.failures == [] and stats.retried == 0
    assert 20 <= load.rate("local") <= 60, load.summary()  # paced near 40 req/s, no burst


def test_errors_count_as_failures(server: tuple[str, str]) -> None:
    stats = run_load(server, "error", seconds=0.5).hosts["local"]
    assert stats.ok == 0 and stats.failures and stats.failures[0] == "HTTP 503"


def test_a_dropped_kept_alive_connection_is_retried_not_failed(server: tuple[str, str]) -> None:
    load = run_load(server, "drop-reused")
    stats = load.hosts["local"]
    assert stats.failures == [], stats.failures[:3]
    assert stats.retried > 0 and stats.ok > stats.retried  # each retry answered on a new one
