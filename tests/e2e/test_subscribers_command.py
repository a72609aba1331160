"""`publisher subscribers ...`: the real command in a subprocess, on a real SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from publisher.errors import PublisherError
from publisher.store import Store
from publisher.store.csv_import import parse_csv, split_categories
from tests.conftest import REPO, Site

NOW = "2026-01-02T03:00:00+09:00"


def run(site: Site, *args: str) -> tuple[int, str, str]:
    done = site.run("--now", NOW, "subscribers", *args)
    return done.returncode, done.stdout, done.stderr


def emails(site: Site) -> list[tuple[str, str, tuple[str, ...], str]]:
    with Store.open(site.config()) as store:
        return [(s.email, s.name, s.categories, s.status) for s in store.list_subscribers()]


# --- add, list, remove --------------------------------------------------------------------


def test_add_list_remove(site: Site) -> None:
    added = run(site, "add", "Ann@Example.COM", "--name", "Ann Lee", "--category", "tech",
                "--category", "life")  # fmt: skip
    assert added == (0, "added Ann@example.com (active; tech, life)\n", "")
    assert run(site, "add", "bob@example.com", "--status", "pending") == (
        0,
        "added bob@example.com (pending; all categories)\n",
        "",
    )
    code, out, err = run(site, "list")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "EMAIL            NAME     STATUS   CATEGORIES  ADDED",
        "Ann@example.com  Ann Lee  active   tech; life  2026-01-02",
        "bob@example.com           pending  (all)       2026-01-02",
        "2 subscribers: 1 active, 1 pending",
    ]
    assert run(site, "list", "--status", "pending")[1].splitlines()[-1] == "1 subscriber: 1 pending"
    assert run(site, "remove", "ann@example.com") == (0, "removed ann@example.com\n", "")
    assert emails(site) == [("bob@example.com", "", (), "pending")]


def test_list_lines_up_japanese_names(site: Site) -> None:
    run(site, "add", "taro@example.jp", "--name", "山田太郎", "--category", "技術")
    run(site, "add", "ann@example.com", "--name", "Ann")
    assert run(site, "list")[1].splitlines()[:3] == [
        "EMAIL            NAME      STATUS  CATEGORIES  ADDED",
        "taro@example.jp  山田太郎  active  技術        2026-01-02",
        "ann@example.com  Ann       active  (all)       2026-01-02",
    ]


def test_list_of_nobody(site: Site) -> None:
    assert run(site, "list") == (0, "0 subscribers\n", "")


def test_add_refuses_bad_and_duplicate_addresses_with_one_line(site: Site) -> None:
    assert run(site, "add", "ann@example") == (
        1,
        "",
        "publisher: 'ann@example': not a valid email address: domain 'example' has no dot\n",
    )
    assert run(site, "add", "ann@example.com")[0] == 0
    assert run(site, "add", "ANN@example.com") == (
        1,
        "",
        "publisher: ANN@example.com: already subscribed\n",
    )
    assert run(site, "remove", "nobody@example.com") == (
        1,
        "",
        "publisher: nobody@example.com: not subscribed\n",
    )
    assert emails(site) == [("ann@example.com", "", (), "active")]


def test_an_unusable_store_is_exit_2_with_one_line(site: Site) -> None:
    (site.root / "blocker").write_text("a file, not a folder")
    site.write_config(store={"url": "sqlite:///blocker/publisher.db"})
    code, out, err = run(site, "list")
    assert code == 2
    assert out == ""
    assert err.startswith("publisher: store.url: cannot create folder ")
    assert len(err.splitlines()) == 1


# --- import and export --------------------------------------------------------------------


def test_import_reports_each_bad_row_and_imports_the_rest(site: Site) -> None:
    (site.root / "people.csv").write_text(
        "\ufeffEmail,Name,Categories,Source\n"  # a BOM and an extra column, as Excel writes
        "ann@example.com,Ann Lee,tech;life,web\n"
        "not-an-address,Bob,,web\n"
        'carol@example.com,"Carol, Jr.",tech | travel,\n'
        "\n"
        ",Nobody,,\n"
        'dave@example.com,"Dave\nSmith",,\n'
        "erin@example.com,Erin,,x,extra\n"
        "ann@example.com,Ann again,,\n"
        "frank@example.com,Frank,,,\n",
        "utf-8",
    )
    code, out, err = run(site, "import", "people.csv")
    assert code == 1
    assert err.splitlines() == [
        "warning: people.csv:1: ignoring column 'Source'",
        "people.csv:3: email: 'not-an-address' must contain exactly one '@'",
        "people.csv:6: email: is missing",
        "people.csv:7: name: must be one line",
        "people.csv:9: 5 fields, but the header has 4",
        "people.csv:10: email: duplicate of line 2; line 2's name and categories are kept",
    ]
    assert out == "imported 3 from people.csv, 5 rows rejected\n"
    assert emails(site) == [
        ("ann@example.com", "Ann Lee", ("tech", "life"), "active"),
        ("carol@example.com", "Carol, Jr.", ("tech", "travel"), "active"),
        ("frank@example.com", "Frank", (), "active"),
    ]


def test_export_then_import_gives_the_same_list(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run(site, "add", "ann@example.com", "--name", 'Ann "A" Lee, PhD', "--category", "日本語")
    run(site, "add", "bob@example.com", "--status", "pending")
    run(site, "add", "carol@example.com", "--category", "tech", "--category", "life")
    code, exported, err = run(site, "export")
    assert (code, err) == (0, "")
    assert exported.splitlines() == [
        "email,name,categories,status",
        'ann@example.com,"Ann ""A"" Lee, PhD",日本語,active',
        "bob@example.com,,,pending",
        "carol@example.com,,tech;life,active",
    ]
    other = Site(tmp_path_factory.mktemp("other"), dict(site.settings))
    other.write_config()
    (other.root / "subscribers.csv").write_text(exported, "utf-8")
    assert run(other, "import", "subscribers.csv") == (0, "imported 3 from subscribers.csv\n", "")
    assert emails(other) == emails(site)
    assert run(other, "export")[1] == exported


def test_import_without_a_header_and_from_stdin(site: Site) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "publisher", "subscribers", "import", "-", "--status", "pending"],
        cwd=site.root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        input="ann@example.com,Ann,tech\nbob@example.com\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "imported 2 from <stdin>\n", "")
    assert emails(site) == [
        ("ann@example.com", "Ann", ("tech",), "pending"),
        ("bob@example.com", "", (), "pending"),
    ]


def test_import_of_a_file_that_cannot_be_used(site: Site) -> None:
    assert run(site, "import", "missing.csv") == (2, "", "publisher: missing.csv: no such file\n")
    (site.root / "odd.csv").write_text("name,city\nAnn,Paris\n")
    assert run(site, "import", "odd.csv") == (
        2,
        "",
        "publisher: odd.csv:1: no 'email' column; the first line must name the columns,"
        " such as email,name,categories,status\n",
    )
    assert emails(site) == []


# --- the CSV reader itself ----------------------------------------------------------------


def test_parse_csv_reports_the_line_a_record_starts_on() -> None:
    text = 'email,name\n"a@example.com","two\nlines"\nbad,x\n'
    result = parse_csv(text, "f.csv")
    assert result.rows == []
    assert [p for _, p in result.problems] == [
        "f.csv:2: name: must be one line",
        "f.csv:4: email: 'bad' must contain exactly one '@'",
    ]


def test_parse_csv_status_column() -> None:
    result = parse_csv("email,status\na@example.com,active\nb@example.com,gone\n", "f.csv")
    assert [(r.email, r.status) for r in result.rows] == [("a@example.com", "active")]
    assert [p for _, p in result.problems] == [
        "f.csv:3: status: 'gone' must be one of pending, active, unsubscribed, bounced, complained"
    ]


def test_parse_csv_of_an_empty_file_and_of_garbage() -> None:
    assert parse_csv("", "f.csv").rows == []
    with pytest.raises(PublisherError, match="no 'email' column"):
        parse_csv("\x00\x01\x02\n", "f.csv")


def test_split_categories() -> None:
    assert split_categories(" tech; life|travel ;;tech") == ("tech", "life", "travel")
    assert split_categories("") == ()


# --- names and duplicates: nothing a subscriber types can stop a digest -------------------


def test_a_name_that_is_not_utf8_is_one_line_and_exit_2(site: Site) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "publisher", "subscribers", "add", "raw@example.com", "--name",
         os.fsdecode(b"Hi\x85Bcc: x")],
        cwd=site.root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "publisher: --name 'Hi\\x85Bcc: x': is not valid UTF-8"
        " (check the encoding of the terminal or script)\n"
    )
    assert emails(site) == []


def test_names_with_line_breaks_are_refused_and_controls_cleaned(site: Site) -> None:
    encoded = "=?utf-8?q?Hi=0D=0ABcc=3A_evil@example.com?="
    assert run(site, "add", "enc@example.com", "--name", encoded) == (
        1,
        "",
        f"publisher: name {encoded!r}: must be one line\n",
    )
    code, _, err = run(site, "add", "ff@example.com", "--name", "Ann\x0cBcc: x")
    assert (code, err) == (1, "publisher: name 'Ann\\x0cBcc: x': must be one line\n")
    assert run(site, "add", "tab@example.com", "--name", "Ann\tLee\x01")[0] == 0
    assert run(site, "add", "ok@example.com", "--name", "=?utf-8?b?5bGx55Sw?=")[0] == 0
    assert emails(site) == [
        ("tab@example.com", "Ann Lee", (), "active"),
        ("ok@example.com", "山田", (), "active"),
    ]


def test_import_names_each_duplicate_row_and_keeps_the_first(site: Site) -> None:
    (site.root / "dupes.csv").write_text(
        "email,name,categories\n"
        "ann@example.com,Ann,tech\n"
        "bob@example.com,Bob,\n"
        "ANN@Example.com,Ann Upper,life\n"
        "enc@example.com,=?utf-8?q?Hi=0D=0ABcc=3A_x@example.com?=,\n"
        "ann@example.com,Ann third,\n",
        "utf-8",
    )
    code, out, err = run(site, "import", "dupes.csv")
    assert code == 1
    assert err.splitlines() == [
        "dupes.csv:4: email: duplicate of line 2; line 2's name and categories are kept",
        "dupes.csv:5: name: must be one line",
        "dupes.csv:6: email: duplicate of line 2; line 2's name and categories are kept",
    ]
    assert out == "imported 2 from dupes.csv, 3 rows rejected\n"
    assert emails(site) == [
        ("ann@example.com", "Ann", ("tech",), "active"),
        ("bob@example.com", "Bob", (), "active"),
    ]
