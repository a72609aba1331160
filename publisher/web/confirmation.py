"""The confirmation email of double opt-in: "click here to confirm your subscription".

Pure: the caller gives the rendered templates' environment, the link and the
time, and sends the message through a backend. Headers reuse the digest's
checks (no CR/LF can reach a header) and its From address.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import jinja2

from publisher.config import Config
from publisher.mail.headers import POLICY, address_header, mail_host, sender, subject_header
from publisher.web.labels import labels_for

__all__ = ["HTML_TEMPLATE", "TEXT_TEMPLATE", "confirmation_message"]

TEXT_TEMPLATE = "confirm_email.txt.j2"
HTML_TEMPLATE = "confirm_email.html.j2"


def confirmation_message(
    config: Config,
    env: jinja2.Environment,
    *,
    email: str,
    name: str,
    confirm_url: str,
    now: datetime,
) -> EmailMessage:
    """The message asking ``email`` to confirm; its link is ``confirm_url``."""
    labels = labels_for(config.site.language)
    values = {
        "site": config.site,
        "labels": labels,
        "email": email,
        "name": name,
        "confirm_url": confirm_url,
    }
    text = env.get_template(TEXT_TEMPLATE).render(values)
    html = env.get_template(HTML_TEMPLATE).render(values)
    message = EmailMessage(policy=POLICY)
    message["From"] = sender(config)
    # Made by the digest's own header code and stored as made: the mail library
    # decodes an encoded word in a name while it parses, and would write the
    # line break hidden in one straight into the header.
    message.set_raw("To", address_header(name, email).lstrip())
    message.set_raw(
        "Subject", subject_header(labels["email_subject"].format(site=config.site.title)).lstrip()
    )
    message["Date"] = format_datetime(now.astimezone(config.site.timezone))
    # A new id every time: each confirmation is a message of its own.
    message["Message-ID"] = make_msgid("confirm", domain=mail_host(config))
    # Asks vacation responders not to answer (RFC 3834).
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, subtype="plain", charset="utf-8", cte="base64")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
    return message
