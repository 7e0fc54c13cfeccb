"""Throwaway certificates for HTTPS on loopback, made with the openssl command: a CA, and a
leaf for 127.0.0.1 signed by it, with the extensions Python 3.13's strict verification
(VERIFY_X509_STRICT) asks of both. Shared by the TLS tests and the probe-accuracy bench.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
LEAF_EXTENSIONS = """\
subjectAltName=IP:127.0.0.1
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
"""


@dataclass(frozen=True)
class Certificates:
    ca: Path
    ca_key: Path
    leaf: Path
    leaf_key: Path
    chain: Path  # the leaf, then the CA: what a server sends

    @property
    def ca_expiry(self) -> float:
        return enddate(self.ca)

    @property
    def leaf_expiry(self) -> float:
        return enddate(self.leaf)


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def openssl(*args: str) -> str:
    """Run the openssl command; its standard output."""
    done = subprocess.run(
        ["openssl", *args], check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout


def enddate(cert: Path) -> float:
    """notAfter as the openssl command reads it (`notAfter=Jun  3 12:00:00 2026 GMT`): the
    expected expiry, read without the code under test."""
    text = openssl("x509", "-noout", "-enddate", "-in", str(cert)).strip().split("=", 1)[1]
    return float(ssl.cert_time_to_seconds(text))


def make_certificates(
    folder: Path, *, ca_name: str = "pinference test CA", ca_days: int = 1, leaf_days: int = 3
) -> Certificates:
    """A CA and a leaf for 127.0.0.1 signed by it, in `folder`."""
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    leaf, leaf_key, csr = folder / "leaf.pem", folder / "leaf.key", folder / "leaf.csr"
    extensions = folder / "leaf.ext"
    extensions.write_text(LEAF_EXTENSIONS)
    openssl("req", "-x509", *EC_KEY, "-days", str(ca_days), "-subj", f"/CN={ca_name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-new", *EC_KEY, "-subj", "/CN=127.0.0.1",
            "-keyout", str(leaf_key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", str(leaf_days), "-extfile", str(extensions),
            "-out", str(leaf))  # fmt: skip
    chain = folder / "chain.pem"
    chain.write_text(leaf.read_text() + ca.read_text())
    return Certificates(ca, ca_key, leaf, leaf_key, chain)
