"""``publisher serve --watch`` in a real headless Chromium: a save reloads the open page.

The real command in a subprocess, the real watcher, the real browser: the test
saves files as an editor would and reads what the page shows. Skipped only when
Chromium is not installed (.ci/run installs it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from publisher.store import Store
from tests.cdp import Browser, Page, chromium_path
from tests.conftest import Site
from tests.web_server import ServeProcess

NOW = "2025-09-08T00:00:00+00:00"  # the Monday after the seed post: its digest is due
RELOAD_WITHIN = 2.0  # seconds from a save to the new text on the page


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if chromium_path() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    with Browser.launch(tmp_path / "chromium") as launched:
        yield launched


def _until(page: Page, expression: str, expected: str, within: float) -> float:
    """Seconds until ``expression`` in the page gives ``expected``; fails after ``within``."""
    start = time.monotonic()
    value = None
    while time.monotonic() - start < within:
        try:
            value = page.evaluate(expression)
        except RuntimeError:  # the page is being replaced by its reload
            value = None
        if value == expected:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{expression} is {value!r}, not {expected!r}, after {within} s")


def _save(path: Path, text: str) -> None:
    """As an editor saves: a new file renamed over the old one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, "utf-8")
    temporary.replace(path)


def test_a_saved_post_or_config_reloads_the_open_page(seed_site: Site, browser: Browser) -> None:
    seed_site.write_config(site={**seed_site.settings["site"], "email": "news@example.com"})
    with ServeProcess(seed_site.root, now=NOW, args=("--watch",)) as server:
        page = browser.page()
        # The built site's own page, as built, with the reload script added on the way.
        page.goto(f"{server.url}/")
        assert page.evaluate("document.title") == "Test Site: feeds"
        assert (
            page.evaluate("document.querySelectorAll('script[src=\"/_publisher/live.js\"]').length")
            == 1
        )
        built = (seed_site.output / "index.html").read_text("utf-8")
        assert "live.js" not in built  # never in the published files
        time.sleep(0.5)  # the page's event stream is open
        settings = seed_site.config_path.read_text("utf-8")
        _save(seed_site.config_path, settings.replace("Test Site", "Renamed Site"))
        _until(page, "document.title", "Renamed Site: feeds", RELOAD_WITHIN)

        # The next digest, as a reader would get it; a post's new title shows on save.
        page.goto(f"{server.url}/_preview/digest")
        bar = "(document.querySelector('#publisher-digest-preview') || {}).textContent || ''"
        _until(page, f"({bar}).slice(0, 25)", "digest 2025-W37, 1 posts ", 5.0)
        # Rendered with the config as it is now: the renamed site.
        assert "Subject: Renamed Site: 新着記事 1 件" in page.evaluate(bar)
        assert "MSとAWS、クラウドAI投資競争の最前線" in page.evaluate("document.body.textContent")
        time.sleep(0.5)
        post = next(seed_site.posts.glob("*.md"))
        text = post.read_text("utf-8")
        _save(post, text.replace("MSとAWS、クラウドAI投資競争の最前線", "改題: クラウドAIの今", 1))
        _until(
            page,
            "document.body.textContent.includes('改題: クラウドAIの今') ? 'yes' : 'no'",
            "yes",
            RELOAD_WITHIN,
        )
        # Nothing refused by the CSP, no script error (a browser asks for a favicon anyway).
        assert [e for e in page.console_errors() if "favicon.ico" not in e] == []

        # A broken post: its one line on the preview page, the rest of the site served.
        page.goto(f"{server.url}/")
        time.sleep(0.5)
        broken = seed_site.post("2025-09-06-broken.md", "title: Broken\ndate: 2025-99-99")
        problems = "(document.querySelector('#publisher-problems') || {}).textContent || ''"
        _until(
            page,
            f"({problems}).startsWith('{broken.relative_to(seed_site.root)}:') ? 'yes' : 'no'",
            "yes",
            RELOAD_WITHIN,
        )
        assert "date" in page.evaluate(problems)


def test_the_digest_preview_of_one_subscriber_and_its_text_part(seed_site: Site) -> None:
    seed_site.write_config(site={**seed_site.settings["site"], "email": "news@example.com"})
    with Store.open(seed_site.config()) as store:
        from datetime import UTC, datetime

        store.add_subscriber("ann@example.net", name="Ann", now=datetime(2025, 9, 1, tzinfo=UTC))
    with ServeProcess(seed_site.root, now=NOW, args=("--watch",)) as server:
        page = httpx.get(f"{server.url}/_preview/digest", params={"subscriber": "ann@example.net"})
        text = httpx.get(
            f"{server.url}/_preview/digest.txt", params={"subscriber": "ann@example.net"}
        )
        missing = httpx.get(f"{server.url}/_preview/digest", params={"subscriber": "zed@x.net"})
    assert page.status_code == 200
    assert "<b>To:</b> ann@example.net" in page.text
    assert "<b>Subject:</b> Test Site: 新着記事 1 件" in page.text
    assert 'href="/_preview/digest.txt?subscriber=ann%40example.net"' in page.text
    assert text.headers["content-type"].startswith("text/plain")
    assert "MSとAWS、クラウドAI投資競争の最前線" in text.text
    assert "PREVIEW-not-a-real-token" in text.text  # no working link of the reader's
    assert missing.status_code == 500
    assert "zed@x.net: no such subscriber" in missing.text
