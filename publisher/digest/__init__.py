"""Email digests: each subscriber's new posts, rendered from templates, sent exactly once.

The pipeline, one module per step; the pure steps first, I/O at the edges:

* :mod:`~publisher.digest.period`: which scheduled digest it is and its key (pure);
* :mod:`~publisher.digest.select`: which posts a subscriber gets, grouped (pure);
* :mod:`~publisher.digest.plan`: every due subscriber's selection for a period (pure);
* :mod:`~publisher.digest.views`: what templates see of posts (reads post bodies only);
* :mod:`~publisher.digest.filling`: a digest with holes for each reader's values (pure);
* :mod:`~publisher.digest.slots`: whether the templates let readers be filled in;
* :mod:`~publisher.digest.render`: subject, HTML and text from Jinja2 templates;
* :mod:`~publisher.digest.wrap`: HTML lines refilled for the message (pure);
* :mod:`~publisher.digest.message`: the MIME message and its headers, as bytes;
* :mod:`~publisher.digest.webcopy`: the "view in browser" page, written to the output;
* :mod:`~publisher.digest.report`: what one send did (:class:`SendReport`);
* :mod:`~publisher.digest.deliver`: the sender threads: claim, hand over, record;
* :mod:`~publisher.digest.send`: the ledger-driven run: plan, deliver, finish;
* :mod:`~publisher.digest.preview`: one subscriber's digest, never sent or recorded;
* :mod:`~publisher.cli.digest`: ``publisher digest preview|send|status|resolve``.

No module here but :mod:`~publisher.digest.deliver` hands a message to a backend.
"""
