"""Serving the built site: media types, validators, safe paths (publisher.web.preview)."""

from __future__ import annotations

import os
from email.utils import formatdate
from pathlib import Path

import pytest

from publisher.web.preview import etag_for, find_file, is_not_modified, media_type


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("atom.xml", "application/atom+xml; charset=utf-8"),
        ("rss.xml", "application/rss+xml; charset=utf-8"),
        ("feed.json", "application/feed+json"),
        ("feeds.opml", "text/x-opml; charset=utf-8"),
        ("index.html", "text/html; charset=utf-8"),
        ("sitemap.xml", "application/xml; charset=utf-8"),
        ("data.json", "application/json"),
        ("style.css", "text/css; charset=utf-8"),
        ("photo.JPG", "image/jpeg"),
        ("blob", "application/octet-stream"),
    ],
)
def test_media_types(name: str, expected: str) -> None:
    assert media_type(name) == expected


@pytest.fixture
def public(tmp_path: Path) -> Path:
    root = tmp_path / "public"
    (root / "digests").mkdir(parents=True)
    (root / "index.html").write_text("home", "utf-8")
    (root / "digests" / "index.html").write_text("list", "utf-8")
    (root / "digests" / "2026-W48.html").write_text("week", "utf-8")
    (root / ".atom.xml.x1.tmp").write_text("partial", "utf-8")
    (tmp_path / "secret.txt").write_text("secret", "utf-8")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    (root / "inside.txt").symlink_to(root / "index.html")
    return root


def test_paths_map_to_files_and_folder_indexes(public: Path) -> None:
    def name(path: str) -> str | None:
        found = find_file(public, path)
        return None if found is None else found[0].relative_to(public).as_posix()

    assert name("") == name("/") == "index.html"
    assert name("digests") == name("digests/") == "digests/index.html"
    assert name("digests/2026-W48.html") == "digests/2026-W48.html"
    assert name("inside.txt") == "inside.txt"  # a symlink that stays inside is fine
    for refused in (
        "../secret.txt",
        "digests/../../secret.txt",
        "digests/../index.html",  # even when it would land inside: no dot segments at all
        "link.txt",
        ".atom.xml.x1.tmp",
        "digests//2026-W48.html",
        "missing.html",
        "index.html\x00.txt",
        "..\\secret.txt",
    ):
        assert find_file(public, refused) is None, refused


def test_conditional_requests(public: Path) -> None:
    st = (public / "index.html").stat()
    etag = etag_for(st)
    modified = formatdate(st.st_mtime, usegmt=True)
    assert is_not_modified({"if-none-match": etag}, etag, st)
    assert is_not_modified({"if-none-match": f'"other", W/{etag}'}, etag, st)
    assert is_not_modified({"if-none-match": "*"}, etag, st)
    assert not is_not_modified({"if-none-match": '"other"'}, etag, st)
    assert is_not_modified({"if-modified-since": modified}, etag, st)
    assert not is_not_modified({"if-modified-since": "Mon, 01 Jan 2001 00:00:00 GMT"}, etag, st)
    assert not is_not_modified({"if-modified-since": "yesterday"}, etag, st)
    # If-None-Match decides when both are sent.
    assert not is_not_modified({"if-none-match": '"x"', "if-modified-since": modified}, etag, st)
    assert not is_not_modified({}, etag, st)


def test_the_etag_changes_when_a_build_replaces_the_file(public: Path) -> None:
    path = public / "index.html"
    before = etag_for(path.stat())
    path.write_text("home!", "utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))
    assert etag_for(path.stat()) != before
