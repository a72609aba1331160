"""The Postmark backend: messages handed over through Postmark's batch API, up to 500 a request.

``POST {base_url}/email/batch`` takes a JSON array of messages and answers
HTTP 200 with one result per message, in order; ``ErrorCode`` 0 means that
message was accepted, and its ``MessageID`` is Postmark's id for it (webhooks
name it). :meth:`PostmarkBackend.send_batch` returns one :class:`Outcome` per
message, in the order given:

=========================================  =====================================================
what happened                              outcome
=========================================  =====================================================
200, ErrorCode 0                           ``sent``, with Postmark's MessageID
200, ErrorCode 406 (inactive recipient)    ``failed``: Postmark will not send to this address
200, ErrorCode 300 (invalid email request) ``failed``, unless the reason is the From address or
                                           sender signature (the account's, not the reader's):
                                           ``retry``
200, any other ErrorCode                   ``retry``: not accepted; try again in a later run
429, 500, 503 (and other 5xx)              Postmark did not take the request: wait (exponential
                                           backoff, or ``Retry-After``), try again up to
                                           ``max_retries`` times, then ``retry``
502, 504                                   a gateway in between failed or gave up waiting for
                                           Postmark, which may have taken it: ``uncertain``
no connection (refused, connect timeout)   nothing was sent: retried like a 503, then ``retry``
request body not fully written             nothing usable arrived: retried like a 503
timeout or lost connection after the       ``uncertain``: it may have been accepted; never
request went out (read timeout, reset)     retried
200 with a body that cannot be read        ``uncertain``
422 whose ErrorCode is 300 or 406          every message of the request ``failed`` (a 300
                                           about the sender stops the run instead)
401, 403, any other 422 or status          :class:`BatchStopped` (a SendError): the backend
                                           cannot work (bad token, account may not send,
                                           invalid request); the run stops
=========================================  =====================================================

Postmark's batch API offers no idempotency key: a request sent twice is two
requests, and every message in it goes out twice. So a request whose answer
was lost is never sent again here; its messages are ``uncertain``, left for an
operator (or a reconciliation against Postmark's message search) to resolve.
Only answers that say the request was not taken, and failures to connect,
are retried. (Postmark documents a 500 as its failure to process the request,
"in most cases the message is lost"; retrying it is the one case that could,
rarely, send twice.)

Once a request gives up after its retries, the rest of the batch is not tried
(``retry``): the next request would meet the same throttle or outage.

A ``limiter`` (:mod:`.ratelimit`) is asked for ``n`` sends before each request
of ``n`` messages, retries included. The token travels only over HTTPS (plain
HTTP is allowed to a loopback address, for tests).

Postmark builds the MIME message itself, so what is handed over is the JSON of
:func:`postmark_message`: addresses, subject, the text and HTML bodies, the
headers that matter. The envelope sender is Postmark's own (bounces reach us
through its webhooks), so a prepared message's VERP sender is not used, and a
DKIM signature made here would not survive: Postmark signs for the domain.

API reference: https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails
and https://postmarkapp.com/developer/api/overview (response and error codes).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email import policy
from email.contentmanager import raw_data_manager
from email.headerregistry import BaseHeader
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

from publisher import __version__
from publisher.errors import (
    PermanentSendError,
    SendError,
    TemporarySendError,
    UncertainSendError,
)
from publisher.mail.base import BatchStopped, Message, Outcome, Status
from publisher.mail.prepared import PreparedMessage
from publisher.mail.ratelimit import RateLimiter

__all__ = [
    "MAX_BATCH",
    "BatchStopped",
    "Outcome",
    "PostmarkBackend",
    "outcome_of",
    "postmark_message",
    "retry_after",
]

MAX_BATCH = 500  # messages in one batch request (Postmark's limit)
MAX_REQUEST_BYTES = 50_000_000  # one batch request's JSON, attachments included
MAX_MESSAGE_BYTES = 10_000_000  # one message's JSON (Postmark's limit for a single email)
MAX_BACKOFF = 60.0  # seconds; also the longest Retry-After honoured
MAX_ERROR = 500  # characters of an error line kept for the ledger

# ErrorCodes that say this message can never go as it is: 300 invalid email request
# (bad address, no body, too many recipients), 406 inactive recipient (it bounced
# hard, complained, or was suppressed at Postmark).
INACTIVE = 406
FAILED_CODES = frozenset({300, INACTIVE})
# A 300 about the From address is the account's problem, and every message of the
# run gets it; failing them all would mark every reader's address as bad.
_ABOUT_SENDER = re.compile(r"'from'|\bfrom address|sender signature", re.IGNORECASE)

# --- messages to JSON (pure) ----------------------------------------------------------------

# Headers that become fields of their own (From, To, Cc, Bcc, Subject, Reply-To) are
# read apart; these go in Headers as they are; Postmark writes every other one itself.
_KEPT_HEADERS = frozenset({"message-id", "in-reply-to", "references", "auto-submitted"})
_KEPT_PREFIXES = ("list-", "x-")
_FIELDS = frozenset({"from", "to", "cc", "bcc", "reply-to", "subject"})
_LINE_BREAK = re.compile(r"[\r\n]+[ \t]*")
_DECODER = policy.default  # its header registry turns encoded words into Unicode


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR else line[: MAX_ERROR - 1] + "…"


def _parsed(message: Message) -> tuple[EmailMessage, tuple[str, ...]]:
    """The message to read, and (prepared message) its envelope recipients.

    A prepared message is parsed with compat32, which keeps header values as
    they came: policy.default parses a header again every time it is read
    (finding the body alone reads Content-Type a dozen times), 3.5 ms a digest
    against 0.3 ms. The few headers used are decoded here, once each.
    """
    if isinstance(message, PreparedMessage):
        # LF line ends: the bodies read back the same as from an EmailMessage.
        data = message.data(linesep="\n")
        parsed = BytesParser(EmailMessage, policy=policy.compat32).parsebytes(data)
        if not isinstance(parsed, EmailMessage):  # pragma: no cover - _class makes one
            raise PermanentSendError("message cannot be parsed")
        return parsed, message.recipients
    return message, ()


def _unfolded(value: object) -> str:
    """A raw header value on one line; 8-bit octets (kept as surrogates) read as UTF-8."""
    text = _LINE_BREAK.sub(" ", str(value)).strip()
    if not text.isascii():
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def _text(name: str, value: object) -> str:
    """An unstructured header's value in Unicode, on one line."""
    text = _unfolded(value)
    if isinstance(value, BaseHeader) or "=?" not in text:  # decoded already, or nothing to do
        return text
    return _unfolded(_DECODER.header_factory(name, text))


@functools.lru_cache(maxsize=256)  # From and Reply-To are the same for a whole run
def _mailboxes(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    return tuple(
        (str(address), address.addr_spec)
        for address in _DECODER.header_factory(name, raw).addresses
        if address.username
    )


def _addresses(values: list[object], name: str) -> list[tuple[str, str]]:
    """(as written for Postmark, address) of each mailbox in these ``name`` headers.

    Display names come decoded, quoted where they must be: ``"Doe, Jane" <j@example.com>``.
    """
    found: list[tuple[str, str]] = []
    for value in values:
        parsed = getattr(value, "addresses", None)
        if parsed is not None:  # set on an EmailMessage: already parsed
            found.extend((str(a), a.addr_spec) for a in parsed if a.username)
        else:
            found.extend(_mailboxes(name, _unfolded(value)))
    return found


def _body(message: EmailMessage, subtype: str) -> str | None:
    """The text of the message's text/``subtype`` body, if it has one."""
    part = message.get_body((subtype,))
    if part is None or part.get_payload() is None:  # a message with headers only
        return None
    return str(part.get_content(content_manager=raw_data_manager))


def _attachment(part: EmailMessage) -> dict[str, str]:
    data = part.get_payload(decode=True)
    attachment = {
        "Name": _text("filename", part.get_filename() or "attachment"),
        "Content": base64.b64encode(data if isinstance(data, bytes) else b"").decode("ascii"),
        "ContentType": part.get_content_type(),
    }
    if part["Content-ID"] is not None:
        attachment["ContentID"] = "cid:" + _unfolded(part["Content-ID"]).strip("<>")
    return attachment


def postmark_message(message: Message, *, message_stream: str) -> dict[str, Any]:
    """The JSON object Postmark's API takes for ``message`` (pure; nothing is sent).

    Header values are decoded to Unicode (Postmark encodes them again); the
    text/plain and text/html bodies become TextBody and HtmlBody; other parts
    become Attachments. Message-ID, In-Reply-To, References, Auto-Submitted and
    every List-* and X-* header go in ``Headers``, in their order; Reply-To is
    the ReplyTo field. A prepared message's envelope recipients that are not in
    its To or Cc go in Bcc. Raises PermanentSendError for a message Postmark
    could never take: no From, no recipient, no body.
    """
    parsed, envelope_to = _parsed(message)
    fields: dict[str, list[object]] = {}
    kept: list[dict[str, str]] = []
    for name, value in parsed.raw_items():
        lower = name.lower()
        if lower in _FIELDS:
            fields.setdefault(lower, []).append(value)
        elif lower in _KEPT_HEADERS or lower.startswith(_KEPT_PREFIXES):
            kept.append({"Name": name, "Value": _text(name, value)})

    senders = _addresses(fields.get("from", []), "From")
    if not senders:
        raise PermanentSendError("message has no From address")
    to, cc = _addresses(fields.get("to", []), "To"), _addresses(fields.get("cc", []), "Cc")
    bcc = _addresses(fields.get("bcc", []), "Bcc")
    visible = {address.lower() for _, address in to + cc + bcc}
    bcc += [(r, r) for r in dict.fromkeys(envelope_to) if r and r.lower() not in visible]
    if not to + cc + bcc:
        raise PermanentSendError("message has no recipient (To, Cc or Bcc)")

    result: dict[str, Any] = {"From": senders[0][0]}
    for field, addresses in (("To", to), ("Cc", cc), ("Bcc", bcc)):
        if addresses:
            result[field] = ", ".join(written for written, _ in addresses)
    if "subject" in fields:
        result["Subject"] = _text("Subject", fields["subject"][0])
    reply_to = _addresses(fields.get("reply-to", []), "Reply-To")
    if reply_to:
        result["ReplyTo"] = ", ".join(written for written, _ in reply_to)

    text, html = _body(parsed, "plain"), _body(parsed, "html")
    if not (text or html):
        raise PermanentSendError(f"{(to + cc + bcc)[0][1]}: message has no text or HTML body")
    if text is not None:
        result["TextBody"] = text
    if html is not None:
        result["HtmlBody"] = html
    if kept:
        result["Headers"] = kept
    attachments = [_attachment(part) for part in parsed.iter_attachments()]
    if attachments:
        result["Attachments"] = attachments
    result["MessageStream"] = message_stream
    return result


def _encoded(message: Message, message_stream: str) -> bytes:
    """The message's JSON as UTF-8 bytes; raises PermanentSendError if it cannot be made."""
    data = postmark_message(message, message_stream=message_stream)
    try:
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as exc:  # undecodable bytes in a header, kept as surrogates
        raise PermanentSendError(f"message cannot be written as JSON: {exc.reason}") from exc
    if len(payload) > MAX_MESSAGE_BYTES:
        raise PermanentSendError(
            f"message is {len(payload):,} bytes as JSON, more than Postmark's {MAX_MESSAGE_BYTES:,}"
        )
    return payload


# --- answers to outcomes (pure) -------------------------------------------------------------


def _code(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _refused_for_good(code: int, text: str) -> bool:
    """Whether ErrorCode ``code`` says this message itself can never go."""
    return code in FAILED_CODES and not (code == 300 and _ABOUT_SENDER.search(text))


def outcome_of(result: Mapping[str, object]) -> Outcome:
    """One message's outcome from its entry in the batch answer (see the module docstring)."""
    code = _code(result.get("ErrorCode"))
    if code is None:
        return Outcome("uncertain", error=f"postmark: unreadable result {_one_line(str(result))}")
    if code == 0:
        message_id = result.get("MessageID")
        return Outcome("sent", provider_id=message_id if isinstance(message_id, str) else "")
    text = _one_line(str(result.get("Message", "")))
    error = _one_line(f"postmark {code}: {text}")
    status: Status = "failed" if _refused_for_good(code, text) else "retry"
    return Outcome(status, error=error, code=code, gone=code == INACTIVE)


def retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds, or an HTTP date); None if none."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _api_error(response: httpx.Response) -> tuple[int | None, str]:
    """(ErrorCode, Message) of an error answer, as far as it can be read."""
    try:
        body = response.json()
    except ValueError:
        return None, _one_line(response.text[:MAX_ERROR]) or response.reason_phrase
    if not isinstance(body, dict):
        return None, _one_line(str(body))
    return _code(body.get("ErrorCode")), _one_line(str(body.get("Message", "")))


def _chunks(
    payloads: list[tuple[int, bytes]], size: int, limit: int
) -> Iterator[list[tuple[int, bytes]]]:
    """Runs of at most ``size`` payloads whose JSON array stays within ``limit`` bytes."""
    chunk: list[tuple[int, bytes]] = []
    total = 2  # the brackets
    for item in payloads:
        extra = len(item[1]) + 1  # the comma
        if chunk and (len(chunk) >= size or total + extra > limit):
            yield chunk
            chunk, total = [], 2
        chunk.append(item)
        total += extra
    if chunk:
        yield chunk


# --- the backend ----------------------------------------------------------------------------

# The request never (completely) left: nothing can have been accepted, so it may go again.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.ProxyError,
    httpx.LocalProtocolError,
)
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class _Stop(Exception):
    """A request's answer says no request can work: the batch stops."""


class PostmarkBackend:
    """Sends through Postmark's batch API as ``send_batch`` (many) or ``send`` (one).

    A context manager: entering opens one HTTP client (its connections are
    kept alive from request to request), leaving closes it. ``send`` sets
    ``last_provider_id`` to the accepted message's Postmark MessageID; callers
    that want ids per message use ``send_batch``, whose outcomes carry them.
    """

    name = "postmark"

    def __init__(
        self,
        token: str,
        *,
        base_url: str = "https://api.postmarkapp.com",
        message_stream: str = "broadcast",
        batch_size: int = MAX_BATCH,
        timeout: float = 30.0,
        limiter: RateLimiter | None = None,
        max_retries: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Check the settings; no connection is made yet.

        Raises SendError for an empty token or a URL that would carry it in
        clear, ValueError for a batch size outside 1..500 or negative retries.
        """
        if not token.strip():
            raise SendError("postmark: the server token is empty")
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            raise SendError(f"postmark: invalid API URL {base_url!r}: {exc}") from exc
        if url.scheme not in ("https", "http") or not url.host:
            raise SendError(f"postmark: the API URL must be https://host, got {base_url!r}")
        if url.scheme == "http" and url.host not in _LOOPBACK:
            raise SendError(
                f"postmark: refusing {base_url}: the server token would cross the network"
                " in clear; use https"
            )
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH}, got {batch_size}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.endpoint = base_url.rstrip("/") + "/email/batch"
        self.message_stream = message_stream
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.limiter = limiter
        self.last_provider_id = ""
        self._token = token
        self._timeout = timeout
        self._backoff = backoff
        self._sleep = sleep
        self._client: httpx.Client | None = None

    def __enter__(self) -> PostmarkBackend:
        self._client = httpx.Client(
            headers={
                "X-Postmark-Server-Token": self._token,
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": f"publisher/{__version__}",
            },
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,  # a redirect would repeat the token to another host
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client and its connections."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # --- sending ---------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Send one message; raise what the Backend protocol says its outcome means.

        Returns when accepted, with ``last_provider_id`` set to its MessageID.
        """
        self.last_provider_id = ""
        [outcome] = self.send_batch([message])
        if outcome.status == "sent":
            self.last_provider_id = outcome.provider_id
            return
        error = {
            "failed": PermanentSendError,
            "retry": TemporarySendError,
            "uncertain": UncertainSendError,
        }[outcome.status]
        raise error(outcome.error)

    def send_batch(self, messages: Sequence[Message]) -> list[Outcome]:
        """Hand ``messages`` over in as few requests as the limits allow; one outcome each.

        Raises :class:`BatchStopped` (carrying every message's outcome so far)
        when Postmark says no request can work; see the module docstring.
        """
        client = self._client
        if client is None:
            raise RuntimeError("PostmarkBackend.send_batch called outside its `with` block")
        outcomes: list[Outcome | None] = [None] * len(messages)
        payloads: list[tuple[int, bytes]] = []
        for index, message in enumerate(messages):
            try:
                payloads.append((index, _encoded(message, self.message_stream)))
            except PermanentSendError as exc:
                outcomes[index] = Outcome("failed", error=_one_line(str(exc)))
        given_up = ""
        for chunk in _chunks(payloads, self.batch_size, MAX_REQUEST_BYTES):
            if given_up:
                results = [Outcome("retry", error=given_up)] * len(chunk)
            else:
                try:
                    results, given_up = self._request(client, [p for _, p in chunk])
                except _Stop as stop:
                    error = str(stop)
                    done = [o or Outcome("retry", error=error) for o in outcomes]
                    raise BatchStopped(error, done) from stop.__cause__
            for (index, _), result in zip(chunk, results, strict=True):
                outcomes[index] = result
        return [o or Outcome("retry", error="not sent") for o in outcomes]

    def _delay(self, attempt: int) -> float:
        return min(self._backoff * 2.0 ** (attempt - 1), MAX_BACKOFF)

    def _request(self, client: httpx.Client, payloads: list[bytes]) -> tuple[list[Outcome], str]:
        """One batch request, retried while Postmark says it did not take it.

        Returns the outcomes and, when it gave up after its retries, why (the
        rest of the batch is then not tried). Raises _Stop when no request can work.
        """
        n = len(payloads)
        body = b"[" + b",".join(payloads) + b"]"
        last = "no attempt made"
        delay = 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(delay)
            delay = self._delay(attempt + 1)
            if self.limiter is not None:
                self.limiter.acquire(n)
            try:
                response = client.post(self.endpoint, content=body)
            except _NOT_SENT as exc:
                last = f"postmark: cannot reach {self.endpoint}: {type(exc).__name__}: {exc}"
                continue
            except httpx.UnsupportedProtocol as exc:
                raise _Stop(f"postmark: {self.endpoint}: {exc}") from exc
            except httpx.TransportError as exc:
                # The whole request went out; Postmark may have taken it. Never sent again.
                error = (
                    f"postmark: {type(exc).__name__} after the request was sent ({exc}):"
                    " it may have been accepted; not retried"
                )
                return [Outcome("uncertain", error=_one_line(error))] * n, ""
            status = response.status_code
            if status == 200:
                return self._accepted(response, n), ""
            code, text = _api_error(response)
            said = f"HTTP {status}" + (f" (ErrorCode {code})" if code is not None else "")
            if status in (502, 504):
                error = f"postmark: {said} from a gateway: the request may have been accepted"
                return [Outcome("uncertain", error=_one_line(f"{error}: {text}"))] * n, ""
            if status == 429 or 500 <= status < 600:
                last = _one_line(f"postmark: {said}: {text}")
                wait = retry_after(response.headers.get("Retry-After"), now=datetime.now(UTC))
                if wait is not None:
                    delay = min(wait, MAX_BACKOFF)
                continue
            if status in (401, 403):
                raise _Stop(_one_line(f"postmark: the server token was refused ({said}): {text}"))
            if status == 422 and code is not None and _refused_for_good(code, text):
                return [
                    Outcome(
                        "failed",
                        error=_one_line(f"postmark {code}: {text}"),
                        code=code,
                        gone=code == INACTIVE,
                    )
                ] * n, ""
            raise _Stop(_one_line(f"postmark: {self.endpoint} answered {said}: {text}"))
        error = f"{last} (after {self.max_retries + 1} attempts)"
        return [Outcome("retry", error=error)] * n, error

    def _accepted(self, response: httpx.Response, n: int) -> list[Outcome]:
        """The outcomes in a 200 answer; ``uncertain`` for all if it cannot be read."""
        try:
            results = response.json()
        except ValueError:
            results = None
        if (
            not isinstance(results, list)
            or len(results) != n
            or not all(isinstance(r, dict) for r in results)
        ):
            error = (
                "postmark: HTTP 200 with an unreadable answer: the messages may have been accepted"
            )
            return [Outcome("uncertain", error=error)] * n
        return [outcome_of(result) for result in results]
