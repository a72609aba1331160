"""``publisher init`` and ``publisher new``, run as a new user runs them."""

from __future__ import annotations

import email
import email.policy
import os
import pty
import re
import select
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest
import yaml

from publisher.config.load import parse_config
from publisher.config.template import SECTIONS, config_text
from publisher.site.newpost import post_text
from publisher.site.posts import Post, parse_post
from tests.conftest import REPO, run_publisher

NOW = "2026-12-03T10:00:00+09:00"


def _read(path: Path, tz: ZoneInfo) -> Post:
    return parse_post(
        path.name, path.read_bytes(), tz=tz, permalink="/:title.html", site_url="https://e.com"
    )


def _init(folder: Path, *args: str) -> None:
    result = run_publisher(
        "--now", NOW, "init", str(folder), "--title", "私のサイト", "--url",
        "https://example.com/blog/", *args, cwd=folder.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_init_new_build_and_check_make_a_site_with_working_feeds(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _init(site, "--timezone", "Asia/Tokyo", "--language", "ja", "--email", "me@example.com")
    for name in ("config.yaml", "posts", "templates/README.md", ".gitignore"):
        assert (site / name).exists(), name
    assert list((site / "templates").iterdir()) == [site / "templates/README.md"]

    new = run_publisher(
        "new", "AI技術の今", "--category", "AI技術", "--tag", "AI", "--date", "2026-12-04 09:30",
        cwd=site,
    )  # fmt: skip
    assert new.returncode == 0, new.stderr
    assert new.stdout == "posts/2026-12-04-ai技術の今.md\n"
    text = (site / "posts/2026-12-04-ai技術の今.md").read_text("utf-8")
    assert text.startswith(
        '---\ntitle: "AI技術の今"\ndate: 2026-12-04 09:30:00 +0900\n'
        'categories: ["AI技術"]\ntags: ["AI"]\n---\n'
    )

    build = run_publisher("--now", "2026-12-05T00:00:00+09:00", "build", cwd=site)
    assert build.returncode == 0, build.stderr
    assert build.stderr == ""
    check = run_publisher("--now", "2026-12-05T00:00:00+09:00", "check", cwd=site)
    assert check.returncode == 0, check.stderr

    atom = feedparser.parse((site / "public/atom.xml").read_bytes())
    assert not atom.bozo, atom.bozo_exception
    assert atom.feed.title == "私のサイト"
    assert [e.title for e in atom.entries] == ["AI技術の今", "Welcome"]
    assert atom.entries[0].link.startswith("https://example.com/blog/")
    assert atom.feed.language == "ja"
    rss = feedparser.parse((site / "public/rss.xml").read_bytes())
    assert not rss.bozo and len(rss.entries) == 2
    category = feedparser.parse((site / "public/categories/ai技術/atom.xml").read_bytes())
    assert [e.title for e in category.entries] == ["AI技術の今"]
    # What publisher writes is what the .gitignore leaves out.
    ignored = (site / ".gitignore").read_text("utf-8").split()
    assert {"/public/", "/.publisher-cache/", "/.publisher/", "/outbox/"} <= set(ignored)

    # The README's next steps: a subscriber, and this week's digest sent to yourself.
    later = ("--now", "2026-12-05T00:00:00+09:00")
    added = run_publisher(*later, "subscribers", "add", "reader@example.com", cwd=site)
    assert added.returncode == 0, added.stderr
    test_send = run_publisher(*later, "digest", "send", "--to", "me@example.com", cwd=site)
    assert test_send.returncode == 0, test_send.stderr
    [eml] = (site / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"] == "me@example.com"
    assert "me@example.com" in message["From"]
    assert "AI技術の今" in message.get_body(("plain",)).get_content()


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "config.yaml").write_text("mine: true\n", "utf-8")
    result = run_publisher(
        "init", "site", "--title", "T", "--url", "https://example.com/", cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "publisher: init: site/config.yaml already exists; nothing written. It would write:"
    )
    assert "  site/config.yaml  (exists)" in lines
    assert "  site/.gitignore" in lines
    assert sorted(p.name for p in site.iterdir()) == ["config.yaml"]
    assert (site / "config.yaml").read_text("utf-8") == "mine: true\n"


def test_init_without_a_terminal_names_the_missing_option(tmp_path: Path) -> None:
    result = run_publisher("init", "site", "--url", "https://example.com/", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "publisher: init: --title is needed (there is no terminal to ask on)\n"
    )
    assert not (tmp_path / "site").exists()


def test_init_refuses_values_the_site_could_not_build_with(tmp_path: Path) -> None:
    bad_url = run_publisher("init", "a", "--title", "T", "--url", "example.com", cwd=tmp_path)
    assert bad_url.returncode == 2
    assert bad_url.stderr.startswith("publisher: init: site.url: ")
    bad_zone = run_publisher(
        "init", "b", "--title", "T", "--url", "https://e.com/", "--timezone", "Mars/Base",
        cwd=tmp_path,
    )  # fmt: skip
    assert bad_zone.returncode == 2
    assert "--timezone: 'Mars/Base' is not an IANA time zone name" in bad_zone.stderr
    assert sorted(tmp_path.iterdir()) == []


_COMMENTED_KEY = re.compile(r"^#(?=\w+:|  \w+:)", re.MULTILINE)


def test_every_shown_default_is_the_default(tmp_path: Path) -> None:
    """Uncommenting every key of the written config changes no setting."""
    given = {"site.title": "T", "site.url": "https://example.com/"}
    text = config_text(given)
    uncommented = _COMMENTED_KEY.sub("", text)
    assert "#" not in "".join(line.split("#")[0] for line in uncommented.splitlines())
    every = parse_config(yaml.safe_load(uncommented), tmp_path)
    bare = parse_config({"site": {"title": "T", "url": "https://example.com/"}}, tmp_path)
    assert replace(every, source=bare.source) == bare
    assert parse_config(yaml.safe_load(text), tmp_path) == replace(bare, source=bare.source)


def test_the_written_config_shows_every_key_of_the_readme() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    documented: set[str] = set()
    for row in re.findall(r"^\| (`[a-z_.]+`(?:, `[a-z_.]+`)*) \|", readme, re.MULTILINE):
        documented.update(re.findall(r"`([a-z_.]+)`", row))
    documented = {key for key in documented if "." in key or key == "permalink"}
    shown = {
        f"{section}.{s.key}" if section else s.key for section, _, keys in SECTIONS for s in keys
    }
    assert documented - shown == set()
    assert shown - documented == set()


@pytest.mark.parametrize(
    ("title", "args", "name"),
    [
        ("Hello, World!", [], "2026-12-03-hello-world.md"),
        ("MSとAWS、クラウドAI投資競争", [], "2026-12-03-msとaws-クラウドai投資競争.md"),
        ("MSとAWS", ["--slug", "ms-aws"], "2026-12-03-ms-aws.md"),
    ],
)
def test_new_names_the_file_from_the_title_or_the_slug(
    tmp_path: Path, title: str, args: list[str], name: str
) -> None:
    site = tmp_path / "site"
    _init(site, "--timezone", "Asia/Tokyo")
    result = run_publisher("--now", NOW, "new", title, *args, cwd=site / "posts")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{name}\n"  # relative to where the user is
    post = _read(site / "posts" / name, ZoneInfo("Asia/Tokyo"))
    assert post.title == title


def test_new_refuses_to_overwrite_and_a_draft_is_in_no_feed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _init(site)
    first = run_publisher("--now", NOW, "new", "Plans", "--draft", cwd=site)
    assert first.returncode == 0, first.stderr
    path = site / first.stdout.strip()
    before = path.read_text("utf-8")
    assert "draft: true\n" in before
    again = run_publisher("--now", NOW, "new", "Plans", cwd=site)
    assert again.returncode == 2
    assert again.stderr == (
        f"publisher: new: {first.stdout.strip()} already exists; nothing written"
        " (pass --slug for another name)\n"
    )
    assert path.read_text("utf-8") == before
    assert run_publisher("--now", NOW, "build", cwd=site).returncode == 0
    atom = feedparser.parse((site / "public/atom.xml").read_bytes())
    assert [e.title for e in atom.entries] == ["Welcome"]


def test_new_date_is_written_in_the_sites_offset(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _init(site, "--timezone", "Asia/Tokyo")
    result = run_publisher("new", "Later", "--date", "2027-01-01T00:00:00Z", cwd=site)
    assert result.returncode == 0, result.stderr
    text = (site / "posts/2027-01-01-later.md").read_text("utf-8")
    assert "date: 2027-01-01 09:00:00 +0900\n" in text
    bad = run_publisher("new", "Later", "--date", "next week", cwd=site)
    assert bad.returncode == 2
    assert bad.stderr.startswith("publisher: new: --date: ")


@pytest.mark.parametrize(
    "title",
    ['Tom & "Jerry": a #1 hit', "yes", "- a list?", "タイトル\u3000全角", "C++ \\ C#"],
)
def test_a_new_post_reads_back_as_asked(tmp_path: Path, title: str) -> None:
    tz = ZoneInfo("Asia/Tokyo")
    date = datetime(2026, 12, 3, 10, 0, tzinfo=tz)
    path = tmp_path / "post.md"
    text = post_text(title, date, categories=["AI技術", "a: b"], tags=["yes", "10"])
    path.write_text(text, "utf-8")
    post = _read(path, tz)
    assert (post.title, post.date) == (title.strip(), date)
    assert list(post.categories) == ["AI技術", "a: b"]
    assert list(post.tags) == ["yes", "10"]


def test_init_on_a_terminal_asks_for_what_is_missing(tmp_path: Path) -> None:
    """Run on a pseudo-terminal, init asks for the title, the URL and the address."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-m", "publisher", "init", "site"],
        cwd=tmp_path, env=env, stdin=secondary, stdout=secondary, stderr=secondary,
    ) as process:  # fmt: skip
        os.close(secondary)
        seen = b""
        for prompt, answer in [
            (b"Site title", "Notes from Kyoto"),
            (b"Site URL", "https://kyoto.example/"),
            (b"Your email address", ""),
        ]:
            while prompt not in seen:
                ready, _, _ = select.select([primary], [], [], 20)
                assert ready, seen
                seen += os.read(primary, 1024)
            os.write(primary, answer.encode() + b"\n")
        assert process.wait(timeout=30) == 0
    os.close(primary)
    config = yaml.safe_load((tmp_path / "site/config.yaml").read_text("utf-8"))
    assert config == {"site": {"title": "Notes from Kyoto", "url": "https://kyoto.example/"}}
