"""Say what to install, in one line, when the exporter was installed without its extra.

`pip install llm-pinference` (what `llm install` does for the plugin) leaves out
prometheus_client and PyYAML; `pip install 'llm-pinference[exporter]'` brings them. The
package imports this module before anything that needs them. Run as the command (or with
`python -m`), a missing extra is one line and exit status 2, like any other bad setup;
imported as a library, it is an ImportError with the same text.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec

NEEDS = ("prometheus_client", "yaml")
MISSING = "the exporter needs its extra: pip install 'llm-pinference[exporter]'"


def _run_as_command() -> bool:
    argv0 = sys.argv[0] if getattr(sys, "argv", None) else ""
    # `python -m pkg` imports the package while sys.argv[0] is still "-m"
    return argv0 == "-m" or argv0.replace("\\", "/").rpartition("/")[2].startswith(
        "pinference-exporter"
    )


def check() -> None:
    if all(find_spec(name) is not None for name in NEEDS):
        return
    if _run_as_command():
        print(f"pinference-exporter: error: {MISSING}", file=sys.stderr)
        raise SystemExit(2)
    raise ImportError(MISSING)


check()
