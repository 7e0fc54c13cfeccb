"""``python -m llm_pinference.fake``: same as the ``pinference-fake`` command."""

import sys

from .cli import main

sys.exit(main())
