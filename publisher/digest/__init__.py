"""Email digests: each subscriber's new posts, rendered from templates, sent exactly once.

The pipeline, one module per step:

* :mod:`~publisher.digest.period`: which scheduled digest it is and its key;
* :mod:`~publisher.digest.select`: which posts each subscriber gets (pure);
* :mod:`~publisher.digest.render`: HTML and text bodies from Jinja2 templates;
* :mod:`~publisher.digest.message`: the MIME message and its headers;
* :mod:`~publisher.digest.webcopy`: the "view in browser" page;
* :mod:`~publisher.digest.send`: the ledger-driven send loop;
* :mod:`~publisher.cli.digest`: ``publisher digest preview|send|status|resolve``.
"""
