"""``python -m devstack.bench`` (``make bench``)."""

import sys

from .cli import main

sys.exit(main())
