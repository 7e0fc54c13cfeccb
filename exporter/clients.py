"""The API clients of the probes: one per thread (a `requests.Session` is not
thread-safe), all with the account's credentials and CA file and the probe timeout."""

from __future__ import annotations

from llm_pinference.core.client import PinferenceClient

from .config import AccountConfig, ExporterConfig

MAX_CONNECT_TIMEOUT = 3.05


def client_timeouts(timeout: float) -> tuple[float, float]:
    """(connect, read) timeouts for the client from the probe timeout.

    The wait for the answer gets the whole probe timeout, so an answer within it counts as
    a success; connecting gets at most min(3.05s, half of it) more. The client also bounds
    a body that trickles in to connect + read in total.
    """
    return min(MAX_CONNECT_TIMEOUT, timeout / 2), timeout


def probe_client(config: ExporterConfig, account: AccountConfig) -> PinferenceClient:
    """A client whose every exchange ends within the probe timeout, however slowly sent."""
    connect, read = client_timeouts(config.timeout)
    return PinferenceClient(
        account.settings,
        connect_timeout=connect,
        read_timeout=read,
        total_timeout=config.timeout,
        max_bytes=config.max_response_bytes,
        ca_file=account.ca_file,
    )
