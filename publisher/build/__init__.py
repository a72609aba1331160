"""``publisher build``: the pipeline from ``posts/`` to every feed file on disk.

:mod:`.pipeline` reads like the pipeline (read, plan, render, write);
:mod:`.sources` finds and reads post files through :mod:`.cache`, the
in-memory cache whose files :mod:`.cachefile` encodes and writes;
:mod:`.plan` keeps the last build's plan and decides when it still holds;
:mod:`.targets` fingerprints the files a build makes and writes the changed
ones; :mod:`.render` renders the bodies and makes those files' bytes;
:mod:`.workers` fans work out to forked processes; :mod:`.output` writes
files atomically inside the output folder; :mod:`.reader` reads the posts
for the digest and the web forms without building.

A build never writes outside ``paths.output`` and ``paths.cache``, and nothing
here sends mail or touches the store.
"""
