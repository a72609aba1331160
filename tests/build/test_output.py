"""Output files: never outside the output folder, never half-written, never claimed twice."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from publisher.build.output import OutputWriter, atomic_write, safe_join
from publisher.errors import OutputError
from publisher.site.urls import assign_slugs, expand_permalink, slugify, url_join


@pytest.mark.parametrize(
    "relative", ["../x", "a/../../x", "/abs/x", "", ".", "a/./b", "a//b", "..\\x", "a/\x00"]
)
def test_unsafe_paths_are_refused(tmp_path: Path, relative: str) -> None:
    with pytest.raises(OutputError, match="refusing to write"):
        safe_join(tmp_path, relative)


def test_a_symlink_cannot_lead_a_write_outside(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "link").symlink_to(elsewhere)
    with pytest.raises(OutputError, match="resolves outside"):
        safe_join(out, "link/atom.xml")


def test_the_writer_refuses_a_folder_that_links_outside_however_deep(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "categories").mkdir(parents=True)
    elsewhere.mkdir()
    (out / "categories" / "c").symlink_to(elsewhere)
    writer = OutputWriter(out)
    with pytest.raises(OutputError, match="resolves outside"):
        writer.claim("categories/c/archive/atom/1.xml", "a page")
    assert list(elsewhere.iterdir()) == []


def test_the_writer_follows_a_folder_link_that_stays_inside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "real").mkdir(parents=True)
    (out / "categories").symlink_to(out / "real")
    writer = OutputWriter(out)
    writer.write_all([("categories/c/atom.xml", b"<feed/>", "the feed")])
    assert (out / "real" / "c" / "atom.xml").read_bytes() == b"<feed/>"


def test_atomic_write_leaves_a_complete_0644_file_and_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "feeds" / "atom.xml"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["atom.xml"]


def test_many_files_written_together_are_each_complete_0644_and_leave_no_temp_files(
    tmp_path: Path,
) -> None:
    writer = OutputWriter(tmp_path)
    files = [
        (f"categories/c{i % 5}/feed{i}.xml", f"<feed {i}/>".encode(), f"feed {i}")
        for i in range(20)
    ]
    writer.write_all(files[:3])
    writer.write_all([(r, d + b"!" if i % 2 else d, o) for i, (r, d, o) in enumerate(files)])
    assert writer.unchanged == ["categories/c0/feed0.xml", "categories/c2/feed2.xml"]
    assert len(writer.written) == 3 + 18
    for i, (relative, data, _) in enumerate(files):
        target = tmp_path / relative
        assert target.read_bytes() == (data + b"!" if i % 2 else data)
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []


def test_a_failed_write_of_many_leaves_no_temp_files(tmp_path: Path) -> None:
    (tmp_path / "b.xml").mkdir()  # a folder where a feed must go: the rename fails
    writer = OutputWriter(tmp_path)
    files = [(f"{name}.xml", b"<x/>", name) for name in "abcdefghij"]
    with pytest.raises(OSError):
        writer.write_all(files)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_two_outputs_for_one_path_are_an_error_naming_both(tmp_path: Path) -> None:
    writer = OutputWriter(tmp_path)
    writer.write("categories/c/atom.xml", b"1", "the category feed 'C#'")
    with pytest.raises(OutputError) as caught:
        writer.write("categories/c/atom.xml", b"2", "the category feed 'C++'")
    assert str(caught.value) == (
        "categories/c/atom.xml: both the category feed 'C#' and the category feed 'C++'"
        " would be written here"
    )
    # A build claims every path before it writes: the same owner may write its own.
    writer.claim("rss.xml", "the site feed")
    writer.write("rss.xml", b"<rss/>", "the site feed")
    assert (tmp_path / "rss.xml").read_bytes() == b"<rss/>"
    with pytest.raises(OutputError):
        writer.claim("rss.xml", "the index page")


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    OutputWriter(tmp_path).write("rss.xml", b"same", "x")
    os.utime(tmp_path / "rss.xml", ns=(1, 1))
    writer = OutputWriter(tmp_path)
    writer.write("rss.xml", b"same", "x")
    assert writer.unchanged == ["rss.xml"]
    assert (tmp_path / "rss.xml").stat().st_mtime_ns == 1


def test_slugs_keep_unicode_and_never_collide() -> None:
    assert slugify("AI技術") == "ai技術"
    assert slugify("Cloud Computing!") == "cloud-computing"
    assert slugify("..") == ""
    slugs = assign_slugs(["C++", "C#", "c", "AI技術"], {"AI技術": "ai"})
    assert slugs == {"AI技術": "ai", "C#": "c", "C++": "c-2", "c": "c-3"}
    assert len(set(slugs.values())) == len(slugs)
    # The same names in another order get the same slugs.
    assert assign_slugs(["c", "C#", "AI技術", "C++"], {"AI技術": "ai"}) == slugs


def test_permalinks_expand_like_jekylls() -> None:
    from datetime import datetime

    date = datetime(2025, 3, 4, 5, 6, 7)
    path = expand_permalink(
        "/:categories/:year/:month/:day/:title:output_ext",
        slug="hello",
        date=date,
        categories=["ai技術", "news"],
    )
    assert path == "/ai技術/news/2025/03/04/hello.html"
    assert expand_permalink("/:year/:i_month/:slug/", slug="s", date=date, categories=[]) == (
        "/2025/3/s/"
    )
    assert url_join("https://example.com", path) == (
        "https://example.com/ai%E6%8A%80%E8%A1%93/news/2025/03/04/hello.html"
    )


def test_url_join_percent_encodes_exactly_as_quote_does() -> None:
    # url_join leaves plain paths alone and quotes the rest a segment at a time.
    import random
    from urllib.parse import quote

    chars = "abcXYZ09/:@!$&'()*+,;=-._~% \"<>#?[]\\^`{|}技術é\u00a0\x7f\n"
    rng = random.Random(5005)
    for _ in range(20_000):
        path = "".join(rng.choice(chars) for _ in range(rng.randint(0, 14)))
        expected = "https://example.com" + quote(path, safe="/:@!$&'()*+,;=-._~%")
        assert url_join("https://example.com/", path) == expected, path
