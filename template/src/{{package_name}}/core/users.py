"""Registering users, checking their passwords, looking them up and changing them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .claims import Claims, user_id_of
from .db import REVOKED, Database, PasswordReset, RefreshToken, User, revocation_parameters
from .errors import (
    AccountDisabled,
    EmailTaken,
    InvalidCredentials,
    RevokedToken,
    UnknownUser,
    UsernameTaken,
    WrongPassword,
)
from .events import security_event
from .password_policy import PasswordPolicy
from .passwords import PasswordHasher


@dataclass(frozen=True)
class Profile:
    """What a token's user may see of itself."""

    id: uuid.UUID
    username: str
    email: str | None = None


class UserService:
    """The user store: usernames and e-mail addresses are unique ignoring case; passwords are
    never stored, only their Argon2id hashes."""

    def __init__(
        self, database: Database, hasher: PasswordHasher, policy: PasswordPolicy | None = None
    ) -> None:
        self._database = database
        self.hasher = hasher
        self.policy = policy or PasswordPolicy(min_strength=0)
        # The user's name and address and whether the token is revoked, in one read.
        self._profile = database.prepare(
            select(User.username, User.email, REVOKED.exists()).where(
                User.id == bindparam("user_id")
            )
        )

    def register(self, username: str, password: str, email: str | None = None) -> User:
        """Create a user, or raise `UsernameTaken` / `EmailTaken` (the database decides races)
        or `WeakPassword`."""
        self.policy.check(password, username=username, email=email)
        return self.create(username, password, email)

    def create(self, username: str, password: str, email: str | None = None) -> User:
        """`register` once the policy has accepted the password: hash it, store the user."""
        user = User(
            username=username,
            username_key=username.lower(),
            password_hash=self.hasher.hash(password),
            email=email,
            email_key=email.lower() if email else None,
        )
        try:
            with self._database.session() as session:
                session.add(user)
        except IntegrityError as exc:
            raise self._taken(username, email) from exc
        return user

    def authenticate(self, username: str, password: str) -> User:
        """Return the user with these credentials, or raise `InvalidCredentials` (or
        `AccountDisabled`, only once the password is right). A hash made with other Argon2
        settings than today's is replaced by one with today's.

        Unknown usernames cost one dummy verification, so timing does not reveal them.
        """
        with self._database.session() as session:
            user = session.scalar(select(User).where(User.username_key == username.lower()))
        if user is None:
            self.hasher.verify_unknown_user(password)
            security_event("login_failed", reason="unknown_user")
            raise InvalidCredentials()
        verified = self.hasher.verify(password, user.password_hash)
        if not verified.ok:
            security_event("login_failed", reason="wrong_password", user_id=user.id)
            raise InvalidCredentials()
        if user.disabled_at is not None:
            security_event("login_failed", reason="disabled", user_id=user.id)
            raise AccountDisabled()
        if verified.new_hash is not None:
            self._rehash(user, verified.new_hash)
        security_event("login_succeeded", user_id=user.id)
        return user

    def get(self, user_id: uuid.UUID) -> User:
        """The user with this id, or raise `UnknownUser` (deleted since the token was issued)."""
        with self._database.session() as session:
            user = session.get(User, user_id)
        if user is None:
            raise UnknownUser()
        return user

    def check_password(self, user: User, password: str) -> None:
        """Raise `WrongPassword` unless `password` is the user's (a request that changes the
        account confirms itself so)."""
        if not self.hasher.verify(password, user.password_hash).ok:
            security_event("password_confirmation_failed", user_id=user.id)
            raise WrongPassword()

    def check_new_password(self, user: User, password: str) -> None:
        """Raise `WeakPassword` if the policy refuses `password` as `user`'s new one."""
        self.policy.check(password, username=user.username, email=user.email)

    def set_password_hash(self, db: Session, user_id: uuid.UUID, password_hash: str) -> None:
        """Store a new password hash (in the caller's transaction); outstanding reset links die."""
        db.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))
        db.execute(delete(PasswordReset).where(PasswordReset.user_id == user_id))

    def delete(self, db: Session, user_id: uuid.UUID) -> None:
        """Delete a user and what the database holds for them (in the caller's transaction);
        their name and address are free again."""
        db.execute(delete(RefreshToken).where(RefreshToken.user_id == user_id))
        db.execute(delete(PasswordReset).where(PasswordReset.user_id == user_id))
        db.execute(delete(User).where(User.id == user_id))

    def set_email(self, user_id: uuid.UUID, email: str | None) -> Profile:
        """Change (or, with None, remove) the user's address, or raise `EmailTaken`."""
        try:
            with self._database.session() as session:
                user = session.get(User, user_id)
                if user is None:
                    raise UnknownUser()
                user.email, user.email_key = email, email.lower() if email else None
        except IntegrityError as exc:
            raise EmailTaken() from exc
        return Profile(id=user.id, username=user.username, email=user.email)

    def by_email(self, email: str) -> User | None:
        """The enabled user with this address (ignoring case), if any."""
        with self._database.session() as session:
            return session.scalar(
                select(User).where(User.email_key == email.lower(), User.disabled_at.is_(None))
            )

    def by_username(self, username: str) -> User | None:
        """The user with this name (ignoring case), if any."""
        with self._database.session() as session:
            return session.scalar(select(User).where(User.username_key == username.lower()))

    def set_scopes(self, user_id: uuid.UUID, scopes: Iterable[str]) -> str:
        """Store the user's scopes (space-separated, sorted); they reach the user's access
        tokens at the next login or refresh. Returns what was stored."""
        value = " ".join(sorted(set(scopes)))
        with self._database.session() as session:
            session.execute(update(User).where(User.id == user_id).values(scopes=value))
        return value

    def set_disabled(self, user_id: uuid.UUID, disabled: bool) -> None:
        """Disable or enable a user (the caller also cuts their tokens off)."""
        with self._database.session() as session:
            session.execute(
                update(User)
                .where(User.id == user_id)
                .values(disabled_at=datetime.now(UTC) if disabled else None)
            )

    def by_subject(self, claims: Claims, check_revoked: bool = True) -> Profile:
        """Return the user a token's `sub` names, or raise `UnknownUser`; unless told not to
        (the caller checked in memory), raise `RevokedToken` if the token is revoked. One
        read for both."""
        user_id, parameters = _profile_parameters(claims, check_revoked)
        return _profile(user_id, self._profile.first(parameters))

    async def by_subject_async(self, claims: Claims, check_revoked: bool = True) -> Profile:
        """`by_subject` on the event loop (`Database.open_async_reads`)."""
        user_id, parameters = _profile_parameters(claims, check_revoked)
        return _profile(user_id, await self._profile.first_async(parameters))

    def _rehash(self, user: User, new_hash: str) -> None:
        """Replace a hash made with other settings; a concurrent change of password wins."""
        with self._database.session() as session:
            session.execute(
                update(User)
                .where(User.id == user.id, User.password_hash == user.password_hash)
                .values(password_hash=new_hash)
            )
        security_event("password_rehashed", user_id=user.id)

    def _taken(self, username: str, email: str | None) -> UsernameTaken | EmailTaken:
        """Which unique value a failed insert collided with."""
        if email is not None and self.by_username(username) is None:
            return EmailTaken()
        return UsernameTaken()


#: `REVOKED`'s parameters that match nothing: the revocation was checked elsewhere.
_NOTHING_REVOKED = {"token_id": "", "session_id": "", "user_key": "", "issued_at": 0}


def _profile_parameters(claims: Claims, check_revoked: bool) -> tuple[uuid.UUID, dict[str, Any]]:
    """The user id of `claims` and the profile read's parameters (`by_subject`)."""
    user_id = user_id_of(claims)
    parameters = revocation_parameters(claims) if check_revoked else _NOTHING_REVOKED
    return user_id, {**parameters, "user_id": user_id}


def _profile(user_id: uuid.UUID, row: Sequence[Any] | None) -> Profile:
    """The profile read's answer: the user's, or `UnknownUser` or `RevokedToken`."""
    if row is None:
        raise UnknownUser()
    username, email, revoked = row
    if revoked:
        raise RevokedToken()
    return Profile(id=user_id, username=username, email=email)
