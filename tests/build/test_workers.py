"""A cold build spread over forked workers makes exactly what one process makes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from publisher.build.pipeline import build
from publisher.build.workers import map_chunks
from publisher.errors import ConfigError
from tests.conftest import Site

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers are forked")


def _tagged(items: Sequence[int]) -> list[tuple[int, int]]:
    return [(os.getpid(), item * 2) for item in items]


def test_map_chunks_keeps_the_order_and_really_uses_other_processes() -> None:
    results = map_chunks(_tagged, list(range(10)), 2)
    assert [value for _, value in results] == [2 * i for i in range(10)]
    assert len({pid for pid, _ in results}) == 2
    assert results[0][0] == os.getpid()  # the caller does one share itself


@pytest.mark.parametrize("failing", [0, 1])  # the caller's own chunk, or the worker's
def test_when_a_chunk_fails_the_others_results_are_discarded(tmp_path: Path, failing: int) -> None:
    # Each item leaves a file, as a staged archive page does; a failing chunk
    # removes its own, and discard must remove the other chunk's.
    def make(items: Sequence[int]) -> list[str]:
        made = []
        for item in items:
            path = tmp_path / f"{item}.tmp"
            path.write_text("x")
            made.append(str(path))
        if items[0] == failing * 5:
            for name in made:
                os.unlink(name)
            raise ValueError(f"chunk {failing} failed")
        return made

    discarded: list[str] = []

    def discard(results: list[str]) -> None:
        for name in results:
            os.unlink(name)
        discarded.extend(results)

    with pytest.raises(ValueError, match=f"chunk {failing} failed"):
        map_chunks(make, list(range(10)), 2, discard=discard)
    assert list(tmp_path.iterdir()) == []
    other = range(5, 10) if failing == 0 else range(5)
    assert sorted(discarded) == sorted(str(tmp_path / f"{i}.tmp") for i in other)


def _many_posts(site: Site, count: int = 420) -> None:
    # Enough posts, categories and feeds that parsing, rendering and making the
    # feed documents are each worth two processes.
    for i in range(count):
        day = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}"
        site.post(
            f"{day}-post-{i}.md",
            f"title: Post {i}\ncategories: [C{i % 20}]\ntags: [t{i % 7}]",
            f"Body of post {i} with *emphasis* and a [link](../x{i}.html).\n",
        )


def test_a_parallel_cold_build_writes_the_same_bytes_as_a_serial_one(
    site: Site, tmp_path: Path
) -> None:
    _many_posts(site)
    config = site.config()
    serial = build(config, use_cache=False, parallel=False)
    expected = {p.relative_to(site.output): p.read_bytes() for p in site.output.rglob("*.*")}
    shutil.rmtree(site.output)
    parallel = build(config, use_cache=False, parallel=True)
    got = {p.relative_to(site.output): p.read_bytes() for p in site.output.rglob("*.*")}
    assert got == expected
    archived = [path for path in got if "archive" in path.parts]
    assert len(got) - len(archived) == 3 * 21 + 2  # 21 feed sets, OPML, index
    assert len(archived) == 3 * 9  # the site: 8 full pages and the open one (categories: 21 posts)
    # Every post is in a current feed (no category has a full archive page yet), but
    # each category's oldest, the 21st, only in summary: max_items is 20.
    assert (parallel.parsed, parallel.rendered) == (serial.parsed, serial.rendered) == (420, 400)


def test_a_template_error_in_a_worker_is_the_same_one_line(site: Site) -> None:
    _many_posts(site)
    (site.root / "templates").mkdir()
    (site.root / "templates" / "index.html.j2").write_text("{{ site.title }\n", "utf-8")
    with pytest.raises(ConfigError) as raised:
        build(site.config(), use_cache=False, parallel=True)
    (line,) = str(raised.value).splitlines()
    assert line.startswith(f"{site.root / 'templates' / 'index.html.j2'}: line 1: ")
    # Nothing is left in the output folder, not even a temporary file.
    assert not [p for p in site.output.rglob("*") if p.is_file()]
