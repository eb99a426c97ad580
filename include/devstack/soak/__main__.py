"""``python -m devstack.soak`` (``make soak``)."""

import sys

from .cli import main

sys.exit(main())
