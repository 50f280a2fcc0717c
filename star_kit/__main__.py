"""``python -m star_kit``: the ``star-kit`` command."""

import sys

from .cli import main

sys.exit(main())
