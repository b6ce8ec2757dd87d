"""``python -m simval`` runs the ``simval`` command (see simval.cli)."""

import sys

from simval.cli import main

sys.exit(main())
