"""Registering users, checking their passwords and looking them up."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from .db import REVOKED, Database, User, revocation_parameters
from .errors import InvalidCredentials, RevokedToken, UnknownUser, UsernameTaken
from .events import security_event
from .passwords import PasswordHasher


@dataclass(frozen=True)
class Profile:
    """What a token's user may see of itself."""

    id: uuid.UUID
    username: str


class UserService:
    """The user store: usernames are unique ignoring case; passwords are never stored."""

    def __init__(self, database: Database, hasher: PasswordHasher) -> None:
        self._database = database
        self._hasher = hasher
        # The user's name and whether the token (or its login) is revoked, in one read.
        self._profile = database.prepare(
            select(User.username, REVOKED.exists()).where(User.id == bindparam("user_id"))
        )

    def register(self, username: str, password: str) -> User:
        """Create a user, or raise `UsernameTaken`; the database decides races."""
        user = User(
            username=username,
            username_key=username.lower(),
            password_hash=self._hasher.hash(password),
        )
        try:
            with self._database.session() as session:
                session.add(user)
        except IntegrityError as exc:
            raise UsernameTaken() from exc
        return user

    def authenticate(self, username: str, password: str) -> User:
        """Return the user with these credentials, or raise `InvalidCredentials`.

        Unknown usernames cost one dummy verification, so timing does not reveal them.
        """
        with self._database.session() as session:
            user = session.scalar(select(User).where(User.username_key == username.lower()))
        if user is None:
            self._hasher.verify_unknown_user(password)
            security_event("login_failed", reason="unknown_user")
            raise InvalidCredentials()
        if not self._hasher.verify(password, user.password_hash):
            security_event("login_failed", reason="wrong_password", user_id=user.id)
            raise InvalidCredentials()
        security_event("login_succeeded", user_id=user.id)
        return user

    def by_subject(
        self, subject: str, token_id: str | None = None, session_id: str | None = None
    ) -> Profile:
        """Return the user a token's `sub` names, or raise `UnknownUser`; with the token's `jti`
        (and session id), raise `RevokedToken` if either is revoked. One read for both."""
        try:
            user_id = uuid.UUID(subject)
        except ValueError as exc:
            raise UnknownUser() from exc
        row = self._profile.first(
            {"user_id": user_id, **revocation_parameters(token_id, session_id)}
        )
        if row is None:
            raise UnknownUser()
        username, revoked = row
        if revoked:
            raise RevokedToken()
        return Profile(id=user_id, username=username)
