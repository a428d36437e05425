"""Registering users, checking their passwords and looking them up."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .db import Database, User
from .errors import InvalidCredentials, UnknownUser, UsernameTaken
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

    def by_subject(self, subject: str) -> User:
        """Return the user a token's `sub` names, or raise `UnknownUser`."""
        try:
            user_id = uuid.UUID(subject)
        except ValueError as exc:
            raise UnknownUser() from exc
        with self._database.session() as session:
            user = session.get(User, user_id)
        if user is None:
            raise UnknownUser()
        return user
