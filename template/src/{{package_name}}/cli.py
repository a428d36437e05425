"""The command line: `<package> keys ...` manages the key ring in JWT_KEYS_DIR; `<package> db
upgrade|current|history|downgrade` manages the schema (Alembic migrations); `<package> db cleanup`
deletes records that can no longer matter; `<package> users disable|enable|logout-all NAME`
manages accounts.

A zero-downtime rotation across several instances (see README, "Rotating keys"): `keys stage`;
once verifiers have the new JWK Set, `keys rotate`; after the grace period, `keys retire`.
Running services reread the key ring within a second: no restart.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import claims as project
from .core import schema
from .core.db import User
from .core.errors import ConfigError, ServiceUnavailable
from .core.keyring import KeyRing
from .core.keys import generate_key_material
from .core.refresh import Strategy, delete_expired
from .core.service import AuthService, database_of
from .core.throttle import Throttle, ThrottleLimits
from .settings import Settings, load_settings


def build_parser() -> argparse.ArgumentParser:
    """Describe the commands and their options."""
    parser = argparse.ArgumentParser(prog=__package__, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="group", required=True)
    keys = commands.add_parser("keys", help="manage signing keys").add_subparsers(
        dest="command", required=True
    )
    keys.add_parser("show", help="list the keys in JWT_KEYS_DIR and their roles")
    keys.add_parser("stage", help="add the next key, trusted for verification but not signing")
    rotate = keys.add_parser("rotate", help="make the staged (or a new) key the signing key")
    rotate.add_argument(
        "--grace-minutes",
        type=int,
        help="how long the old key stays trusted (default: until every token it signed has "
        "expired; minimum: the access-token lifetime)",
    )
    retire = keys.add_parser("retire", help="delete retiring keys whose grace period is over")
    retire.add_argument("--all", action="store_true", help="retire every old key now")
    keys.add_parser("generate", help="print new key material for JWT_SECRET / JWT_PRIVATE_KEY")
    database = commands.add_parser("db", help="maintain the database").add_subparsers(
        dest="command", required=True
    )
    database.add_parser("upgrade", help="apply every migration the database lacks")
    database.add_parser("current", help="show the revisions the database is at")
    database.add_parser("history", help="list the migrations")
    downgrade = database.add_parser("downgrade", help="undo migrations down to a revision")
    downgrade.add_argument("revision", help="the revision to go back to (`base`: none)")
    database.add_parser(
        "cleanup", help="delete expired revocations, refresh-token, reset and throttling records"
    )
    users = commands.add_parser("users", help="manage accounts").add_subparsers(
        dest="command", required=True
    )
    for command, help_text in (
        ("disable", "refuse the user's logins and end every session of theirs"),
        ("enable", "let a disabled user log in again"),
        ("logout-all", "end every session of the user, on every device"),
    ):
        users.add_parser(command, help=help_text).add_argument("username")
    for command, help_text in (
        ("grant", "give the user scopes (roles); they reach its tokens at the next refresh"),
        ("revoke", "take scopes from the user; gone from its tokens at the next refresh"),
    ):
        scoped = users.add_parser(command, help=help_text)
        scoped.add_argument("username")
        scoped.add_argument("scopes", nargs="+", metavar="scope", help="one of claims.SCOPES")
    return parser


def run_keys(command: str, options: argparse.Namespace, settings: Settings) -> str:
    """Carry out one `keys` command; return what to print."""
    if command == "generate":
        return generate_key_material(settings.jwt_algorithm).strip()
    ring = KeyRing(settings.jwt_keys_dir, settings.jwt_algorithm)
    if command == "rotate" and not ring.exists:
        ring.create()
        return f"Created a key ring in {ring.directory}; current key {ring.describe()[0][0]}"
    if command == "stage":
        return (
            f"Staged {ring.stage()}: running services trust it within a second; run "
            f"`keys rotate` once other services have fetched the new JWK Set."
        )
    if command == "rotate":
        minimum = settings.access_token_minutes
        default = minimum + (
            0 if settings.refresh_strategy is Strategy.NONE else settings.refresh_token_days * 1440
        )
        grace = default if options.grace_minutes is None else options.grace_minutes
        if grace < minimum:
            raise ConfigError(
                f"--grace-minutes must be at least the access-token lifetime ({minimum})"
            )
        new, old = ring.rotate(grace * 60)
        return f"Current key is now {new}; {old} stays trusted for {grace} minutes."
    if command == "retire":
        retired = ring.retire(everything=options.all)
        return f"Retired {', '.join(retired)}." if retired else "No key to retire."
    return "\n".join(f"{kid}  {role}" for kid, role in ring.describe())


def run_db(command: str, options: argparse.Namespace, settings: Settings) -> str:
    """Carry out one `db` command: they need the database only, not the keys."""
    if command == "history":
        return schema.history().rstrip()
    database = database_of(settings)
    try:
        if command == "upgrade":
            before = schema.current(database)
            adopted = schema.upgrade(database)
            found = schema.current(database)
            after = ", ".join(sorted(found))
            if adopted:
                return (
                    f"Adopted the tables of template 0.2.0 (no migration history: stamped "
                    f"{schema.BASELINE}), then upgraded the database from {schema.BASELINE} "
                    f"to {after}."
                )
            if found == before:
                return f"The database is up to date ({after})."
            was = ", ".join(sorted(before)) or "nothing"
            return f"Upgraded the database from {was} to {after}."
        if command == "downgrade":
            schema.downgrade(database, options.revision)
            return f"The database is at {', '.join(sorted(schema.current(database))) or 'base'}."
        if command == "current":
            found, needed = schema.current(database), schema.heads()
            state = "up to date" if found == needed else f"behind: the code needs {sorted(needed)}"
            return f"{', '.join(sorted(found)) or 'no revision'} ({state})"
        now = int(time.time())
        removed = delete_expired(database, now, settings.jwt_leeway_seconds)
        removed += Throttle(database, ThrottleLimits.from_settings(settings)).delete_expired(now)
    except ServiceUnavailable as exc:
        raise ConfigError(f"DATABASE_URL: {exc.detail}") from exc
    finally:
        database.dispose()
    return f"Deleted {removed} expired records."


def run_users(command: str, options: argparse.Namespace, settings: Settings) -> str:
    """Carry out one `users` command (the service's keys are loaded: cutting a user off is
    a revocation, and running services learn of it as they learn of logouts)."""
    auth = AuthService.from_settings(settings, listen=False)
    try:
        user = auth.users.by_username(options.username)
        if user is None:
            raise ConfigError(f"no user is named {options.username!r}")
        if command in {"grant", "revoke"}:
            return (
                f"{user.username}: scopes {_changed_scopes(auth, user, command, options.scopes)}."
            )
        if command != "logout-all":
            auth.users.set_disabled(user.id, disabled=command == "disable")
        if command != "enable":
            auth.sessions.end_everywhere(user.id)
    except ServiceUnavailable as exc:
        raise ConfigError(f"DATABASE_URL: {exc.detail}") from exc
    finally:
        auth.database.dispose()
    done = {"disable": "disabled", "enable": "enabled", "logout-all": "logged out everywhere"}
    return f"{user.username}: {done[command]}."


def _changed_scopes(auth: AuthService, user: User, command: str, scopes: list[str]) -> str:
    """Grant or revoke scopes (known ones only: `claims.SCOPES`); what the user has now."""
    unknown = sorted(set(scopes) - set(project.SCOPES))
    if unknown:
        known = ", ".join(sorted(project.SCOPES)) or "none yet"
        raise ConfigError(
            f"unknown scope {', '.join(unknown)}: the known ones are {known} "
            f"(add yours to SCOPES in src/{__package__}/claims.py)"
        )
    held = set(user.scopes.split())
    now = held | set(scopes) if command == "grant" else held - set(scopes)
    return auth.users.set_scopes(user.id, now) or "none"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m <package>` and the `<package>` script."""
    options = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if options.group == "db":
            print(run_db(options.command, options, settings))
        elif options.group == "users":
            print(run_users(options.command, options, settings))
        else:
            print(run_keys(options.command, options, settings))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
