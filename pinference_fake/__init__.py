"""A realistic fake Pinference (OpenAI-compatible) server, standard library only.

Used by the demo, the integration tests and the benchmarks::

    with FakePinference() as fake:
        fake.set_fault("list", Fault(status=503, retry_after="2", times=1))
        requests.get(fake.base_url + "/models", timeout=5)  # 503, then 200 next time
"""

from .catalog import default_catalog, generate_catalog, load_catalog
from .faults import Fault
from .recording import RecordedRequest
from .server import FakePinference

# The earlier spellings, still used by tests and benchmarks outside the core.
default_catalogue = default_catalog
generate_catalogue = generate_catalog
load_catalogue = load_catalog

__all__ = [
    "FakePinference",
    "Fault",
    "RecordedRequest",
    "default_catalog",
    "default_catalogue",
    "generate_catalog",
    "generate_catalogue",
    "load_catalog",
    "load_catalogue",
]
