"""The ``publisher`` command line: one module per command group, no logic of its own.

:mod:`.main` is the group, the shared state and the exit codes; each command
group's module parses arguments, calls the capability that does the work and
prints the result. ``publisher.cli:main`` (the console script of earlier
versions) still names the entry point.
"""

from publisher.cli.main import main

__all__ = ["main"]
