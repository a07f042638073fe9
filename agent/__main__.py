"""`python -m gpulse` is the `gpulse` command."""

import sys

from .cli import main

sys.exit(main())
