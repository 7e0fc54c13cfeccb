"""`make demo`: the whole project against the fake Pinference on 127.0.0.1, ending by itself.

Nothing here needs an account or the internet. Every step prints what a user would type.
"""

from __future__ import annotations

import sys

from llm_pinference.client import PinferenceClient
from llm_pinference.fake import FakePinference
from llm_pinference.settings import Settings


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def demo_client(fake: FakePinference) -> None:
    step("The core client: GET /models and GET /models/{id}")
    with PinferenceClient(Settings(base_url=fake.base_url)) as client:
        listed = client.list_models()
        print(f"{len(listed.models)} models (skipped {listed.skipped} unusable entries)")
        for m in listed.models:
            ctx = f"{m.context_window:,} ctx" if m.context_window else ""
            print(f"  {m.id:<45} {m.display_name or '':<32} {ctx}")
        model = client.get_model(listed.models[0].id)
        print(f"get {model.id}: owner={model.owned_by} tools={model.supports_tools}")


def main() -> int:
    with FakePinference() as fake:
        print(f"fake Pinference serving {fake.base_url}")
        demo_client(fake)
    step("Done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
