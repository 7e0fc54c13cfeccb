"""What a TLS connection negotiated: the protocol version and when the served certificates
expire (the leaf's, and the earliest of the chain the server sent: not of the verified
chain, which ends at a local root whose expiry the operator cannot act on).

Standard library only. The served chain is read with the `get_unverified_chain()` of
CPython's SSL object (3.10+; 3.13 adds a public method over it); on another socket (a
proxy's TLS-in-TLS) only the verified leaf is read.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TLSInfo:
    """`version` like "TLS 1.3"; expiries are Unix timestamps."""

    version: str | None
    earliest_expiry: float | None  # the earliest notAfter of the served chain
    leaf_expiry: float | None  # the server certificate's own notAfter
    chain_length: int  # certificates read (1 when only the leaf was available)


def tls_info(sock: Any) -> TLSInfo:
    """Describe a connected, verified TLS socket."""
    try:
        chain = [cert.get_info() for cert in sock._sslobj.get_unverified_chain()]
    except (AttributeError, TypeError):
        chain = [sock.getpeercert()]
    expiries = [float(ssl.cert_time_to_seconds(cert["notAfter"])) for cert in chain]
    return TLSInfo(tls_version_name(sock.version()), min(expiries), expiries[0], len(chain))


def tls_version_name(name: str | None) -> str | None:
    """OpenSSL's "TLSv1.3" as "TLS 1.3" ("TLSv1" is "TLS 1.0"); anything else unchanged."""
    if name and name.startswith("TLSv"):
        number = name[4:]
        return f"TLS {number if '.' in number else number + '.0'}"
    return name or None
