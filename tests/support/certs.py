"""A throwaway certificate authority and a server certificate for loopback, made with `openssl`.

Both certificates carry the extensions strict verifiers insist on (basicConstraints, key
usage, subject/authority key ids, a subjectAltName for 127.0.0.1 and localhost), so Python's
ssl module, paho, mosquitto and nginx all accept them. EC P-256 keys: fast to generate.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL_TIMEOUT_SECONDS = 30
VALID_DAYS = "2"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA certificate clients trust, and the server's certificate and key."""

    ca_cert: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path, *, common_name: str = "127.0.0.1") -> TlsFiles:
    """Create `ca.crt`, `server.crt` and `server.key` in `directory` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    extensions = directory / "server.ext"
    extensions.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
    )
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *new_key, "-keyout", ca_key, "-out", ca_cert, "-days", VALID_DAYS,
        "-subj", "/CN=edge-bridge test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl("req", *new_key, "-keyout", key, "-out", csr, "-subj", f"/CN={common_name}")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", VALID_DAYS, "-extfile", extensions,
    )  # fmt: skip
    return TlsFiles(ca_cert=ca_cert, cert=cert, key=key)


def _openssl(*args: str | Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        msg = "openssl not found; install it: apt-get install openssl"
        raise RuntimeError(msg)
    result = subprocess.run(
        [openssl, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=OPENSSL_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        msg = f"openssl {args[0]} failed: {result.stderr.strip()}"
        raise RuntimeError(msg)
