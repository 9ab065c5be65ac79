"""deploy/nginx.conf in front of a real bridge: TLS, streaming SSE, no gzip on events, no tokens
in the access or error log, a request limit on logins per IPv4 address or IPv6 /64 (none on
refresh and logout), and the CSRF check's origin.

The test runs Debian's nginx (not as a daemon) with the shipped site file, in which only the
ports, the certificate paths, the log path and the login limit's numbers are swapped, inside
a minimal main config of its own in tmp_path. The certificate comes from a throwaway CA made
with openssl. The main config trusts `X-Real-IP` from loopback (the realip module), so a test
can speak as any client address.
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
# The login limit in the test's copy: one request a minute and a burst of 5, so the 7th
# request within a minute is refused however slowly this machine runs the test.
SHIPPED_LOGIN_RATE, TEST_LOGIN_RATE = "rate=30r/m;", "rate=1r/m;"
SHIPPED_LOGIN_BURST, TEST_LOGIN_BURST = "burst=60 nodelay;", "burst=5 nodelay;"
LOGINS_BEFORE_LIMIT = 1 + 5


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
        SHIPPED_LOGIN_RATE: TEST_LOGIN_RATE,
        SHIPPED_LOGIN_BURST: TEST_LOGIN_BURST,
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
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Real-IP;
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


def _login(https: httpx.Client, n: int, client: str) -> httpx.Response:
    return https.post(
        "/api/auth/login",
        json={"email": f"guess{n}@example.org", "password": "x"},
        headers={"X-Real-IP": client},
    )


def _refused_by_nginx(response: httpx.Response) -> bool:
    return response.status_code == 429 and "nginx" in response.text


def test_nginx_limits_logins_per_address_and_lets_refresh_and_logout_through(
    system: System, proxy: Proxy
) -> None:
    https = _https(proxy)
    client = "198.51.100.7"

    logins = [_login(https, n, client) for n in range(LOGINS_BEFORE_LIMIT + 2)]
    refreshes = [
        https.post(
            "/api/auth/refresh", json={"refresh_token": "x" * 43}, headers={"X-Real-IP": client}
        )
        for _ in range(LOGINS_BEFORE_LIMIT + 2)
    ]
    logout = https.post("/api/auth/logout", headers={"X-Real-IP": client})
    other_client = _login(https, 99, "198.51.100.8")
    health = https.get("/health", headers={"X-Real-IP": client})
    https.close()

    statuses = [response.status_code for response in logins]
    assert statuses[:LOGINS_BEFORE_LIMIT] == [401] * LOGINS_BEFORE_LIMIT  # reach the bridge
    assert all(_refused_by_nginx(response) for response in logins[LOGINS_BEFORE_LIMIT:])
    assert system.server.log_text().count("Login failed reason=bad_credentials") == (
        LOGINS_BEFORE_LIMIT + 1  # ... and the other address's one
    )
    assert [response.status_code for response in refreshes] == [401] * len(refreshes)
    assert not _refused_by_nginx(logout)  # the bridge answers it
    assert other_client.status_code == 401  # each address has a limit of its own
    assert health.status_code == 200  # other routes are not limited


def test_nginx_counts_the_logins_of_one_ipv6_64_together(system: System, proxy: Proxy) -> None:
    https = _https(proxy)
    same_64 = [f"2001:db8:1:2::{n + 1:x}" for n in range(LOGINS_BEFORE_LIMIT + 1)]

    logins = [_login(https, n, address) for n, address in enumerate(same_64)]
    next_64 = _login(https, 99, "2001:db8:1:3::1")
    https.close()

    assert [response.status_code for response in logins[:LOGINS_BEFORE_LIMIT]] == [401] * (
        LOGINS_BEFORE_LIMIT
    )
    assert _refused_by_nginx(logins[LOGINS_BEFORE_LIMIT])  # a new address, the same /64
    assert next_64.status_code == 401


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
