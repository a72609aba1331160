"""``publisher build``: the pipeline from ``posts/`` to every feed file on disk.

:mod:`.pipeline` reads like the pipeline (read, plan, render, write);
:mod:`.sources` finds and reads post files through :mod:`.cache`;
:mod:`.plan` keeps the last build's plan and decides when it still holds;
:mod:`.workers` fans work out to forked processes; :mod:`.output` writes
files atomically inside the output folder; :mod:`.reader` reads the posts
for the digest and the web forms without building.
"""
