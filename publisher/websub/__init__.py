"""WebSub: tell the configured hubs when a feed changed (W3C WebSub, publisher side).

:mod:`.queue` keeps the pings still to send in ``<paths.state>/websub.json`` and
decides, purely, which are due and when a failed one is tried again; :mod:`.ping`
sends one ping over HTTP; :mod:`.publish` ties them to a build's written files.
"""

from publisher.websub.publish import Report, changed_topics, queue_changed, send_due

__all__ = ["Report", "changed_topics", "queue_changed", "send_due"]
