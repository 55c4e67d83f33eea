"""``python -m dispatch`` runs the ``homecare`` command."""

import sys

from dispatch.cli import main

sys.exit(main())
