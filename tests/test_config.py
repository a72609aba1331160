"""config.yaml: defaults, every problem named by its key, all in one run."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from publisher.config import FEED_FORMATS, load_config, parse_config
from publisher.errors import ConfigError
from tests.conftest import REPO

MINIMAL = {"site": {"title": "T", "url": "https://example.com/"}}


def test_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = parse_config(MINIMAL, tmp_path)
    assert config.site.url == "https://example.com"
    assert str(config.site.timezone) == "UTC"
    assert config.paths.posts == tmp_path / "posts"
    assert config.paths.output == tmp_path / "public"
    assert config.feeds.formats == FEED_FORMATS
    assert config.feeds.max_items == 20
    assert config.feeds.content == "full"
    assert config.feeds.per_category is True
    assert config.feeds.per_tag is False
    assert config.permalink == "/:categories/:year/:month/:day/:title.html"
    assert config.digest.first_window == timedelta(days=7)
    assert config.digest.max_lateness == timedelta(hours=24)
    assert config.store.url == f"sqlite:///{tmp_path / 'publisher.db'}"
    assert config.smtp.connections == 2


def test_images_from_content_and_reading_rates_default_and_are_checked(tmp_path: Path) -> None:
    feeds = parse_config(MINIMAL, tmp_path).feeds
    assert feeds.image_from_content is False
    assert (feeds.reading_words_per_minute, feeds.reading_chars_per_minute) == (200, 500)
    given = {"image_from_content": True, "reading_words_per_minute": 250}
    feeds = parse_config({**MINIMAL, "feeds": given}, tmp_path).feeds
    assert feeds.image_from_content is True
    assert (feeds.reading_words_per_minute, feeds.reading_chars_per_minute) == (250, 500)
    bad = {
        "image_from_content": "yes",
        "reading_words_per_minute": 0,
        "reading_chars_per_minute": 1.5,
    }
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "feeds": bad}, tmp_path)
    assert caught.value.problems == [
        "feeds.image_from_content: must be true or false, got 'yes'",
        "feeds.reading_words_per_minute: must be a positive integer, got 0",
        "feeds.reading_chars_per_minute: must be a positive integer, got 1.5",
    ]


def test_websub_hubs_are_absolute_http_urls_and_default_to_none(tmp_path: Path) -> None:
    assert parse_config(MINIMAL, tmp_path).feeds.websub_hubs == ()
    hubs = ["https://hub.example/", "http://127.0.0.1:8080/hub", "https://hub.example/"]
    given = {"websub_hubs": hubs}
    feeds = parse_config({**MINIMAL, "feeds": given}, tmp_path).feeds
    # Kept as written (a hub's trailing slash is its own), a repeat once.
    assert feeds.websub_hubs == ("https://hub.example/", "http://127.0.0.1:8080/hub")
    one = parse_config({**MINIMAL, "feeds": {"websub_hubs": "https://h.example/"}}, tmp_path)
    assert one.feeds.websub_hubs == ("https://h.example/",)
    for bad, message in (
        (["ftp://hub.example/"], "'ftp://hub.example/' is not an absolute http(s) URL"),
        (["/hub"], "'/hub' is not an absolute http(s) URL"),
        ([3], "3 is not an absolute http(s) URL"),
        ({"a": 1}, "must be a list of absolute http(s) URLs"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config({**MINIMAL, "feeds": {"websub_hubs": bad}}, tmp_path)
        assert caught.value.problems == [f"feeds.websub_hubs: {message}, got {bad!r}"]


def test_smtp_connections_is_a_positive_count(tmp_path: Path) -> None:
    config = parse_config({**MINIMAL, "smtp": {"connections": 4}}, tmp_path)
    assert config.smtp.connections == 4
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "smtp": {"connections": 0}}, tmp_path)
    assert caught.value.problems == ["smtp.connections: must be a positive integer, got 0"]


def test_the_postmark_section_has_defaults_and_checks_its_limits(tmp_path: Path) -> None:
    config = parse_config({**MINIMAL, "digest": {"backend": "postmark"}}, tmp_path)
    assert config.digest.backend == "postmark"
    assert config.postmark.token_env == "PUBLISHER_POSTMARK_TOKEN"
    assert config.postmark.url == "https://api.postmarkapp.com"
    assert (config.postmark.batch_size, config.postmark.message_stream) == (500, "broadcast")
    raw = {"batch_size": 501, "url": "api.postmarkapp.com", "rate_limit": -1, "tokens": "x"}
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "postmark": raw}, tmp_path)
    assert caught.value.problems == [
        "postmark.url: must be an absolute http(s) URL, got 'api.postmarkapp.com'",
        "postmark.batch_size: must be 1 to 500 (the most Postmark takes in one request), got 501",
        "postmark.rate_limit: must be a number >= 0, got -1",
        "postmark.tokens: unknown key",
    ]


def test_every_independent_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    raw = {
        "site": {"title": "T", "url": "example.com", "timezone": "Mars/Olympus"},
        "feeds": {"max_items": "ten", "formats": ["atom", "xml"], "content": "all"},
        "digest": {"first_window": "a week"},
        "colour": "blue",
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path)
    assert caught.value.problems == [
        "site.url: must be an absolute http(s) URL, got 'example.com'",
        "site.timezone: must be an IANA time zone name such as Asia/Tokyo, got 'Mars/Olympus'",
        "feeds.formats: must be a list of atom, rss, json, got ['atom', 'xml']",
        "feeds.max_items: must be a positive integer, got 'ten'",
        "feeds.content: must be one of full, summary, got 'all'",
        "digest.first_window: must be a duration such as 30m, 24h or 7d, got 'a week'",
        "colour: unknown key",
    ]


def test_required_keys_and_one_line_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"site": {"description": "two\r\nlines"}}, tmp_path)
    assert caught.value.problems == [
        "site.title: is required",
        "site.url: is required",
        "site.description: must be one line, got 'two\\r\\nlines'",
    ]


def test_paths_are_relative_to_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "blog"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        yaml.safe_dump({**MINIMAL, "paths": {"posts": "_posts", "output": "../www"}}), "utf-8"
    )
    config = load_config(folder / "config.yaml")
    assert config.paths.posts == folder / "_posts"
    assert config.paths.output == tmp_path / "www"


def test_output_folder_may_not_be_the_site_or_posts_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "paths": {"output": "."}}, tmp_path)
    assert caught.value.problems == [
        "paths.output: must be a folder of its own, not the site or posts folder"
    ]


def test_category_slug_map_refuses_path_separators(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "feeds": {"category_slugs": {"AI": "../../etc"}}}, tmp_path)
    assert caught.value.problems[0].startswith(
        "feeds.category_slugs: slug for 'AI' must be a single path segment"
    )


def test_broken_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("site:\n  title: [unclosed\n  url: x\n", "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: 3:")
    assert "invalid YAML" in str(caught.value)


def test_missing_config_says_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="pass --config PATH or set PUBLISHER_CONFIG"):
        load_config(None)


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan")])
def test_an_smtp_timeout_that_would_wait_forever_is_refused(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "smtp": {"timeout": timeout}}, tmp_path)
    assert caught.value.problems == [
        f"smtp.timeout: must be a number of seconds > 0 (0 would wait forever), got {timeout!r}"
    ]
    assert parse_config({**MINIMAL, "smtp": {"timeout": 0.5}}, tmp_path).smtp.timeout == 0.5


def test_config_and_posts_are_read_without_libyaml(tmp_path: Path) -> None:
    # PyYAML built without libyaml has no CSafeLoader; publisher must not depend on it.
    site = tmp_path / "site"
    (site / "posts").mkdir(parents=True)
    (site / "config.yaml").write_text(yaml.safe_dump(MINIMAL), "utf-8")
    (site / "posts" / "2025-01-02-hello.md").write_text(
        "---\ntitle: Hello\ncategories: [a, b]\nextra: {nested: [1, 2]}\n---\nBody.\n", "utf-8"
    )
    script = (
        "import sys; sys.modules['yaml._yaml'] = None\n"  # as if libyaml were missing
        "import yaml; assert not yaml.__with_libyaml__ and not hasattr(yaml, 'CSafeLoader')\n"
        "from publisher.cli.main import main; main(['build'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=site,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("built 3 feed sets from 1 posts (0 rejected")
    assert "<title>Hello</title>" in (site / "public" / "atom.xml").read_text("utf-8")
