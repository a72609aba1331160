"""``publisher run``: the long-running process and what keeps it honest.

:mod:`.runner` watches, rebuilds, publishes on time and sends digests on the
schedule; :mod:`.watch` turns file events into settled rebuilds;
:mod:`.catchup` decides, free of I/O, whether a missed digest is sent late or
skipped; :mod:`.lock` keeps one process per state folder; :mod:`.status` and
:mod:`.runlog` record what happened for ``publisher status`` and the logs.
"""
