"""A real headless Chromium subscribes through the form and confirms, on a phone-sized screen.

Skipped only when Chromium is not installed (``apt-get install chromium``;
.ci/run installs it).
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from publisher.store import Store
from tests.cdp import Browser, chromium_path
from tests.web.test_app import BASE, ENV, NOW, make_site
from tests.web_server import ServeProcess, wait_for_files


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if chromium_path() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    with Browser.launch(tmp_path) as launched:
        yield launched


def test_a_reader_subscribes_and_confirms_in_chromium(tmp_path: Path, browser: Browser) -> None:
    site = make_site(tmp_path / "site", server={"base_url": BASE})
    with ServeProcess(site.root, env=ENV, now=NOW) as server:
        page = browser.page()
        # A phone: 390 CSS pixels wide, touch screen.
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=390,
            height=844,
            deviceScaleFactor=2,
            mobile=True,
        )
        page.goto(f"{server.url}/subscribe")
        assert page.text("h1") == "テストサイト を購読する"
        # Nothing wider than the screen, and the stylesheet applied under the CSP.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.evaluate("getComputedStyle(document.querySelector('button')).width") == (
            page.evaluate("getComputedStyle(document.querySelector('form')).width")
        )
        page.type("#email", "browser@example.com")
        page.type("#name", "山田 花子")
        page.click("input[value='旅行']")
        assert page.evaluate("document.querySelector(\"input[value='旅行']\").checked") is True
        page.click("button[type=submit]", navigates=True)
        assert page.text("h1") == "メールをご確認ください"
        assert "browser@example.com" in page.text("main p")

        [mail] = wait_for_files(site.root / "outbox", "*.eml", 1)
        message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        [link] = re.findall(rf"{re.escape(BASE)}/confirm/\S+", text)
        page.goto(server.url + link.removeprefix(BASE))
        assert page.text("h1") == "購読の確認"
        with Store(site.config().store.url) as store:
            pending = store.get_subscriber("browser@example.com")
        assert pending is not None and pending.status == "pending"

        page.click("button[type=submit]", navigates=True)
        assert page.text("h1") == "購読を受け付けました"
        page.screenshot(tmp_path / "confirmed.png")
        # No CSP refusal, no missing stylesheet; the site simply has no favicon.
        errors = [e for e in page.console_errors() if not e.endswith("/favicon.ico")]
        assert errors == []

    with Store(site.config().store.url) as store:
        subscriber = store.get_subscriber("browser@example.com")
    assert subscriber is not None
    assert (subscriber.status, subscriber.name, subscriber.categories) == (
        "active",
        "山田 花子",
        ("旅行",),
    )
    assert subscriber.confirmed_at is not None
