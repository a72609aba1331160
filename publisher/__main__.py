"""``python -m publisher``: the same command line as the ``publisher`` script.

No logic of its own: it only calls :func:`publisher.cli.main.main`.
"""

from publisher.cli.main import main

main()
