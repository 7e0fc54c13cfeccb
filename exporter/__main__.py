"""`python -m pinference_exporter`: the same as the pinference-exporter command."""

import sys

from .cli import main

sys.exit(main())
