"""``python -m publisher``: the same command line as the ``publisher`` script."""

from publisher.cli import main

main()
