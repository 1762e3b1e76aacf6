"""``python -m rlprune.cli``: the same as the ``rlprune`` command."""

import sys

from . import main

sys.exit(main())
