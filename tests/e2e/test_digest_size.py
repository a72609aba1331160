"""Gmail clips an HTML part past about 102 KB, hiding the unsubscribe footer: a digest that
would pass ``digest.max_html_bytes`` goes out with titles and links only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from publisher.store import Store
from tests.conftest import Site
from tests.smtp_server import SmtpServer

NOW = "2025-09-08T00:00:00+00:00"  # 09:00 JST on the Monday after the seed post (2025-W37)
SECRET = {"PUBLISHER_SECRET": "size test secret"}
EXCERPT = "長い要約の文です。" * 40  # 360 characters, over 1 KB in UTF-8


@pytest.fixture
def big_week(site: Site, smtp_server: SmtpServer) -> Site:
    for i in range(30):  # each post: about 0.9 KB of HTML, 1.4 KB more with its excerpt
        site.post(
            f"2025-09-0{2 + i % 6}-post-{i}.md",
            f"title: 記事 {i}\ncategories: [C{i % 3}]\nexcerpt: '{EXCERPT} {i}'",
        )
    site.write_config(
        digest={"from": "Test Site <news@example.com>", "backend": "smtp"},
        smtp=smtp_server.config(),
    )
    with Store.open(site.config()) as store:
        store.add_subscriber("ann@example.net", name="Ann", now=datetime(2025, 8, 1, tzinfo=UTC))
    return site


def _html(smtp_server: SmtpServer) -> str:
    [received] = smtp_server.wait_for(1)
    return str(received.message.get_body(("html",)).get_content())


def test_a_digest_under_the_limit_keeps_its_excerpts(
    big_week: Site, smtp_server: SmtpServer
) -> None:
    result = big_week.run("--now", NOW, "digest", "send", env=SECRET)
    assert result.returncode == 0, result.stderr
    html = _html(smtp_server)
    assert 60_000 < len(html.encode("utf-8")) < 95_000
    assert html.count(EXCERPT) == 30


def test_a_digest_over_the_limit_goes_with_titles_links_and_its_footer(
    big_week: Site, smtp_server: SmtpServer
) -> None:
    big_week.write_config(digest={"max_html_bytes": 60_000})
    preview = big_week.run("--now", NOW, "digest", "preview")
    assert "HTML part " in preview.stderr and "(digest.max_html_bytes 60,000)" in preview.stderr
    shown = int(preview.stderr.split("HTML part ")[1].split(" bytes")[0].replace(",", ""))
    assert shown <= 60_000

    result = big_week.run("--now", NOW, "digest", "send", env=SECRET)
    assert result.returncode == 0, result.stderr
    html = _html(smtp_server)
    assert len(html.encode("utf-8")) <= 60_000
    assert EXCERPT not in html
    assert all(f"記事 {i}</a>" in html for i in range(30))  # every title, linked
    assert "/unsubscribe/" in html and "/preferences/" in html  # the footer is there
    [received] = smtp_server.messages
    assert received.message["List-Unsubscribe"]
