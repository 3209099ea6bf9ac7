"""``python -m segkit``: the same as the ``segkit`` command (torchrun uses this form)."""

import sys

from segkit.cli import main

sys.exit(main())
