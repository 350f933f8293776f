"""`python -m services.loadtest ...` runs `meridian loadtest ...`."""

import sys

from .cli import main

sys.exit(main())
