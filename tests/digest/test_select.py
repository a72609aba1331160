"""Digest selection, driven with plain posts and subscribers: no store, no files."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from publisher.digest.select import first_digest_floor, follows, group_posts, select
from publisher.site.posts import Post

DUE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def post(name: str, days_ago: float, *categories: str) -> Post:
    return Post(
        source=f"posts/{name}.md",
        title=name.title(),
        date=DUE - timedelta(days=days_ago),
        slug=name,
        permalink=f"/{name}.html",
        id=f"tag:example.com,2026:{name}",
        digest="0" * 32,
        body_line=5,
        categories=categories,
    )


@dataclass
class Reader:
    categories: tuple[str, ...] = ()


A = post("a", 1, "Python")
B = post("b", 2, "AI技術")
C = post("c", 3, "Python", "AI技術")
D = post("d", 4)
OLD = post("old", 30, "Python")
PUBLISHED = [A, B, C, D, OLD]  # newest first, as load_site gives them
FLOOR = DUE - WEEK


def ids(selection: object) -> list[str]:
    assert selection is not None
    return [p.id.rsplit(":", 1)[1] for p in selection.posts]  # type: ignore[attr-defined]


def test_following_nothing_means_everything_in_the_window() -> None:
    chosen = select(PUBLISHED, Reader(), set(), FLOOR)
    assert sorted(ids(chosen)) == ["a", "b", "c", "d"]


def test_only_followed_categories_case_insensitively() -> None:
    assert sorted(ids(select(PUBLISHED, Reader(("python",)), set(), FLOOR))) == ["a", "c"]
    assert sorted(ids(select(PUBLISHED, Reader(("AI技術",)), set(), FLOOR))) == ["b", "c"]
    assert not follows(("Go",), A)
    assert follows((), D)


def test_delivered_posts_are_never_sent_again() -> None:
    delivered = {A.id, C.id}
    assert sorted(ids(select(PUBLISHED, Reader(), delivered, FLOOR))) == ["b", "d"]


def test_nothing_new_means_no_digest() -> None:
    everything = {p.id for p in PUBLISHED}
    assert select(PUBLISHED, Reader(), everything, FLOOR) is None
    assert select(PUBLISHED, Reader(("Go",)), set(), FLOOR) is None


def test_an_edited_post_keeps_its_id_and_is_not_resent() -> None:
    edited = A._replace(title="A, revised", digest="1" * 32)
    assert select([edited], Reader(), {A.id}, FLOOR) is None


def test_a_backdated_or_formerly_future_post_still_arrives_once() -> None:
    # Published after the last digest went out but dated before it: still new.
    late = post("late", 6, "Python")
    delivered = {A.id, C.id}
    assert ids(select([A, late, C], Reader(("Python",)), delivered, FLOOR)) == ["late"]
    assert select([A, late, C], Reader(("Python",)), delivered | {late.id}, FLOOR) is None


def test_first_digest_floor() -> None:
    # Joined before this period fell due: the first digest is the first due after joining.
    joined = DUE - timedelta(days=3)
    assert first_digest_floor(joined, DUE, DUE, WEEK) == DUE - WEEK
    # Joined long ago: the floor stays where their first digest put it.
    long_ago = DUE - timedelta(days=100)
    first = long_ago + timedelta(days=2)
    assert first_digest_floor(long_ago, DUE, first, WEEK) == first - WEEK
    # Joined after this period fell due but before it is sent: this is their first.
    assert first_digest_floor(DUE + timedelta(hours=1), DUE, DUE + WEEK, WEEK) == DUE - WEEK


def test_window_excludes_the_archive() -> None:
    assert OLD not in select(PUBLISHED, Reader(("Python",)), set(), FLOOR).posts  # type: ignore[union-attr]
    assert OLD in select(PUBLISHED, Reader(("Python",)), set(), DUE - 31 * WEEK).posts  # type: ignore[union-attr]


def test_grouping_shows_each_post_once_under_a_followed_category() -> None:
    every = group_posts([A, B, C, D], ())
    assert [(g.name, [p.slug for p in g.posts]) for g in every.groups] == [
        ("AI技術", ["b"]),
        ("Python", ["a", "c"]),
        ("", ["d"]),
    ]
    ai_only = group_posts([B, C], ("ai技術",))
    assert [(g.name, [p.slug for p in g.posts]) for g in ai_only.groups] == [("AI技術", ["b", "c"])]


def test_selection_key_matches_for_identical_digests() -> None:
    one = select(PUBLISHED, Reader(("Python",)), set(), FLOOR)
    two = select(PUBLISHED, Reader(("python",)), set(), FLOOR)
    other = select(PUBLISHED, Reader(("Python",)), {A.id}, FLOOR)
    assert one is not None and two is not None and other is not None
    assert one.key == two.key
    assert one.key != other.key
    assert one.post_ids == (A.id, C.id)


def test_planning_many_subscribers_decides_what_select_decides_for_each() -> None:
    # plan_selections shares the work between subscribers who follow the same
    # categories and joined alike: each must still get exactly select()'s digest.
    import random
    from pathlib import Path

    from publisher.config import parse_config
    from publisher.digest.period import Period
    from publisher.digest.plan import _first_dues, _joined, plan_selections
    from publisher.store import Subscriber

    rng = random.Random(5)
    names = ["Python", "python", "AI技術", "Go", "Rust"]
    published = sorted(
        (
            post(f"p{i}", rng.uniform(0, 60), *rng.sample(names, rng.randint(0, 2)))
            for i in range(40)
        ),
        key=lambda p: p.date,
        reverse=True,
    )
    config = parse_config({"site": {"title": "T", "url": "https://example.com"}}, Path("."))
    subscribers, delivered = [], {}
    for i in range(300):
        joined = DUE - timedelta(days=rng.choice([1, 3, 10, 40, 90]))
        subscribers.append(
            Subscriber(
                id=i,
                email=f"s{i}@example.net",
                name="",
                categories=tuple(rng.sample(names, rng.randint(0, 3))),
                status="active",
                created_at=joined,
                updated_at=joined,
                confirmed_at=None,
            )
        )
        delivered[i] = {p.id for p in published if rng.random() < 0.3}
    period = Period("2026-W48", DUE)
    chosen, nothing = plan_selections(config, period, published, subscribers, delivered.get)
    first = _first_dues(config, [_joined(s) for s in subscribers if _joined(s) <= DUE])
    expected = {}
    for s in subscribers:
        floor = first_digest_floor(_joined(s), DUE, first[_joined(s)], config.digest.first_window)
        one = select(published, s, delivered[s.id], floor)
        if one is not None:
            expected[s.id] = one
    assert chosen == expected and nothing == len(subscribers) - len(expected)
    assert 0 < len(expected) < len(subscribers)
