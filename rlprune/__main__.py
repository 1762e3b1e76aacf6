"""``python -m rlprune``: the same as the ``rlprune`` command."""

import sys

from .cli import main

sys.exit(main())
