"""What a TLS connection negotiated: the protocol version and when the served certificates
expire (the leaf's, and the earliest of the whole chain the server sent).

Standard library only. The served chain comes from `SSLSocket.get_unverified_chain()`
(Python 3.13+, DER bytes) or, on 3.10-3.12, from the same method of CPython's private
`SSLSocket._sslobj` (certificate objects, exported here as PEM); when neither exists (another
socket type, an older Python) only the leaf (`getpeercert(binary_form=True)`) is read. The
"served" chain, not the verified one: a verified chain ends at the local trust store's root,
which the server never sent and whose expiry the operator cannot act on.
"""

from __future__ import annotations

import calendar
import contextlib
import ssl
from dataclasses import dataclass
from typing import Any

# DER tags met on the way to `validity.notAfter` (RFC 5280, 4.1).
_SEQUENCE = 0x30
_EXPLICIT_VERSION = 0xA0
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18


@dataclass(frozen=True)
class TLSInfo:
    """`version` like "TLS 1.3"; expiries are Unix timestamps (None when unreadable)."""

    version: str | None
    earliest_expiry: float | None  # the earliest notAfter of the served chain
    leaf_expiry: float | None  # the server certificate's own notAfter
    chain_length: int  # certificates read (1 when only the leaf was available)


def tls_info(sock: object) -> TLSInfo:
    """Describe a connected TLS socket; never raises (unknown parts are None)."""
    version = None
    with contextlib.suppress(Exception):
        version = tls_version_name(sock.version())  # type: ignore[attr-defined]
    chain = served_chain(sock)
    expiries = [not_after(der) for der in chain]
    known = [e for e in expiries if e is not None]
    return TLSInfo(
        version=version,
        earliest_expiry=min(known) if known else None,
        leaf_expiry=expiries[0] if expiries else None,
        chain_length=len(chain),
    )


def tls_version_name(name: str | None) -> str | None:
    """OpenSSL's "TLSv1.3" as "TLS 1.3" ("TLSv1" is "TLS 1.0"); anything else unchanged."""
    if not name:
        return None
    if name.startswith("TLSv"):
        number = name[4:]
        return f"TLS {number if '.' in number else number + '.0'}"
    return name


def served_chain(sock: object) -> list[bytes]:
    """The certificates the server sent, leaf first, as DER; [] when there are none."""
    for read in (_public_chain, _private_chain, _leaf_only):
        with contextlib.suppress(Exception):
            chain = read(sock)
            if chain:
                return chain
    return []


def _public_chain(sock: Any) -> list[bytes]:
    method = getattr(sock, "get_unverified_chain", None)  # Python 3.13+
    return [bytes(der) for der in method()] if method is not None else []


def _private_chain(sock: Any) -> list[bytes]:
    # Python 3.10-3.12 have the method on the C object only; it answers with certificate
    # objects whose public_bytes() is PEM.
    sslobj = getattr(sock, "_sslobj", None)
    method = getattr(sslobj, "get_unverified_chain", None)
    chain = method() if method is not None else None
    return [ssl.PEM_cert_to_DER_cert(cert.public_bytes()) for cert in chain or ()]


def _leaf_only(sock: Any) -> list[bytes]:
    der = sock.getpeercert(binary_form=True)
    return [der] if der else []


def not_after(der: bytes) -> float | None:
    """A DER certificate's notAfter as a Unix timestamp; None if it cannot be read."""
    try:
        tbs = _children(_only(der, _SEQUENCE))[0]
        if tbs[0] != _SEQUENCE:
            return None
        fields = _children(tbs[1])
        if fields and fields[0][0] == _EXPLICIT_VERSION:
            fields = fields[1:]
        # serialNumber, signature, issuer, validity
        validity = fields[3]
        if validity[0] != _SEQUENCE:
            return None
        tag, value = _children(validity[1])[1]
        return _asn1_time(tag, value.decode("ascii"))
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def _only(data: bytes, tag: int) -> bytes:
    """The value of the single element `data` holds, which must have `tag`."""
    ((found, value),) = _children(data)
    if found != tag:
        raise ValueError("unexpected DER tag")
    return value


def _children(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, value) elements laid end to end in `data` (definite lengths only)."""
    items = []
    pos = 0
    while pos < len(data):
        tag = data[pos]
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if not 1 <= count <= 4:
                raise ValueError("unsupported DER length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        if pos + length > len(data):
            raise ValueError("truncated DER")
        items.append((tag, data[pos : pos + length]))
        pos += length
    return items


def _asn1_time(tag: int, text: str) -> float | None:
    """UTCTime (YYMMDDHHMMSSZ, years 50-99 are 19xx) or GeneralizedTime
    (YYYYMMDDHHMMSSZ, fractions ignored), as RFC 5280 requires them: in UTC."""
    if not text.endswith("Z"):
        return None
    digits = text[:-1].split(".", 1)[0]
    if tag == _UTC_TIME and len(digits) == 12 and digits.isdigit():
        year = int(digits[:2])
        year += 1900 if year >= 50 else 2000
        rest = digits[2:]
    elif tag == _GENERALIZED_TIME and len(digits) == 14 and digits.isdigit():
        year, rest = int(digits[:4]), digits[4:]
    else:
        return None
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
