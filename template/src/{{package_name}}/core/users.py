"""Registering users, checking their passwords and looking them up."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .db import Database, Revocation, User
from .errors import InvalidCredentials, RevokedToken, UnknownUser, UsernameTaken
from .passwords import PasswordHasher


class UserService:
    """The user store: usernames are unique ignoring case; passwords are never stored."""

    def __init__(self, database: Database, hasher: PasswordHasher) -> None:
        self._database = database
        self._hasher = hasher

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
            raise InvalidCredentials()
        if not self._hasher.verify(password, user.password_hash):
            raise InvalidCredentials()
        return user

    def by_subject(self, subject: str, unless_revoked: Iterable[str | None] = ()) -> User:
        """Return the user a token's `sub` names, or raise `UnknownUser`.

        With `unless_revoked` (a token's `jti` and session id), raise `RevokedToken` if any of
        them is revoked: the same single query reads both.
        """
        try:
            user_id = uuid.UUID(subject)
        except ValueError as exc:
            raise UnknownUser() from exc
        keys = [key for key in unless_revoked if key]
        revoked = select(Revocation.id).where(Revocation.id.in_(keys)).exists()
        with self._database.session() as session:
            row = session.execute(select(User, revoked).where(User.id == user_id)).first()
        if row is None:
            raise UnknownUser()
        if row[1]:
            raise RevokedToken()
        return row[0]
