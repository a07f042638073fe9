"""`python -m gpulse` is the `gpulse` command."""

from .cli import entry

entry()
