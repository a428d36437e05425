"""The fixtures keep tests apart: what one test does to its app or its data, no later test
sees. (The tests run in this order: each first test leaves something behind.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
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


def test_a_test_keeps_every_app_it_was_handed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared apps (`PerSettings`) keep few open, but every one the running test asked
    for stays open until the next test starts."""
    closed: list[Settings] = []

    @contextmanager
    def recorded(settings: Settings) -> Iterator[object]:
        yield object()
        closed.append(settings)

    first, second, third, fourth = (
        settings_with(settings, access_token_minutes=minutes) for minutes in (5, 6, 7, 8)
    )
    with PerSettings(recorded, keep=1) as keep_one:
        opened = keep_one(first)
        keep_one(second)
        keep_one(third)
        assert keep_one(first) is opened
        assert closed == []
        monkeypatch.setattr(PerSettings, "test", PerSettings.test + 1)  # the next test
        keep_one(fourth)
        assert closed == [second, third, first]
    assert closed == [second, third, first, fourth]
