"""The telemetry path's answer, rendered once per state change and served as bytes.

The state changes once per probe; scrapes come far more often, from several Prometheus
servers. So the exposition is two parts, in this order: the families of the `cached`
collector (everything derived from the probe states, the config and the reload status)
and those of the `fresh` collector (process_*, which move by themselves). The first part
is rendered once per `generation()` value and per variant (format and compression, each
on the first request that asks for it); every scrape renders only the fresh part and
appends it. The result is byte for byte what prometheus_client renders from `registry`
(both collectors, in the same order) at that moment; gzip output decompresses to it.

`generation()` must change whenever anything the cached collector reads has changed, and
change after it did (the key is read before rendering, so a render is never older than
its key: a change during a render costs one more render, never a stale answer).

Content negotiation is prometheus_client's own (`choose_encoder`, `gzip_accepted`), as in
`make_wsgi_app`; a `name[]` filter is rendered fresh by `make_wsgi_app` itself.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector, CollectorRegistry

Encoder = Callable[[CollectorRegistry], bytes]
Headers = list[tuple[str, str]]

# Variants cached per generation: the formats Prometheus asks for are few, but the
# OpenMetrics version in Accept is the client's to choose, so the count is capped; past
# it, a request is rendered whole, as without a cache.
MAX_VARIANTS = 8
_EMPTY = CollectorRegistry()


@dataclass
class _Gzipped:
    head: bytes  # the cached part, compressed and flushed to a byte boundary
    compressor: Any  # zlib's compressor after `head`: copied per scrape, never used itself


@dataclass
class _Rendered:
    """The cached part for one generation, per content type (and compressed)."""

    key: Hashable
    plain: dict[str, bytes] = field(default_factory=dict)  # without the format's trailer
    gzipped: dict[str, _Gzipped] = field(default_factory=dict)


def _registry(*collectors: Collector) -> CollectorRegistry:
    # Described by a collect() now: the names let a name[] filter find the collectors.
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(collector)
    return registry


class Exposition:
    """A WSGI app for GET on the telemetry path, and `render()` without HTTP."""

    def __init__(
        self, cached: Collector, fresh: Collector, generation: Callable[[], Hashable]
    ) -> None:
        self.registry = _registry(cached, fresh)  # what a fresh render shows
        self._cached = _registry(cached)
        self._fresh = _registry(fresh)
        self._generation = generation
        self._filtered = make_wsgi_app(self.registry)
        self._lock = threading.Lock()  # one render at a time; cache hits never take it
        self._rendered = _Rendered(key=object())  # matches no generation

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING")
        if query and "name[]" in parse_qs(query):
            return self._filtered(environ, start_response)
        headers, body = self.render(environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"))
        start_response("200 OK", headers)
        return [body]

    def render(
        self, accept: str | None = None, accept_encoding: str | None = None
    ) -> tuple[Headers, bytes]:
        """(headers, body) for these request headers, as `make_wsgi_app` would answer."""
        encoder, content_type = choose_encoder(accept)  # type: ignore[arg-type]
        compress = gzip_accepted(accept_encoding)  # type: ignore[arg-type]
        headers = [("Content-Type", content_type)]
        if compress:
            headers.append(("Content-Encoding", "gzip"))
        part = self._part(encoder, content_type, compress)
        if part is None:  # not cacheable: all of it, fresh
            body = encoder(self.registry)
            return headers, gzip.compress(body) if compress else body
        fresh = encoder(self._fresh)  # ends with the format's trailer (# EOF)
        if isinstance(part, bytes):
            return headers, part + fresh
        compressor = part.compressor.copy()
        return headers, part.head + compressor.compress(fresh) + compressor.flush()

    def _part(self, encoder: Encoder, content_type: str, compress: bool) -> bytes | _Gzipped | None:
        key = self._generation()
        rendered = self._rendered
        if rendered.key == key:
            found = (rendered.gzipped if compress else rendered.plain).get(content_type)
            if found is not None:
                return found
        with self._lock:
            key = self._generation()  # the newest, read before rendering
            if self._rendered.key != key:
                self._rendered = _Rendered(key)
            rendered = self._rendered
            plain = rendered.plain.get(content_type)
            if plain is None:
                if len(rendered.plain) >= MAX_VARIANTS:
                    return None
                # Without what the format ends every exposition with (OpenMetrics' # EOF),
                # so that the fresh part can follow.
                output, trailer = encoder(self._cached), encoder(_EMPTY)
                if not output.endswith(trailer):
                    return None
                plain = rendered.plain[content_type] = output[: len(output) - len(trailer)]
            if not compress:
                return plain
            gzipped = rendered.gzipped.get(content_type)
            if gzipped is None:
                compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip, as gzip.compress
                head = compressor.compress(plain) + compressor.flush(zlib.Z_SYNC_FLUSH)
                gzipped = rendered.gzipped[content_type] = _Gzipped(head, compressor)
            return gzipped
