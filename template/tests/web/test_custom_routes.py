"""The project's own routes: `web/routes/custom.py` is where the README says to add them, and
`create_app` serves what is there."""

from __future__ import annotations

from collections.abc import Callable

from .api import Api


def test_a_route_added_in_routes_custom_is_served(
    custom_route_api: Callable[[str], Api],
) -> None:
    api = custom_route_api("/orders/summary")
    reply = api.get("/orders/summary")
    assert (reply.status, reply.body) == (200, {"custom": "/orders/summary"})
    assert api.get("/users/me").status == 401  # beside the template's routes, not instead
