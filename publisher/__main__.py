"""``python -m publisher``: the same command line as the ``publisher`` script."""

from publisher.cli.main import main

main()
