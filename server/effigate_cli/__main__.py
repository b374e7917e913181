"""``python -m effigate_cli``: the ``effigate`` command."""

import sys

from effigate_cli.main import main

sys.exit(main())
