"""``python -m imdbfast``: the command line (see imdbfast/cli.py)."""

import sys

from .cli import main

sys.exit(main())
