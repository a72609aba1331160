"""A fake Postmark batch API: a real HTTP server on 127.0.0.1, in a thread of the test process.

It speaks the documented subset the Postmark backend uses::

    with FakePostmark(token="server-token") as server:
        with PostmarkBackend("server-token", base_url=server.url) as backend:
            outcomes = backend.send_batch(messages)
        assert [a.message_id for a in server.accepted] == [o.provider_id for o in outcomes]

``POST /email/batch`` with the right ``X-Postmark-Server-Token`` (else 401 and
Postmark's JSON error) and a JSON array of at most 500 messages (else 422,
ErrorCode 402 or 410) answers 200 with one result per message, in order:
ErrorCode 0 and a new MessageID (a uuid) for each message it accepts, 300
for an address it cannot parse, for a From not in ``senders`` (when set) or
for a message without a body, 406 for an address in ``inactive``, and any
code set in ``codes`` for an address.

How it misbehaves, counting requests from 1 (every POST counts):

================  ==========================================================================
``unavailable``   request numbers answered 503 (ErrorCode 100, maintenance)
``statuses``      request number -> any other HTTP status to answer it with (500, 502, 403...)
``throttle_after`` after this many accepted requests, answer 429 to the next ``throttle_for``
``retry_after``   the Retry-After header sent with each 429 (none by default)
``refuse``        request number -> (ErrorCode, Message), answered as a 422
``hang``          request numbers read, accepted (recorded), then answered only after
                  ``hang_seconds`` or when the server stops: past any client's timeout
``drop``          request numbers read, accepted (recorded), then the connection is closed
                  without an answer
================  ==========================================================================

Everything it accepted is in :attr:`FakePostmark.accepted`, once per accepted
message, so a test counts exactly what would have gone out; every request,
with its answer, is in :attr:`FakePostmark.requests`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["Accepted", "FakePostmark", "Request"]

_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
INACTIVE = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive"
    " addresses: {}. Inactive recipients are ones that have generated a hard bounce, a spam"
    " complaint, or a manual suppression."
)


@dataclass(frozen=True)
class Accepted:
    """One message the fake took, as Postmark would send it."""

    request: int  # the number of the request that carried it
    message_id: str
    to: str  # the To field as given
    recipients: tuple[str, ...]  # every address of To, Cc and Bcc
    subject: str
    headers: dict[str, str]  # the Headers array, by name
    message: dict[str, Any]  # the whole JSON object


@dataclass(frozen=True)
class Request:
    """One HTTP request the fake answered."""

    number: int
    path: str
    status: int
    messages: int  # how many messages its body held (0 if it could not be read)
    headers: dict[str, str]
    at: float = 0.0  # time.monotonic() when it was answered


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    drop: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakePostmark


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        fake = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = fake._answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        if answer.drop:
            self.close_connection = True
            return
        if answer.hang:
            fake._release.wait(fake.hang_seconds)
            self.close_connection = True
        data = json.dumps(answer.body).encode("utf-8")
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up waiting (hang) and closed the connection
            self.close_connection = True


class FakePostmark:
    """The fake API; a context manager that starts and stops its server thread."""

    def __init__(
        self,
        token: str = "server-token",
        *,
        inactive: set[str] | None = None,
        senders: set[str] | None = None,
        codes: dict[str, tuple[int, str]] | None = None,
        unavailable: set[int] | None = None,
        statuses: dict[int, int] | None = None,
        throttle_after: int | None = None,
        throttle_for: int = 0,
        retry_after: str | None = None,
        refuse: dict[int, tuple[int, str]] | None = None,
        hang: set[int] | None = None,
        drop: set[int] | None = None,
        hang_seconds: float = 5.0,
    ) -> None:
        self.token = token
        self.inactive = {a.lower() for a in inactive or ()}
        self.senders = None if senders is None else {a.lower() for a in senders}
        self.codes = {a.lower(): v for a, v in (codes or {}).items()}
        self.unavailable = set(unavailable or ())
        self.statuses = dict(statuses or {})
        self.throttle_after = throttle_after
        self.throttle_for = throttle_for
        self.retry_after = retry_after
        self.refuse = dict(refuse or {})
        self.hang = set(hang or ())
        self.drop = set(drop or ())
        self.hang_seconds = hang_seconds
        self.accepted: list[Accepted] = []
        self.requests: list[Request] = []
        self._accepted_requests = 0
        self._throttled = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- running -----------------------------------------------------------------------------

    def start(self) -> FakePostmark:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # a hanging request answers now
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FakePostmark:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start the server first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL to give the backend (``base_url``)."""
        return f"http://127.0.0.1:{self.port}"

    def to(self, address: str) -> list[Accepted]:
        """The accepted messages addressed to ``address``."""
        wanted = address.lower()
        return [a for a in self.accepted if wanted in (r.lower() for r in a.recipients)]

    # --- answering ---------------------------------------------------------------------------

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        with self._lock:
            number = len(self.requests) + 1
            answer, count = self._decide(number, path, headers, body)
            self.requests.append(
                Request(number, path, answer.status, count, headers, time.monotonic())
            )
            return answer

    def _decide(
        self, number: int, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[_Answer, int]:
        if path != "/email/batch":
            return _Answer(404, {"ErrorCode": 404, "Message": "Not found"}), 0
        if headers.get("x-postmark-server-token") != self.token:
            return _Answer(
                401, {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."}
            ), 0
        try:
            messages = json.loads(body)
        except ValueError:
            messages = None
        if not isinstance(messages, list):
            return _Answer(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."}), 0
        count = len(messages)
        if number in self.unavailable:
            return _Answer(503, {"ErrorCode": 100, "Message": "Maintenance"}), count
        if number in self.statuses:
            status = self.statuses[number]
            return _Answer(status, {"ErrorCode": status, "Message": f"HTTP {status}"}), count
        if (
            self.throttle_after is not None
            and self._accepted_requests >= self.throttle_after
            and self._throttled < self.throttle_for
        ):
            self._throttled += 1
            extra = {} if self.retry_after is None else {"Retry-After": self.retry_after}
            return _Answer(429, {"ErrorCode": 429, "Message": "Rate limit exceeded"}, extra), count
        if number in self.refuse:
            code, text = self.refuse[number]
            return _Answer(422, {"ErrorCode": code, "Message": text}), count
        if count > 500:
            return _Answer(422, {"ErrorCode": 410, "Message": "Too many batch messages."}), count
        self._accepted_requests += 1
        results = [self._result(number, m) for m in messages]
        return _Answer(200, results, hang=number in self.hang, drop=number in self.drop), count

    def _result(self, number: int, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict):
            return {"ErrorCode": 402, "Message": "Received invalid JSON input."}
        to = str(message.get("To", ""))
        fields = [str(message.get(name, "")) for name in ("To", "Cc", "Bcc")]
        recipients = tuple(address for _, address in getaddresses(fields) if address)
        sender = getaddresses([str(message.get("From", ""))])
        if not sender or not _ADDRESS.match(sender[0][1]):
            return {"ErrorCode": 300, "Message": "Invalid 'From' address."}
        if self.senders is not None and sender[0][1].lower() not in self.senders:
            return {
                "ErrorCode": 300,
                "Message": f"Invalid 'From' address: '{sender[0][1]}' is not a verified"
                " sender signature.",
            }
        if not recipients:
            return {"ErrorCode": 300, "Message": "Zero recipients specified"}
        for address in recipients:
            if not _ADDRESS.match(address):
                return {
                    "ErrorCode": 300,
                    "Message": f"Error parsing 'To': Illegal email address '{address}'."
                    " It must contain the '@' symbol.",
                }
        if not message.get("TextBody") and not message.get("HtmlBody"):
            return {
                "ErrorCode": 300,
                "Message": "Provide either email TextBody or HtmlBody or both.",
            }
        for address in recipients:
            if address.lower() in self.codes:
                code, text = self.codes[address.lower()]
                return {"ErrorCode": code, "Message": text}
        inactive = [a for a in recipients if a.lower() in self.inactive]
        if inactive:
            return {"ErrorCode": 406, "Message": INACTIVE.format(", ".join(inactive))}
        message_id = str(uuid.uuid4())
        headers = message.get("Headers") or []
        self.accepted.append(
            Accepted(
                request=number,
                message_id=message_id,
                to=to,
                recipients=recipients,
                subject=str(message.get("Subject", "")),
                headers={str(h.get("Name")): str(h.get("Value")) for h in headers},
                message=message,
            )
        )
        return {
            "ErrorCode": 0,
            "Message": "OK",
            "MessageID": message_id,
            "SubmittedAt": datetime.now(UTC).isoformat(),
            "To": to,
        }
