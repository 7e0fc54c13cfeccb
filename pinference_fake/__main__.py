"""``python -m pinference_fake``: same as the ``pinference-fake`` command."""

import sys

from .cli import main

sys.exit(main())
