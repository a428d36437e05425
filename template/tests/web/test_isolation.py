"""The fixtures keep tests apart: what one test does to its app or its data, no later test
sees. (The tests run in this order: each first test leaves something behind.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import func, select

from ..helpers import Database, PerSettings, Settings, User, settings_with
from .api import Api

PATH = "/test/only-in-one-test"


def test_a_test_adds_a_route_to_its_app(
    app_api: Api, add_token_route: Callable[[str], None]
) -> None:
    add_token_route(PATH)
    assert app_api.get(PATH).status == 401  # there, and protected


def test_the_next_tests_app_does_not_have_it(app_api: Api, api: Api) -> None:
    assert app_api.get(PATH).status == 404
    assert api.get(PATH).status == 404


def test_a_test_registers_a_user(api: Api) -> None:
    assert api.register("leftover").status == 201


def test_the_next_test_starts_with_no_users(api: Api, database: Database) -> None:
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 0
    assert api.register("leftover").status == 201


# The shared apps (`PerSettings`) keep few open: what a test was handed stays open all the
# same until it ends, however many settings it asks for.

closed: list[Settings] = []


@contextmanager
def recorded(settings: Settings) -> Iterator[object]:
    yield object()
    closed.append(settings)


KEEP_ONE = PerSettings(recorded, keep=1)


def several(settings: Settings) -> list[Settings]:
    return [settings_with(settings, access_token_minutes=minutes) for minutes in (5, 6, 7)]


def test_a_test_keeps_every_app_it_was_handed(settings: Settings) -> None:
    first, *others = several(settings)
    opened = KEEP_ONE(first)
    for other in others:
        KEEP_ONE(other)
    assert KEEP_ONE(first) is opened
    assert closed == []


def test_the_next_test_closes_the_least_recently_used(settings: Settings) -> None:
    first, second, third = several(settings)
    KEEP_ONE(settings)
    assert closed == [second, third, first]
    with KEEP_ONE:
        pass
    assert closed == [second, third, first, settings]
