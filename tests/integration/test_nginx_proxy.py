"""deploy/nginx.conf in front of a real bridge: TLS, streaming SSE, no gzip on events, no tokens
in the access or error log, a request limit on /api/auth/, and the CSRF check's origin.

The test runs Debian's nginx (not as a daemon) with the shipped site file, in which only the
ports, the certificate paths and the log path are swapped, inside a minimal main config of
its own in tmp_path. The certificate comes from a throwaway CA made with openssl.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import System
from tests.support.broker import free_port
from tests.support.certs import TlsFiles, make_tls_files
from tests.support.sse import SseStream

pytestmark = pytest.mark.integration

SITE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
MAX = "04A1B20000"  # student 401 Max Muster
READY_TIMEOUT_SECONDS = 5.0


@dataclass
class Proxy:
    """A running nginx: HTTPS and HTTP ports on loopback, and its access log."""

    https_url: str
    http_url: str
    ca_cert: Path
    access_log: Path
    error_log: Path  # the test's main config's (info level)
    site_error_log: Path  # the site file's own
    process: subprocess.Popen[bytes]

    def error_text(self) -> str:
        return "".join(
            path.read_text(errors="replace")
            for path in (self.error_log, self.site_error_log)
            if path.exists()
        )


def render_site(
    text: str,
    *,
    upstream_port: int,
    https_port: int,
    http_port: int,
    tls: TlsFiles,
    log: Path,
    error_log: Path,
) -> str:
    """The shipped site file with ports and paths swapped; every swap must find its line."""
    swaps = {
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream_port};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "/etc/ssl/edge-bridge/fullchain.pem": str(tls.cert),
        "/etc/ssl/edge-bridge/privkey.pem": str(tls.key),
        "/var/log/nginx/edge-bridge.access.log": str(log),
    }
    for old, new in swaps.items():
        assert old in text, f"deploy/nginx.conf no longer contains {old!r}: update this test"
        text = text.replace(old, new)
    text = text.replace("/var/log/nginx/edge-bridge.error.log", str(error_log))
    return "\n".join(line for line in text.splitlines() if "listen [::]" not in line) + "\n"


def _main_config(directory: Path, site: Path) -> str:
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp = directory / "temp"
    return f"""
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
{user}
events {{ worker_connections 128; }}
http {{
    default_type application/octet-stream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site};
}}
"""


def _nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail("nginx not found; install it: apt-get install nginx")
    return found


def _wait_for_port(port: int, process: subprocess.Popen[bytes], error_log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited at start-up:\n{error_log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.25):
                return
        except OSError:
            time.sleep(0.02)
    pytest.fail(f"nginx not listening within {READY_TIMEOUT_SECONDS} s")


@pytest.fixture
def proxy(system: System, tmp_path: Path) -> Iterator[Proxy]:
    directory = tmp_path / "nginx"
    (directory / "temp").mkdir(parents=True)
    tls = make_tls_files(tmp_path / "tls")
    https_port, http_port = free_port(), free_port()
    access_log, error_log = directory / "access.log", directory / "error.log"
    site = directory / "edge-bridge.conf"
    site.write_text(
        render_site(
            SITE_FILE.read_text(),
            upstream_port=system.server.port,
            https_port=https_port,
            http_port=http_port,
            tls=tls,
            log=access_log,
            error_log=directory / "site-error.log",
        )
    )
    config = directory / "nginx.conf"
    config.write_text(_main_config(directory, site))
    command = [_nginx(), "-p", str(directory), "-c", str(config), "-e", str(error_log)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=10)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(https_port, process, error_log)
        yield Proxy(
            https_url=f"https://127.0.0.1:{https_port}",
            http_url=f"http://127.0.0.1:{http_port}",
            ca_cert=tls.ca_cert,
            access_log=access_log,
            error_log=error_log,
            site_error_log=directory / "site-error.log",
            process=process,
        )
    finally:
        process.send_signal(signal.SIGTERM)  # fast shutdown: open streams would delay SIGQUIT
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_for_log_line(path: Path, needle: str, timeout: float = 2.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if needle in text:
            return text
        time.sleep(0.02)  # nginx writes the line right after the response; bounded
    pytest.fail(f"{needle!r} not in {path} within {timeout} s")


def test_an_event_reaches_an_sse_client_through_nginx_within_a_second(
    system: System, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: clients that trust only the test CA; a browser-style stream (?token=).
    monkeypatch.setenv("SSL_CERT_FILE", str(proxy.ca_cert))  # SseStream's httpx client reads it
    trust = ssl.create_default_context(cafile=str(proxy.ca_cert))
    https = httpx.Client(base_url=proxy.https_url, verify=trust)
    reader = system.reader("reader-101")
    token = system.token(1)  # Frau Schmidt supervises group 124 in Raum 101
    with SseStream(
        proxy.https_url + "/api/sse/events",
        params={"token": token},
        headers={"Accept-Encoding": "gzip"},
    ) as stream:
        connected = stream.next_event(timeout=5)

        # Act: a scan; its event must come through nginx within a second of publishing.
        reader.send(MAX, wait=False)
        event = stream.next_event(timeout=1.0)

    health = https.get("/health", params={"token": "SECRET-IN-QUERY"})
    script = https.get("/static/app.js", headers={"Accept-Encoding": "gzip"})
    metrics = https.get("/metrics")
    redirect = httpx.get(proxy.http_url + "/api/me", follow_redirects=False)
    access_log = _wait_for_log_line(proxy.access_log, "/health")
    https.close()

    # Assert: streamed, uncompressed, over TLS; the rest of the site behaves as configured.
    assert stream.status_code == 200
    assert stream.headers is not None
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in stream.headers  # gzip would hold events back
    assert connected.event == "connected"
    assert event.event == "student_checkin"
    assert event.json["data"]["student_id"] == "401"
    assert health.status_code == 200
    assert script.headers.get("content-encoding") == "gzip"  # gzip is on, just not for SSE
    assert metrics.status_code == 403
    assert redirect.status_code == 301
    assert redirect.headers["location"].startswith("https://")
    assert "SECRET-IN-QUERY" not in access_log
    assert token not in access_log
    assert '"GET /health HTTP/1.1" 200' in access_log


def _https(proxy: Proxy) -> httpx.Client:
    return httpx.Client(
        base_url=proxy.https_url, verify=ssl.create_default_context(cafile=str(proxy.ca_cert))
    )


def test_nginx_limits_requests_to_the_auth_routes_per_address(system: System, proxy: Proxy) -> None:
    https = _https(proxy)

    statuses = [
        https.post(
            "/api/auth/login", json={"email": f"guess{n}@example.org", "password": "x"}
        ).status_code
        for n in range(25)
    ]
    health = https.get("/health")
    https.close()

    assert statuses[:21] == [401] * 21  # one request plus a burst of 20 reach the bridge
    assert set(statuses[21:]) == {429}  # then 10 a minute: the rest never reach it
    assert health.status_code == 200  # other routes are not limited
    assert system.server.log_text().count("Login failed reason=bad_credentials") == 21


def test_a_failed_event_stream_request_puts_no_token_into_nginx_error_log(
    system: System, proxy: Proxy
) -> None:
    https = _https(proxy)
    token = system.token(1)
    system.server.kill()  # every proxied request now fails with an error line

    stream = https.get("/api/sse/events", params={"token": token})
    other = https.get("/api/me")
    https.close()
    errors = proxy.error_text()

    assert (stream.status_code, other.status_code) == (502, 502)
    assert "connect() failed" in errors  # the error log works ...
    assert 'request: "GET /api/me HTTP/1.1"' in errors
    assert token not in errors  # ... and has no stream request line
    assert "token=" not in errors


def test_a_cookie_authenticated_change_through_nginx_passes_the_origin_check(
    system: System, proxy: Proxy
) -> None:
    https = _https(proxy)
    login = https.post(
        "/api/auth/login",
        json={"email": "schmidt@example.org", "password": "schmidt-demo-1"},
        headers={"Origin": proxy.https_url},
    )
    cookie = {"Cookie": f"access_token={login.json()['access_token']}"}

    same_site = https.post(
        "/api/active/groups",
        json={"name": "Schach AG", "room_id": 3},
        headers={**cookie, "Origin": proxy.https_url},
    )
    cross_site = https.post(
        "/api/active/groups",
        json={"name": "Schach AG", "room_id": 3},
        headers={**cookie, "Origin": "https://evil.example"},
    )
    https.close()

    assert login.status_code == 200
    assert "secure" in login.headers["set-cookie"].lower()  # X-Forwarded-Proto trusted
    assert same_site.status_code == 201, same_site.text  # X-Forwarded-Host has the port
    assert cross_site.status_code == 403
