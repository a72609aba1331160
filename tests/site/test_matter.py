"""The fast front matter path must read exactly what PyYAML reads, or step aside."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.site.matter import MatterError, load_matter, split_matter
from tests.conftest import SEED

KEYS = ["title", "date", "tags", "yes", "null", "on", "a-b", "x_1", "Title", "n"]
SCALARS = [
    "hello",
    "Hello, world",
    "8",
    "-3",
    "0x1F",
    "1_000",
    "12:30",
    "3.5",
    ".inf",
    "yes",
    "No",
    "off",
    "null",
    "~",
    "2025-09-07",
    "2025-09-07 08:26:39 +0000",
    "2025-09-07T08:26:39Z",
    "AI技術",
    "C#",
    "C++",
    "a: b",
    "a #b",
    "#x",
    "'q'",
    "'it''s'",
    '"dq"',
    '"with \\" esc"',
    '"a, b"',
    "[a, b]",
    "[]",
    "[ a ,b ]",
    '["AI技術", "最新ニュース"]',
    "[1, two, 3.0]",
    "{a: 1}",
    "&anchor x",
    "*alias",
    "!tag x",
    "|",
    ">",
    "- x",
    "@at",
    "`tick`",
    "%pct",
    "it's",
    "trailing:",
    "x:y",
    '["a", b: c]',
    "[a,,b]",
    "[,]",
    "é",
    "'",
    '"',
    "a\tb",
    # Characters Python and YAML disagree on, and tags the fast path must not build.
    "\u3000a",
    "[\u3000a, b]",
    "[\xa0x]",
    "a\x85b",
    '"a\x85b"',
    "[a\x85b]",
    "a\u2028b",
    "a\u2029",
    "\ufeffa",
    "Bell\x07",
    '"Bell\x07"',
    "a\x7fb",
    "a\ufffeb",
    "=",
    "[=]",
    "<<",
    "😀 ok",
    # Lists of quoted names, read in one match.
    '["a" , "b"]',
    '[ "a"]',
    '["a",]',
    '["a" "b"]',
    '["a", ]',
    '["a\\"b"]',
    '["a,b", "c"]',
    '["", "x"]',
    '["a"] x',
    '["a"]]',
    '[["a"]]',
    "['a', \"b\"]",
    # With a space, only a timestamp among YAML 1.1's implicit types.
    "1 000",
    "0x1F 2",
    "+1 2",
    ".inf x",
    "true story",
    "on time",
    "null value",
    "~ x",
    "12:30 pm",
    "2025-09-07 08:26",
    "2025-09-07T08:26:39 Z",
    "2025-09-07 08:26:39.5 -09",
    # Plain values PyYAML types.
    "10",
    "true",
    "NULL",
    "1e3",
    "+12",
]


def assert_both_readers_agree(text: str) -> None:
    try:
        expected = load_matter(text, 2, fast=False)
    except MatterError:
        with pytest.raises(MatterError):
            load_matter(text, 2)
        return
    assert load_matter(text, 2) == expected


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(SCALARS)), min_size=1, max_size=6),
    st.booleans(),
)
def test_fast_path_agrees_with_pyyaml(pairs: list[tuple[str, str]], comment: bool) -> None:
    text = "\n".join(f"{key}: {value}" for key, value in pairs) + "\n"
    if comment:
        text = "# a comment\n" + text
    assert_both_readers_agree(text)


@pytest.mark.parametrize("comment", ["# a\x85b: c", "# a\u2028- b", "# a\rb: c"])
def test_comments_are_read_the_same_both_ways(comment: str) -> None:
    text = f"title: T\n{comment}\n"
    assert_both_readers_agree(text)


@pytest.mark.parametrize("value", SCALARS)
def test_every_sample_value_reads_the_same_both_ways(value: str) -> None:
    assert_both_readers_agree(f"title: {value}\n")


def test_a_line_read_again_gives_the_same_value_and_a_list_of_its_own() -> None:
    first = load_matter("tags: [a, 1]\nn: 10\n", 2)
    first["tags"].append("changed")
    again = load_matter("n: 10\ntags: [a, 1]\n", 2)
    assert again == {"tags": ["a", 1], "n": 10}
    assert again["tags"] is not first["tags"]
    # The same line twice is a duplicate key, which PyYAML reads (the last one wins).
    assert load_matter("n: 10\nn: 10\n", 2) == {"n": 10}


def test_the_seed_front_matter_reads_the_same_both_ways() -> None:
    matter, first, _ = split_matter(SEED.read_bytes())
    text = matter.decode("utf-8")
    assert load_matter(text, first) == load_matter(text, first, fast=False)
    assert load_matter(text, first)["categories"] == ["AI技術"]


def test_yaml_errors_carry_the_files_line_and_column() -> None:
    with pytest.raises(MatterError) as caught:
        load_matter("title: ok\ntags: [a\n", 2)
    assert (caught.value.line, caught.value.col) == (4, 1)


@pytest.mark.parametrize(
    ("data", "matter", "offset"),
    [
        (b"---\na: 1\n---\nbody", b"a: 1\n", 13),
        (b"---\na: 1\n...\nbody", b"a: 1\n", 13),
        (b"---  \na: 1\n---  \nbody", b"a: 1\n", 17),
        (b"---\n---\nbody", b"", 8),
        (b"---\n---", b"", 8),
        (b"---\na: ---\n ---\n-----\n---\n", b"a: ---\n ---\n-----\n", 26),
        # Offsets count from after a BOM, as read_body expects.
        (b"\xef\xbb\xbf---\na: 1\n---\n", b"a: 1\n", 13),
    ],
)
def test_the_front_matter_ends_at_the_first_fence_line(
    data: bytes, matter: bytes, offset: int
) -> None:
    assert split_matter(data) == (matter, 2, offset)


@pytest.mark.parametrize("data", [b"---", b"---\na: 1\n", b"---\na: 1\n ---\n", b"---x\n---\n"])
def test_front_matter_without_both_fences_is_an_error(data: bytes) -> None:
    with pytest.raises(MatterError):
        split_matter(data)


def test_a_windows_file_reads_like_a_unix_one(tmp_path: Path) -> None:
    data = b"---\r\ntitle: T\r\ndate: 2025-01-01\r\n---\r\nbody\r\n"
    matter, _, offset = split_matter(data)
    assert load_matter(matter.decode(), 2) == {"title": "T", "date": "2025-01-01"}
    assert data[offset:] == b"body\r\n"


@pytest.mark.parametrize(
    "text",
    [
        "image: /img/a.png\nreading_time: 8\n",
        "image: https://cdn.example/a.png?x=1\n",
        "image: 'img/写真.png'\nreading_time: 2.5\n",
        "image:\n  path: /a.png\n  alt: A cat\n",
        "image: {path: a.png}\n",
        "enclosure:\n  url: /ep/1.mp3\n  length: 12345\n  type: audio/mpeg\n",
        "enclosure: {url: 'https://x.example/a.mp3', length: 1}\n",
        "image: 42\nenclosure: a.mp3\nreading_time: ten\n",
        "reading_time: -3\n",
        "reading_time: '8'\n",
    ],
)
def test_images_enclosures_and_reading_times_read_the_same_both_ways(text: str) -> None:
    assert_both_readers_agree("title: T\n" + text)
