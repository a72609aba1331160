"""Reading posts with Jekyll's semantics, and one clear line for every bad one."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.build.sources import find_post_files
from publisher.errors import PostError
from publisher.site.posts import (
    Enclosure,
    Post,
    parse_post,
    plain_title,
    read_body,
    split_posts,
)
from tests.conftest import SEED

TOKYO = ZoneInfo("Asia/Tokyo")
PATTERN = "/:categories/:year/:month/:day/:title.html"


def parse(text: str | bytes, name: str = "posts/2025-01-02-hello.md") -> Post:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_post(name, data, tz=TOKYO, permalink=PATTERN, site_url="https://example.com")


def error_of(text: str | bytes, name: str = "posts/x.md") -> str:
    with pytest.raises(PostError) as caught:
        parse(text, name)
    return str(caught.value)


def test_the_seed_post_reads_as_jekyll_would() -> None:
    post = parse(SEED.read_bytes(), "posts/000_c8123a293010547c.md")
    assert post.title == "MSとAWS、クラウドAI投資競争の最前線"
    assert post.date == datetime(2025, 9, 7, 8, 26, 39, tzinfo=UTC)
    assert post.categories == ("AI技術",)
    assert post.tags == ("AI", "最新ニュース", "技術動向")
    assert post.author == "ALLFORCES編集部"
    assert post.excerpt == "Microsoft, Amazon in cloud AIについて詳細に分析します。"
    assert post.permalink == "/ai技術/2025/09/07/000_c8123a293010547c.html"
    assert read_body(SEED.read_bytes()).lstrip().startswith("# MSとAWS")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-09-07 08:26:39 +0000", datetime(2025, 9, 7, 8, 26, 39, tzinfo=UTC)),
        (
            "2025-09-07T08:26:39+09:00",
            datetime(2025, 9, 7, 8, 26, 39, tzinfo=timezone(timedelta(hours=9))),
        ),
        ("2025-09-07", datetime(2025, 9, 7, tzinfo=TOKYO)),
        ("2025-09-07 10:00", datetime(2025, 9, 7, 10, tzinfo=TOKYO)),
        ("'2025-09-07 08:26:39Z'", datetime(2025, 9, 7, 8, 26, 39, tzinfo=UTC)),
        (
            "2025-09-07 08:26:39 -0130",
            datetime(2025, 9, 7, 8, 26, 39, tzinfo=timezone(-timedelta(hours=1, minutes=30))),
        ),
        ("2025-9-7 8:26:39 +0000", datetime(2025, 9, 7, 8, 26, 39, tzinfo=UTC)),
        ("2025-09-07  08:26:39 +0000", datetime(2025, 9, 7, 8, 26, 39, tzinfo=UTC)),
    ],
)
def test_dates_jekyll_accepts(value: str, expected: datetime) -> None:
    post = parse(f"---\ntitle: T\ndate: {value}\n---\n")
    assert post.date == expected
    assert post.date.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2025-02-29 08:00:00 +0900", "day is out of range for month"),
        ("2025-09-07 24:00:00 +0900", "hour must be in 0..23"),
        ("2025-09-07 08:26:60 +0900", "second must be in 0..59"),
        ("0000-09-07 08:26:39 +0900", "year 0 is out of range"),
    ],
)
def test_impossible_dates_in_jekylls_form_are_one_line(value: str, message: str) -> None:
    expected = f"posts/x.md:3:7: date: cannot read '{value}' as a date: {message}"
    assert error_of(f"---\ntitle: T\ndate: {value}\n---\n") == expected


def test_an_offset_out_of_range_is_one_line() -> None:
    message = error_of("---\ntitle: T\ndate: 2025-09-07 08:26:39 +2400\n---\n")
    assert message == "posts/x.md:3:7: date: time zone offset '+2400' is out of range"


def test_date_and_slug_come_from_the_file_name_when_missing() -> None:
    post = parse("---\ntitle: T\n---\nbody\n", "posts/2024-02-29-Leap-Day.md")
    assert post.date == datetime(2024, 2, 29, tzinfo=TOKYO)
    assert post.slug == "Leap-Day"
    assert post.permalink == "/2024/02/29/Leap-Day.html"


def test_categories_and_tags_as_lists_strings_and_singulars() -> None:
    post = parse(
        "---\ntitle: T\ncategories: news tech\ncategory: extra\ntags: [a, b, a]\ntag: c\n---\n",
        "posts/2025-01-01-x.md",
    )
    assert post.categories == ("news", "tech", "extra")
    assert post.tags == ("a", "b", "c")
    post = parse("---\ntitle: T\ncategories: [1, two, 3.5, '', ' x ']\n---\n")
    assert post.categories == ("1", "two", "3.5", "x")


def test_slug_permalink_update_time_and_author_mapping() -> None:
    post = parse(
        "---\ntitle: T\nslug: my-slug\npermalink: /blog/:year/:slug/\n"
        "last_modified_at: 2025-02-01 10:00:00 +0900\nauthor: {name: 花子}\n---\n",
        "posts/2025-01-02-ignored.md",
    )
    assert post.slug == "my-slug"
    assert post.permalink == "/blog/2025/my-slug/"
    assert post.modified == datetime(2025, 2, 1, 10, tzinfo=TOKYO)
    assert post.author == "花子"


def test_id_depends_on_the_file_not_on_its_text() -> None:
    before = parse("---\ntitle: Old title\n---\nold\n", "posts/2025-01-02-hello.md")
    after = parse("---\ntitle: New title\n---\nnew text\n", "posts/2025-01-02-hello.md")
    assert before.id == after.id == "tag:example.com,2025-01-02:posts/2025-01-02-hello"
    assert before.digest != after.digest


def test_an_id_from_a_path_that_urls_cannot_hold_is_percent_encoded() -> None:
    post = parse("---\ntitle: T\n---\n", "posts/2025-01-02-日本 語.md")
    assert post.id == "tag:example.com,2025-01-02:posts/2025-01-02-%E6%97%A5%E6%9C%AC%20%E8%AA%9E"
    assert post.slug == "日本-語"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("/:year/:short_year/:i_month/:i_day/:y_day/:title/", "/2025/25/1/2/002/hello/"),
        ("/:hour-:minute-:second/:slug:output_ext", "/10-05-09/hello.html"),
        ("/{x}/:title/{:year}", "/{x}/hello/{2025}"),
        ("/:categories/:title", "/hello"),
        ("/a//b/./../:title", "/a/b/hello"),
        ("no-slash/:title/", "/no-slash/hello/"),
        ("/", "/"),
    ],
)
def test_permalink_patterns(pattern: str, expected: str) -> None:
    post = parse(f"---\ntitle: T\ndate: 2025-01-02 10:05:09\npermalink: '{pattern}'\n---\n")
    assert post.permalink == expected


def test_a_permalink_cannot_climb_out_of_the_site() -> None:
    post = parse("---\ntitle: T\npermalink: /../../etc/passwd\n---\n")
    assert post.permalink == "/etc/passwd"


def test_drafts_unpublished_and_future_posts_are_left_out() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    posts = [
        parse("---\ntitle: a\ndate: 2025-01-01\n---\n", "posts/a.md"),
        parse("---\ntitle: b\ndate: 2025-03-01\ndraft: true\n---\n", "posts/b.md"),
        parse("---\ntitle: c\ndate: 2025-03-01\npublished: false\n---\n", "posts/c.md"),
        parse("---\ntitle: d\ndate: 2025-07-01\n---\n", "posts/d.md"),
        parse("---\ntitle: e\ndate: 2025-05-01\n---\n", "posts/e.md"),
    ]
    result = split_posts(posts, [], now)
    assert [p.title for p in result.published] == ["e", "a"]
    assert [p.title for p in result.drafts] == ["b", "c"]
    assert [p.title for p in result.scheduled] == ["d"]


def test_posts_of_one_time_keep_one_order_whatever_order_they_are_read_in() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)

    def at(name: str, date: str) -> Post:
        return parse(f"---\ntitle: {name}\ndate: {date}\n---\n", f"posts/{name}.md")

    posts = [at("b", "2025-01-01"), at("c", "2025-02-01"), at("a", "2025-01-01")]
    posts += [at("y", "2025-09-01"), at("z", "2025-08-01"), at("x", "2025-09-01")]
    for ordering in (posts, posts[::-1]):
        result = split_posts(ordering, [], now)
        # Newest first, ties by file name backwards; the next to publish first.
        assert [p.title for p in result.published] == ["c", "b", "a"]
        assert [p.title for p in result.scheduled] == ["z", "x", "y"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "---\ntitle: T\ntags: [a, b\n---\n",
            "posts/x.md:4:1: front matter: invalid YAML: did not find expected ',' or ']'",
        ),
        (
            "---\n- a\n- b\n---\n",
            "posts/x.md:2:1: front matter: must be a mapping of keys to values",
        ),
        ("---\ntitle: T\n", "posts/x.md:1:1: front matter: no closing '---' line"),
        ("Just text\n", "posts/x.md:1:1: front matter: missing: a post starts with a line '---'"),
        (
            "---\ntitle: T\ndate: 2025-13-45 10:00\n---\n",
            "posts/x.md:3:7: date: cannot read '2025-13-45 10:00' as a date: "
            "month must be in 1..12",
        ),
        (
            "---\ntitle: T\ndate: next tuesday\n---\n",
            "posts/x.md:3:7: date: cannot read 'next tuesday' as a date "
            "(use 2025-09-07 08:26:39 +0000)",
        ),
        (
            "---\ndate: 2025-01-01\n---\n",
            "posts/x.md:2:1: title: missing: every post needs a title",
        ),
        (
            "---\ntitle: T\n---\n",
            "posts/x.md:2:1: date: missing: give a date, or start the file name with YYYY-MM-DD-",
        ),
        (
            "---\ntitle: Off\ndate: 2025-01-01\n---\n",
            "posts/x.md:2:8: title: must be text; put it in quotes "
            "(a bare yes, no, on or off is a boolean)",
        ),
        (
            "---\ntitle: T\ndate: 2025-01-01\ncategories: {a: 1}\n---\n",
            "posts/x.md:4:13: categories: must be a list of names or a space-separated string",
        ),
    ],
)
def test_bad_posts_get_one_line_naming_file_line_column_and_field(text: str, expected: str) -> None:
    assert error_of(text) == expected


def test_a_file_name_date_that_is_no_date_is_one_line() -> None:
    message = error_of("---\ntitle: T\n---\n", "posts/2025-13-01-x.md")
    assert message == (
        "posts/2025-13-01-x.md:1:1: date: file name: "
        "cannot read '2025-13-01' as a date: month must be in 1..12"
    )


def test_unknown_permalink_placeholders_stay_as_written() -> None:
    post = parse("---\ntitle: T\npermalink: /:year:foo/:title/\n---\n")
    assert post.permalink == "/2025:foo/hello/"
    post = parse("---\ntitle: T\npermalink: :name/:title\n---\n")
    assert post.permalink == "/:name/hello"


def test_invalid_utf8_names_the_byte_position() -> None:
    data = b"---\ntitle: ok\ndate: 2025-01-01\nauthor: ab" + b"\xff\n---\n"
    assert error_of(data) == "posts/x.md:4:11: encoding: invalid UTF-8 (save the file as UTF-8)"


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_a_body_that_is_not_utf8_rejects_the_post_naming_the_byte(bom: bytes) -> None:
    data = bom + "---\ntitle: T\ndate: 2025-01-02\n---\n本文です。\nCaf".encode() + b"\xe9 !\n"
    assert error_of(data) == "posts/x.md:6:4: body: not valid UTF-8 (byte 0xE9)"
    # A problem in the front matter, which comes first in the file, is the one named.
    bad_matter = b"---\ndate: 2025-01-02\n---\nCaf\xe9\n"
    assert error_of(bad_matter) == "posts/x.md:2:1: title: missing: every post needs a title"


@pytest.mark.parametrize(
    ("title", "plain"),
    [
        ("Tom & Jerry <b>bold</b>", "Tom & Jerry bold"),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("&amp;lt;b&amp;gt; decoded once", "&lt;b&gt; decoded once"),
        ("a < b and c > d", "a < b and c > d"),
        ("<!-- note -->Two\n  lines", "Two lines"),
        ("MSとAWS、クラウドAI投資競争の最前線", "MSとAWS、クラウドAI投資競争の最前線"),
    ],
)
def test_plain_title(title: str, plain: str) -> None:
    assert plain_title(title) == plain


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_the_body_starts_on_the_line_after_the_closing_fence(bom: bytes) -> None:
    post = parse(bom + b"---\ntitle: T\ndate: 2025-01-02\n---\nFirst line of the body.\n")
    assert post.body_line == 5  # the line number in a warning about the body


def test_a_yaml_alias_bomb_is_refused_quickly() -> None:
    bomb = ["---", "title: T", 'a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 12):
        bomb.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}" if i > 1 else "*a"] * 10) + "]")
    bomb.append("---")
    started = time.perf_counter()
    message = error_of("\n".join(bomb) + "\n")
    assert message == "posts/x.md:2:1: front matter: too many values (YAML aliases?)"
    assert time.perf_counter() - started < 1.0


def test_xml_forbidden_characters_are_removed_with_a_warning() -> None:
    post = parse('---\ntitle: "Bell\\a here"\ndate: 2025-01-01\n---\n', "posts/x.md")
    assert post.title == "Bell here"
    assert post.warnings == ("posts/x.md:2:8: title: removed characters that XML forbids",)


def test_the_first_bad_field_in_reading_order_is_the_one_reported() -> None:
    text = "---\ncategories: {a: 1}\nauthor: [[x]]\ndate: soon\ntitle: T\n---\n"
    assert error_of(text) == (
        "posts/x.md:4:7: date: cannot read 'soon' as a date (use 2025-09-07 08:26:39 +0000)"
    )
    text = "---\nauthor: [[x]]\ncategories: {a: 1}\ndate: 2025-01-01\ntitle: T\n---\n"
    assert error_of(text).startswith("posts/x.md:3:13: categories: ")


def test_warnings_come_in_the_order_of_the_fields() -> None:
    post = parse(
        '---\nexcerpt: "e\\a"\nauthor: "a\\a"\ntags: ["t\\a"]\nid: "i\\a"\n'
        'title: "T\\a"\ndate: 2025-01-01\n---\n',
        "posts/x.md",
    )
    assert (post.title, post.tags, post.id, post.author, post.excerpt) == (
        "T",
        ("t",),
        "i",
        "a",
        "e",
    )
    assert [w.split(": ")[1] for w in post.warnings] == ["title", "tags", "id", "author", "excerpt"]


def test_editor_leftovers_and_hidden_files_are_not_posts(tmp_path: Path) -> None:
    names = [
        "a.md",
        "b.markdown",
        "sub/c.md",
        "a.md~",
        ".#a.md",
        ".a.md.swp",
        ".hidden.md",
        "#a.md#",
        "notes.txt",
        ".git/x.md",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x", "utf-8")
    assert [name for name, _ in find_post_files(tmp_path)] == ["a.md", "b.markdown", "sub/c.md"]


def test_image_as_text_or_as_jekyll_seo_tags_mapping() -> None:
    assert parse("---\ntitle: T\n---\n").image == ""
    assert parse("---\ntitle: T\nimage: img/a.png\n---\n").image == "img/a.png"
    assert parse("---\ntitle: T\nimage: ' https://x.example/a.png '\n---\n").image == (
        "https://x.example/a.png"
    )
    mapping = "---\ntitle: T\nimage:\n  path: /assets/a.jpg\n  height: 600\n  alt: A cat\n---\n"
    assert parse(mapping).image == "/assets/a.jpg"
    assert parse("---\ntitle: T\nimage: {path: //cdn.example/b.png}\n---\n").image == (
        "//cdn.example/b.png"
    )
    assert parse("---\ntitle: T\nimage:\n---\n").image == ""  # null: no image


def test_enclosure_with_its_length_and_type_given_or_known_from_the_url() -> None:
    assert parse("---\ntitle: T\n---\n").enclosure is None
    post = parse(
        "---\ntitle: T\nenclosure:\n  url: /ep/1.mp3\n  length: 123\n  type: audio/mpeg\n---\n"
    )
    assert post.enclosure == Enclosure("/ep/1.mp3", 123, "audio/mpeg")
    assert (post.enclosure.url, post.enclosure.length, post.enclosure.type) == (
        "/ep/1.mp3",
        123,
        "audio/mpeg",
    )
    assert parse("---\ntitle: T\nenclosure: {url: a.M4A}\n---\n").enclosure == (
        Enclosure("a.M4A", None, "audio/mp4")
    )
    assert parse("---\ntitle: T\nenclosure: {url: 'a.bin', length: '0'}\n---\n").enclosure == (
        Enclosure("a.bin", 0, "application/octet-stream")
    )
    typed = "---\ntitle: T\nenclosure: {url: v, type: 'video/mp4; codecs=avc1'}\n---\n"
    assert parse(typed).enclosure == Enclosure("v", None, "video/mp4; codecs=avc1")


@pytest.mark.parametrize(
    ("value", "minutes"), [("8", 8), ("2.5", 3), ("0.1", 1), ("'12'", 12), ("", 0)]
)
def test_reading_time_from_the_front_matter_in_whole_minutes(value: str, minutes: int) -> None:
    assert parse(f"---\ntitle: T\nreading_time: {value}\n---\n").reading_time == minutes


@pytest.mark.parametrize(
    ("matter", "expected"),
    [
        ("image: 42", "3:8: image: must be a URL or a path, or a mapping with path, got 42"),
        ("image: true", "3:8: image: must be a URL or a path, or a mapping with path, got True"),
        ("image: [a.png]", "3:8: image: must be a URL or a path, or a mapping with path, got"),
        ("image: 'data:image/png;base64,AA'", "3:8: image: must be an http(s) URL or a path"),
        ("image: 'http://[x'", "3:8: image: is not a valid URL: 'http://[x'"),
        ("image:\n  alt: x", "3:7: image: path: missing: a mapping gives the image's URL as path"),
        ("image:\n  path: 7", "4:9: image: path: must be a URL or a path, got 7"),
        ("enclosure: a.mp3", "3:12: enclosure: must be a mapping with url, length and type"),
        ("enclosure: {length: 5}", "3:12: enclosure: url: missing: an enclosure needs"),
        ("enclosure:\n  url: ' '", "4:8: enclosure: url: missing: an enclosure needs"),
        ("enclosure:\n  url: 'ftp://x/a'", "4:8: enclosure: url: must be an http(s) URL or a path"),
        ("enclosure:\n  url: a\n  length: -1", "5:11: enclosure: length: must be the file's size"),
        ("enclosure: {url: a, length: 1.5}", "3:29: enclosure: length: must be the file's size"),
        ("enclosure: {url: a, length: yes}", "3:29: enclosure: length: must be the file's size"),
        ("enclosure: {url: a,type: mpeg}", "3:26: enclosure: type: must be a media type such as"),
    ],
)
def test_bad_images_and_enclosures_are_one_line(matter: str, expected: str) -> None:
    name = "posts/2025-01-02-x.md"
    assert error_of(f"---\ntitle: T\n{matter}\n---\n", name).startswith(f"{name}:{expected}")


@pytest.mark.parametrize("value", ["0", "ten", "'5 min read'", ".inf", "true"])
def test_a_reading_time_that_cannot_be_read_is_a_warning_and_worked_out(value: str) -> None:
    post = parse(f"---\ntitle: T\nreading_time: {value}\n---\nBody.\n", "posts/2025-01-02-x.md")
    assert post.reading_time == 0  # worked out from the body when it is rendered
    [warning] = post.warnings
    assert warning.startswith("posts/2025-01-02-x.md:3:15: reading_time: must be a number of")
    assert warning.endswith("; worked out from the body instead")


def test_new_fields_survive_the_caches_tuples() -> None:
    from publisher.build.cachefile import FileEntry, entry_from_tuple, entry_to_tuple

    post = parse(
        "---\ntitle: T\nimage: a.png\nenclosure: {url: b.mp3, length: 9}\nreading_time: 4\n---\n"
    )
    entry = entry_from_tuple(entry_to_tuple(FileEntry(1, 2, post.digest, post, post)))
    assert entry.result == post
    assert isinstance(entry.result, Post)
    assert isinstance(entry.result.enclosure, Enclosure)
    assert entry.last_good is entry.result
