"""House rule: the core pulls in neither llm nor prometheus_client (nor requests at import)."""

import subprocess
import sys

CHECK = """
import sys
import llm_pinference, llm_pinference.settings, llm_pinference.errors
import llm_pinference.models, llm_pinference.client, llm_pinference.fake
heavy = [m for m in ("llm", "prometheus_client", "requests") if m in sys.modules]
print(",".join(heavy))
"""


def test_core_import_is_light():
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_client_use_does_not_import_llm(fake):
    from llm_pinference.client import PinferenceClient
    from llm_pinference.settings import Settings

    code = (
        "import sys\n"
        "from llm_pinference.client import PinferenceClient\n"
        "from llm_pinference.settings import Settings\n"
        f"PinferenceClient(Settings(base_url={fake.base_url!r})).list_models()\n"
        "print('llm' in sys.modules, 'prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"]
    assert PinferenceClient(Settings(base_url=fake.base_url)).list_models().models
