"""A realistic fake Pinference (OpenAI-compatible) server, standard library only.

Used by the demo, the integration tests and the benchmarks::

    with FakePinference() as fake:
        fake.set_fault("list", Fault(status=503, retry_after="2", times=1))
        requests.get(fake.base_url + "/models", timeout=5)  # 503, then 200 next time
"""

from .catalogue import default_catalogue, generate_catalogue, load_catalogue
from .faults import Fault
from .recording import RecordedRequest
from .server import FakePinference

__all__ = [
    "FakePinference",
    "Fault",
    "RecordedRequest",
    "default_catalogue",
    "generate_catalogue",
    "load_catalogue",
]
