"""``publisher run``: the long-running process and what keeps it honest.

:mod:`.runner` is the process: its life cycle, signals, and the wiring of the
jobs (each job class is a :class:`.jobs.Jobs`); :mod:`.build_jobs` rebuilds on save
and publishes future posts on time; :mod:`.websub_jobs` sends the WebSub pings;
:mod:`.digest_jobs` sends digests on the schedule, catches up after downtime
and retries; :mod:`.watch` turns file events into settled rebuilds.
:mod:`.catchup` decides, free of I/O, whether a missed digest is sent late or
skipped, and :mod:`.plans`, as free of I/O, when the next publish or retry
falls due; :mod:`.lock` keeps one process per state folder; :mod:`.status` and
:mod:`.runlog` record what happened for ``publisher status`` and the logs.

Nothing here builds a feed or sends a message itself: the jobs call
:mod:`publisher.build` and :mod:`publisher.digest`.
"""
