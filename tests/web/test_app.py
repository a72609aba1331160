"""``publisher serve`` end to end: the real server in a subprocess, spoken to over HTTP.

One server (with a real SMTP server for its confirmations) serves most tests;
each test uses addresses of its own. The time is pinned with ``--now``.
"""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import lxml.html
import pytest

from publisher.mail.tokens import make_token
from publisher.store import Store, Subscriber
from tests.conftest import Site, run_publisher
from tests.smtp_server import SmtpServer
from tests.web_server import ServeProcess, wait_for_files

SECRET = "a-test-secret-that-signs-every-link"
ENV = {"PUBLISHER_SECRET": SECRET}
NOW = "2026-11-30T09:00:00+09:00"  # a Monday, after the default 08:00 digest
BASE = "https://news.example.com"


def make_site(root: Path, **sections: Any) -> Site:
    site = Site.create(
        root,
        {
            "title": "テストサイト",
            "url": "https://example.com",
            "language": "ja",
            "email": "news@example.com",
            "timezone": "Asia/Tokyo",
        },
        **sections,
    )
    site.post(
        "2026-11-27-tech.md",
        "title: 新しい記事\ndate: 2026-11-27 10:00:00 +0900\ncategories: [Tech, 旅行]",
        "本文です。\n",
    )
    site.post(
        "2026-11-28-life.md",
        "title: Life\ndate: 2026-11-28 10:00:00 +0900\ncategories: [Life]",
    )
    site.post("2026-11-29-draft.md", "title: Draft\ndraft: true\ncategories: [Secret]")
    site.post(
        "2026-12-24-future.md",
        "title: Later\ndate: 2026-12-24 10:00:00 +0900\ncategories: [Future]",
    )
    built = site.run("--now", NOW, "build")
    assert built.returncode == 0, built.stderr
    return site


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Site:
    return make_site(
        tmp_path_factory.mktemp("web") / "site",
        digest={"backend": "smtp"},
        smtp=smtp.config(),
        server={"base_url": BASE, "subscribe_rate": 1000},
    )


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[ServeProcess]:
    with ServeProcess(site.root, env=ENV, now=NOW) as served:
        yield served


@pytest.fixture
def http(server: ServeProcess) -> Iterator[httpx.Client]:
    def no_redirects(response: httpx.Response) -> None:
        assert "location" not in response.headers, f"redirect from {response.url}"

    with httpx.Client(
        base_url=server.url, follow_redirects=False, event_hooks={"response": [no_redirects]}
    ) as client:
        yield client


# --- helpers ------------------------------------------------------------------------------


def page(response: httpx.Response) -> Any:
    return lxml.html.fromstring(response.text)


def csrf_of(response: httpx.Response) -> str:
    [value] = page(response).xpath("//form//input[@name='csrf']/@value")
    return str(value)


def heading(response: httpx.Response) -> str:
    return str(page(response).xpath("string(//h1)")).strip()


def subscriber(site: Site, email: str) -> Subscriber | None:
    with Store(site.config().store.url) as store:
        return store.get_subscriber(email)


def add_active(site: Site, email: str, categories: tuple[str, ...] = ()) -> Subscriber:
    with Store(site.config().store.url) as store:
        return store.add_subscriber(email, categories=categories, status="active", now=_now())


def _now() -> Any:
    from datetime import datetime

    return datetime.fromisoformat(NOW)


def token(subscriber_id: int, purpose: str) -> str:
    return make_token(SECRET.encode(), subscriber_id, purpose)


def subscribe(http: httpx.Client, email: str, *categories: str, name: str = "") -> httpx.Response:
    form = http.get("/subscribe")
    data = {"csrf": csrf_of(form), "email": email, "name": name, "categories": list(categories)}
    return http.post("/subscribe", data=data)


def mails_to(smtp: SmtpServer, email: str, count: int) -> list[EmailMessage]:
    """Wait for ``count`` messages in all and return those to ``email``."""
    smtp.wait_for(count)
    return [m.message for m in smtp.to(email)]


def flush(http: httpx.Client, smtp: SmtpServer, tag: str) -> None:
    """Wait until every earlier subscribe request was handled.

    Requests are handled in order by one worker, so once a new address's
    confirmation has arrived, every earlier request is done.
    """
    sentinel = f"sentinel-{tag}@example.org"
    count = len(smtp.messages)
    assert subscribe(http, sentinel).status_code == 200
    while not smtp.to(sentinel):
        count += 1
        smtp.wait_for(count)


def link_in(message: EmailMessage, path: str) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [url] = re.findall(rf"{re.escape(BASE)}/{path}/\S+", text)
    return url


# --- the subscribe form -------------------------------------------------------------------


def test_subscribe_form_offers_published_categories_accessibly(http: httpx.Client) -> None:
    response = http.get("/subscribe")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    doc = page(response)
    assert doc.get("lang") == "ja"
    assert doc.xpath("//meta[@name='viewport']/@content") == ["width=device-width, initial-scale=1"]
    boxes = doc.xpath("//input[@type='checkbox'][@name='categories']/@value")
    # Drafts and scheduled posts are not offered; sorted by name.
    assert boxes == ["Life", "Tech", "旅行"]
    for field in doc.xpath("//input[@type='email' or @type='text']"):
        assert doc.xpath(f"//label[@for='{field.get('id')}']"), field.get("name")
    for box in doc.xpath("//input[@type='checkbox']"):
        assert box.getparent().tag == "label"
    assert "購読する" in heading(response)


def test_pages_send_security_headers(http: httpx.Client) -> None:
    response = http.get("/subscribe")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp
    assert "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert not page(response).xpath("//script")
    stylesheet = page(response).xpath("//link[@rel='stylesheet']/@href")[0]
    css = http.get("/" + stylesheet)
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert "Hiragino Sans" in css.text and "Noto Sans JP" in css.text


def test_a_bad_address_is_refused_with_the_form_again(
    http: httpx.Client, smtp: SmtpServer, site: Site
) -> None:
    for bad in (
        "not-an-address",
        "a@b",
        "x@example.com\r\nBcc: y@example.com",
        '"><script>alert(1)</script>@example.com',
    ):
        response = subscribe(http, bad, "Tech", name="名前")
        assert response.status_code == 400
        doc = page(response)
        assert doc.xpath("//input[@id='email']/@aria-invalid") == ["true"]
        assert doc.xpath("//input[@value='Tech']/@checked") == ["checked"]
        assert doc.xpath("//input[@id='name']/@value") == ["名前"]
        assert doc.xpath("//input[@id='email']/@value") == [bad.replace("\r\n", "\n")]
        assert not doc.xpath("//script")
    unknown = subscribe(http, "unknown-category@example.com", "Secret")
    assert unknown.status_code == 400
    flush(http, smtp, "bad")
    assert subscriber(site, "unknown-category@example.com") is None


def test_a_name_with_a_line_break_is_refused_even_encoded(
    http: httpx.Client, smtp: SmtpServer, site: Site
) -> None:
    for bad in ("Eve\r\nBcc: x@example.com", "=?utf-8?q?Eve=0D=0ABcc=3A_x@example.com?="):
        response = subscribe(http, "eve@example.com", "Tech", name=bad)
        assert response.status_code == 400
        assert page(response).xpath("//input[@id='name']/@aria-invalid") == ["true"]
    # Controls other than line breaks are cleaned away, and the confirmation goes out.
    assert subscribe(http, "tab@example.com", "Tech", name="Tab\tName\x01").status_code == 200
    flush(http, smtp, "names")
    [confirmation] = [m.message for m in smtp.to("tab@example.com")]
    assert confirmation["Bcc"] is None
    assert confirmation["To"].addresses[0].display_name == "Tab Name"
    found = subscriber(site, "tab@example.com")
    assert found is not None and found.name == "Tab Name"
    assert subscriber(site, "eve@example.com") is None


# --- the whole path -----------------------------------------------------------------------


def test_subscribe_confirm_digest_preferences_and_one_click_unsubscribe(
    http: httpx.Client, smtp: SmtpServer, site: Site, server: ServeProcess
) -> None:
    email = "reader@example.com"
    before = len(smtp.messages)
    response = subscribe(http, email, "Tech", name="読者")
    assert response.status_code == 200
    assert heading(response) == "メールをご確認ください"
    [mail] = mails_to(smtp, email, before + 1)
    assert mail["Subject"] == "テストサイト の購読確認"
    assert mail["Auto-Submitted"] == "auto-generated"
    stored = subscriber(site, email)
    assert stored is not None and stored.status == "pending"
    assert stored.categories == ("Tech",) and stored.name == "読者"

    # The confirmation link opens a page with a button; opening it confirms nothing.
    confirm_url = link_in(mail, "confirm")
    confirm_path = confirm_url.removeprefix(BASE)
    shown = http.get(confirm_path)
    assert shown.status_code == 200
    assert email in shown.text
    assert page(shown).xpath("//form[@method='post']//button")
    assert subscriber(site, email).status == "pending"  # type: ignore[union-attr]
    done = http.post(confirm_path, data={"csrf": csrf_of(shown)})
    assert done.status_code == 200
    assert heading(done) == "購読を受け付けました"
    confirmed = subscriber(site, email)
    assert confirmed is not None and confirmed.status == "active"
    assert confirmed.confirmed_at is not None

    # The digest goes out with links to this server's pages.
    sent = site.run("--now", NOW, "digest", "send", env=ENV)
    assert sent.returncode == 0, sent.stderr
    digests = [m for m in mails_to(smtp, email, before + 2) if "List-Unsubscribe" in m]
    [digest] = digests
    assert "新しい記事" in digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Life" not in digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    preferences_path = link_in(digest, "preferences").removeprefix(BASE)

    # Preferences: follow Life too, then the next digest would carry it.
    prefs = http.get(preferences_path)
    assert prefs.status_code == 200
    doc = page(prefs)
    assert doc.xpath("//input[@name='categories'][@checked]/@value") == ["Tech"]
    saved = http.post(
        preferences_path,
        data={"csrf": csrf_of(prefs), "categories": ["Tech", "Life"], "action": "save"},
    )
    assert saved.status_code == 200
    assert page(saved).xpath("//p[@role='status']/text()") == ["設定を保存しました。"]
    assert subscriber(site, email).categories == ("Tech", "Life")  # type: ignore[union-attr]
    everything = http.post(preferences_path, data={"csrf": csrf_of(saved), "action": "save"})
    assert everything.status_code == 200
    assert subscriber(site, email).categories == ()  # type: ignore[union-attr]

    # RFC 8058: the mail provider posts to the List-Unsubscribe URL, from its own
    # servers: no cookie, no Origin, no form token.
    [unsubscribe_url] = re.findall(r"<(https://[^>]+)>", digest["List-Unsubscribe"])
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_path = unsubscribe_url.removeprefix(BASE)
    assert unsubscribe_path.startswith("/unsubscribe/")
    with httpx.Client(base_url=server.url) as provider:
        for _ in range(2):
            one_click = provider.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
            assert one_click.status_code == 200
            assert "set-cookie" not in one_click.headers
            assert subscriber(site, email).status == "unsubscribed"  # type: ignore[union-attr]

    # Changed their mind: the preferences page takes them back.
    back = http.get(preferences_path)
    assert "現在、ダイジェストは配信されていません。" in back.text
    resumed = http.post(
        preferences_path, data={"csrf": csrf_of(back), "categories": "旅行", "action": "save"}
    )
    assert resumed.status_code == 200
    again = subscriber(site, email)
    assert again is not None and (again.status, again.categories) == ("active", ("旅行",))
    left = http.post(preferences_path, data={"csrf": csrf_of(resumed), "action": "leave"})
    assert left.status_code == 200
    assert subscriber(site, email).status == "unsubscribed"  # type: ignore[union-attr]
    # Access log lines do not carry the tokens.
    assert not any(confirm_path in line or unsubscribe_path in line for line in server.output)
    assert any('"POST /unsubscribe/… HTTP/1.1" 200' in line for line in server.output)


def test_asking_again_changes_nothing_and_looks_the_same(
    http: httpx.Client, smtp: SmtpServer, site: Site
) -> None:
    pending, active = "pending-again@example.com", "active-again@example.com"
    first = subscribe(http, pending, "Tech")
    flush(http, smtp, "again-1")
    before = subscriber(site, pending)
    assert before is not None and before.status == "pending"
    add_active(site, active, ("Life",))
    kept = subscriber(site, active)

    fresh = subscribe(http, "brand-new@example.com", "Tech")
    second = subscribe(http, pending, "Life", name="Someone Else")
    third = subscribe(http, active, "Tech", name="Someone Else")
    flush(http, smtp, "again-2")

    def shown(response: httpx.Response, email: str) -> str:
        return response.text.replace(email, "ADDRESS")

    assert fresh.status_code == first.status_code == second.status_code == third.status_code
    assert (
        shown(fresh, "brand-new@example.com")
        == shown(first, pending)
        == shown(second, pending)
        == shown(third, active)
    )
    assert subscriber(site, pending) == before
    assert subscriber(site, active) == kept
    # One confirmation for the pending address (sent again only after server.confirm_resend),
    # none for the active one.
    assert len(smtp.to(pending)) == 1
    assert smtp.to(active) == []


def test_a_confirmation_link_made_after_an_unsubscribe_needs_a_new_request(
    http: httpx.Client, smtp: SmtpServer, site: Site
) -> None:
    email = "came-back@example.com"
    person = add_active(site, email, ("Tech",))
    with Store(site.config().store.url) as store:
        store.set_status(person.id, "unsubscribed", now=_now())
    subscribe(http, email, "Life")
    flush(http, smtp, "came-back")
    again = subscriber(site, email)
    assert again is not None and (again.status, again.categories) == ("pending", ("Life",))
    [mail] = smtp.to(email)
    path = link_in(mail.message, "confirm").removeprefix(BASE)
    shown = http.get(path)
    assert http.post(path, data={"csrf": csrf_of(shown)}).status_code == 200
    assert subscriber(site, email).status == "active"  # type: ignore[union-attr]


# --- tokens and cross-site posts ----------------------------------------------------------


def _forgeries(subscriber_id: int, purpose: str) -> list[str]:
    good = token(subscriber_id, purpose)
    other = "unsubscribe" if purpose != "unsubscribe" else "preferences"
    flipped = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    return [
        flipped,  # altered signature
        good.replace(f"v1.{subscriber_id}.", f"v1.{subscriber_id + 1}."),  # someone else
        token(subscriber_id, other),  # wrong purpose
        make_token(b"another-secret", subscriber_id, purpose),  # forged
        "v2" + good[2:],  # unknown version
        good[:-5],  # cut short
        "nonsense",
    ]


@pytest.mark.parametrize("purpose", ["confirm", "unsubscribe", "preferences"])
def test_forged_or_altered_tokens_get_a_4xx_page_and_change_nothing(
    http: httpx.Client, site: Site, purpose: str
) -> None:
    person = add_active(site, f"forged-{purpose}@example.com", ("Tech",))
    if purpose == "confirm":
        with Store(site.config().store.url) as store:
            person = store.set_status(person.id, "pending", now=_now())
    good_page = http.get(f"/{purpose}/{token(person.id, purpose)}")
    assert good_page.status_code == 200
    csrf = csrf_of(good_page)
    for forged in _forgeries(person.id, purpose):
        path = f"/{purpose}/{forged}"
        shown = http.get(path)
        assert shown.status_code == 400, forged
        assert heading(shown) == "このリンクは無効です"
        posts = [
            http.post(path, data={"csrf": csrf, "action": "leave", "categories": "Life"}),
            http.post(path, data={"List-Unsubscribe": "One-Click"}),
        ]
        assert all(400 <= p.status_code < 500 for p in posts), forged
    assert subscriber(site, person.email) == person


def test_get_and_head_never_unsubscribe(http: httpx.Client, site: Site) -> None:
    person = add_active(site, "scanned@example.com")
    path = f"/unsubscribe/{token(person.id, 'unsubscribe')}"
    for _ in range(3):
        shown = http.get(path)
        assert shown.status_code == 200
        assert http.head(path).status_code == 200
    assert page(shown).xpath("//form[@method='post']//button/text()") == ["配信を停止する"]
    assert subscriber(site, person.email).status == "active"  # type: ignore[union-attr]
    gone = http.post(path, data={"csrf": csrf_of(shown)})
    assert gone.status_code == 200
    assert heading(gone) == "配信を停止しました"
    assert subscriber(site, person.email).status == "unsubscribed"  # type: ignore[union-attr]


def test_one_click_works_as_multipart_too(server: ServeProcess, site: Site) -> None:
    person = add_active(site, "multipart@example.com")
    path = f"/unsubscribe/{token(person.id, 'unsubscribe')}"
    with httpx.Client(base_url=server.url) as provider:
        for _ in range(2):
            response = provider.post(path, files={"List-Unsubscribe": (None, "One-Click")})
            assert response.status_code == 200
    assert subscriber(site, person.email).status == "unsubscribed"  # type: ignore[union-attr]


def test_cross_site_and_tokenless_posts_are_refused(
    http: httpx.Client, smtp: SmtpServer, site: Site
) -> None:
    person = add_active(site, "csrf-target@example.com")
    other = add_active(site, "csrf-other@example.com")
    path = f"/unsubscribe/{token(person.id, 'unsubscribe')}"
    csrf = csrf_of(http.get(path))
    other_csrf = csrf_of(http.get(f"/unsubscribe/{token(other.id, 'unsubscribe')}"))
    prefs_csrf = csrf_of(http.get(f"/preferences/{token(person.id, 'preferences')}"))
    refused = [
        http.post(path, data={}),  # no form token, and not the one-click body
        http.post(path, data={"csrf": "c1.1.forged"}),
        http.post(path, data={"csrf": other_csrf}),  # made for another subscriber's form
        http.post(path, data={"csrf": prefs_csrf}),  # made for another form
        http.post(path, data={"csrf": csrf}, headers={"Origin": "https://evil.example"}),
        http.post(path, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}),
        http.post(path, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "same-site"}),
    ]
    for response in refused:
        assert response.status_code == 403
        assert heading(response) == "もう一度お試しください"
    assert subscriber(site, person.email).status == "active"  # type: ignore[union-attr]

    no_token = http.post("/subscribe", data={"email": "csrf-sub@example.com"})
    evil = http.post(
        "/subscribe",
        data={"email": "csrf-sub@example.com", "csrf": csrf_of(http.get("/subscribe"))},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert no_token.status_code == evil.status_code == 403
    flush(http, smtp, "csrf")
    assert subscriber(site, "csrf-sub@example.com") is None

    # A browser under Referrer-Policy: no-referrer sends Origin: null on its own form.
    same = http.post(
        path, data={"csrf": csrf}, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    )
    assert same.status_code == 200
    assert subscriber(site, person.email).status == "unsubscribed"  # type: ignore[union-attr]


def test_unknown_paths_and_trailing_slashes_are_404_never_redirects(http: httpx.Client) -> None:
    for path in ("/subscribe/", "/confirm/", "/unsubscribe", "/nothing-here.html"):
        response = http.get(path)
        assert response.status_code == 404, path
    assert http.post("/atom.xml").status_code == 405
    assert http.post("/subscribe", content=b"x" * 100_000).status_code == 413


# --- the preview of the built site --------------------------------------------------------


def test_preview_serves_the_built_site_with_media_types(http: httpx.Client, site: Site) -> None:
    digests = site.output / "digests"
    digests.mkdir(exist_ok=True)
    (digests / "2026-W48.html").write_text("<!DOCTYPE html><title>週刊</title>", "utf-8")
    expected = {
        "/": "text/html; charset=utf-8",
        "/index.html": "text/html; charset=utf-8",
        "/atom.xml": "application/atom+xml; charset=utf-8",
        "/rss.xml": "application/rss+xml; charset=utf-8",
        "/feed.json": "application/feed+json",
        "/feeds.opml": "text/x-opml; charset=utf-8",
        "/digests/2026-W48.html": "text/html; charset=utf-8",
    }
    for path, media_type in expected.items():
        response = http.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == media_type, path
        assert response.headers["x-content-type-options"] == "nosniff"
        relative = "index.html" if path == "/" else path.lstrip("/")
        assert response.content == (site.output / relative).read_bytes()
    categories = [p for p in site.output.rglob("atom.xml") if p.parent != site.output]
    assert categories, "the build wrote category feeds"
    nested = "/" + categories[0].relative_to(site.output).as_posix()
    assert http.get(nested).headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert "週刊" in http.get("/digests/2026-W48.html").text


def test_preview_answers_conditional_requests_with_304(http: httpx.Client) -> None:
    first = http.get("/atom.xml")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert etag.startswith('"') and modified.endswith("GMT")
    by_etag = http.get("/atom.xml", headers={"If-None-Match": etag})
    assert by_etag.status_code == 304 and by_etag.content == b""
    assert by_etag.headers["etag"] == etag
    assert http.get("/atom.xml", headers={"If-None-Match": f"W/{etag}"}).status_code == 304
    by_date = http.get("/atom.xml", headers={"If-Modified-Since": modified})
    assert by_date.status_code == 304
    stale = http.get("/atom.xml", headers={"If-None-Match": '"old"', "If-Modified-Since": modified})
    assert stale.status_code == 200  # If-None-Match decides when both are sent
    older = http.get("/atom.xml", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert older.status_code == 200 and older.content == first.content
    head = http.head("/atom.xml")
    assert head.status_code == 200 and head.headers["etag"] == etag and head.content == b""


def test_preview_never_leaves_the_output_folder(
    http: httpx.Client, site: Site, server: ServeProcess
) -> None:
    (site.root / "secret.txt").write_text("top secret", "utf-8")
    (site.output / ".hidden.tmp").write_text("half written", "utf-8")
    link = site.output / "escape.txt"
    if not link.exists():
        link.symlink_to(site.root / "secret.txt")
    for path in (
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/categories/../../secret.txt",
        "/..%5csecret.txt",
        "//etc/passwd",
        "/escape.txt",
        "/.hidden.tmp",
        "/config.yaml",
        "/%00",
    ):
        response = http.get(path)
        assert response.status_code == 404, path
        assert "top secret" not in response.text and "half written" not in response.text
    # And over a raw connection, where no client tidies the path first.
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"GET /../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert b"top secret" not in answer
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 400 Bad Request")


# --- a second server: the rate limit and the outbox ---------------------------------------


def test_subscribe_is_rate_limited_per_client(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", server={"subscribe_rate": 2})
    with (
        ServeProcess(site.root, env=ENV, now=NOW) as served,
        httpx.Client(base_url=served.url) as http,
    ):
        assert subscribe(http, "first@example.com").status_code == 200
        assert subscribe(http, "not-an-address").status_code == 400  # counts too
        limited = subscribe(http, "third@example.com")
        assert limited.status_code == 429
        # 2 a minute: the next token comes 30 seconds after the bucket ran dry.
        assert limited.headers["retry-after"] == "30"
        assert heading(limited) == "リクエストが多すぎます"
        assert http.get("/subscribe").status_code == 200  # only posts are limited
        [mail] = wait_for_files(site.root / "outbox", "*.eml", 1)
    assert served.stop() is None  # already stopped by the with block
    text = mail.read_text("utf-8")
    assert "To: first@example.com" in text
    assert subscriber(site, "third@example.com") is None


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    served = ServeProcess(site.root, env=ENV, now=NOW).start()
    with httpx.Client(base_url=served.url) as http:
        assert subscribe(http, "last@example.com").status_code == 200
    # uvicorn finishes, then lets SIGTERM end the process as it would have (systemd
    # counts that as a clean stop).
    assert served.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete." in served.stderr
    # The confirmation promised before the stop was still written.
    assert len(wait_for_files(site.root / "outbox", "*.eml", 1, timeout=0)) == 1


# --- start-up errors ----------------------------------------------------------------------


def test_serve_refuses_to_start_without_what_it_needs(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    no_secret = run_publisher("serve", "--port", "0", cwd=site.root, env={"PUBLISHER_SECRET": ""})
    assert no_secret.returncode == 2
    assert "PUBLISHER_SECRET" in no_secret.stderr and "Traceback" not in no_secret.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = run_publisher("serve", "--port", str(port), cwd=site.root, env=ENV)
    assert busy.returncode == 2
    assert busy.stderr.strip().startswith(f"publisher: cannot listen on 127.0.0.1:{port}")

    site.settings["site"].pop("email")
    site.write_config()
    no_sender = run_publisher("serve", "--port", "0", cwd=site.root, env=ENV)
    assert no_sender.returncode == 2
    assert "digest.from" in no_sender.stderr and "Traceback" not in no_sender.stderr
