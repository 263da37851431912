"""``python -m videomama``: see ``videomama.cli``."""

import sys

from .cli import main

sys.exit(main())
