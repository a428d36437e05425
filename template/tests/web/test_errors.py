"""Every error, the framework's own included, uses the contract's JSON envelope."""

import json
from collections.abc import Callable

import pytest
from sqlalchemy import text

from ..helpers import Database, Settings, settings_with
from .api import PASSWORD, Api


def test_unknown_path_is_a_json_404(api: Api) -> None:
    reply = api.get("/no/such/path")
    assert reply.status == 404
    assert reply.body == {"detail": "Not Found.", "code": "not_found"}


def test_wrong_method_is_a_json_405_with_allow(api: Api) -> None:
    reply = api.request("DELETE", "/auth/login")
    assert reply.status == 405
    assert reply.body == {"detail": "Method Not Allowed.", "code": "method_not_allowed"}
    assert "POST" in reply.headers["Allow"]
    # Every method of the resource, though two routes share the path.
    allowed = set(api.request("PUT", "/users/me").headers["Allow"].split(", "))
    assert {"GET", "DELETE"} <= allowed


def test_server_failure_is_a_json_500_that_leaks_nothing(
    api: Api, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with database.session() as session:
        session.execute(text("ALTER TABLE users RENAME TO users_elsewhere"))
    try:
        reply = api.register("alice")
    finally:  # the other tests share this database
        with database.session() as session:
            session.execute(text("ALTER TABLE users_elsewhere RENAME TO users"))
    assert reply.status == 500
    assert reply.body == {
        "detail": "The server failed to handle the request.",
        "code": "internal_error",
    }
    # Logged once, with the SQL but never its parameters (a username, a token id...).
    assert len([record for record in caplog.records if record.levelname == "ERROR"]) == 1
    assert "hidden due to hide_parameters" in caplog.text
    assert "alice" not in caplog.text


@pytest.mark.parametrize("path", ["/health", "/.well-known/jwks.json", "/users/me"])
def test_head_answers_wherever_get_does(api: Api, path: str) -> None:
    """RFC 9110 section 9.1: HEAD wherever GET, the same status and headers, no body."""
    get, head = api.request("GET", path), api.request("HEAD", path)
    assert head.status == get.status
    assert head.body is None
    assert head.headers["Content-Type"] == get.headers["Content-Type"]


def test_head_on_a_post_route_is_a_405(api: Api) -> None:
    reply = api.request("HEAD", "/auth/login")
    assert reply.status == 405
    assert "POST" in reply.headers["Allow"]


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_a_json_body_sent_as_another_type_is_a_415(api: Api, content_type: str | None) -> None:
    """Both frameworks refuse it the same way, with what to send; nothing is registered."""
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"username": "alice", "password": "correct horse battery"}'
    reply = api.post("/auth/register", content=body, headers=headers)
    assert reply.status == 415
    assert reply.body == {
        "detail": "Send the body as JSON, with Content-Type: application/json.",
        "code": "unsupported_media_type",
    }
    assert api.register("alice").status == 201  # the name was not taken by the refused one


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_a_token_request_sent_as_neither_form_nor_json_is_a_415(
    make_api: Callable[[Settings], Api], settings: Settings, content_type: str | None
) -> None:
    """The token endpoint takes RFC 6749's form or JSON; a body of another type (or of none) is
    refused as on every other route, in the service's envelope (not an OAuth2 error: RFC 6749
    has no code for it, and OAuth2 clients send forms). The refresh token is not used up."""
    api = make_api(settings_with(settings, refresh_strategy="rotating"))
    api.register("alice")
    headers = {"Content-Type": content_type} if content_type else {}
    refused = {
        "detail": "Send the body as a form (Content-Type: application/x-www-form-urlencoded)"
        " or as JSON (application/json).",
        "code": "unsupported_media_type",
    }
    credentials = {"username": "alice", "password": PASSWORD}
    reply = api.post("/auth/login", content=json.dumps(credentials).encode(), headers=headers)
    assert (reply.status, reply.body) == (415, refused)
    tokens = api.post("/auth/login", json=credentials).body
    body = json.dumps({"refresh_token": tokens["refresh_token"]}).encode()
    for path in ("/auth/refresh", "/auth/login"):
        reply = api.post(path, content=body, headers=headers)
        assert (reply.status, reply.body) == (415, refused), path
    assert api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status == 200


def test_json_media_types_with_parameters_or_suffixes_are_json(api: Api) -> None:
    body = b'{"username": "alice", "password": "correct horse battery"}'
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        reply = api.post("/auth/register", content=body, headers={"Content-Type": content_type})
        assert reply.status in (201, 409), reply.body


@pytest.mark.parametrize(
    ("path", "methods"),
    [("/users/me", {"GET", "HEAD", "DELETE", "OPTIONS"}), ("/auth/login", {"POST", "OPTIONS"})],
)
def test_options_lists_the_methods_of_the_resource(api: Api, path: str, methods: set[str]) -> None:
    """The same answer on both frameworks (RFC 9110 section 9.3.7); a browser's preflight gets
    the CORS answer instead (test_cors.py)."""
    reply = api.request("OPTIONS", path)
    assert reply.status == 200
    assert set(reply.headers["Allow"].split(", ")) == methods
    assert reply.text == ""
    assert "Content-Type" not in reply.headers  # no body, so no type
    assert api.request("OPTIONS", "/no/such/path").status == 404
