"""What a FastAPI user would otherwise write: the documentation's OAuth2PasswordBearer + PyJWT.

`/protected` is the tutorial's `async def get_current_user` (decode, no database); `/users/me`
adds the SQL tutorial's session dependency, as the full-stack template does (plain `def`
dependencies, so FastAPI runs them in its thread pool). HS256 with a shared secret; no
revocation check. Run: uvicorn bench.reference_fastapi:app (DATABASE_URL, JWT_SECRET set).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from jwt.exceptions import InvalidTokenError
from pwdlib import PasswordHash
from pydantic import BaseModel
from sqlalchemy import String, Uuid, create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

SECRET_KEY = os.environ["JWT_SECRET"]
ALGORITHM = "HS256"
ACCESS_TOKEN_EXPIRE_MINUTES = 15


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))


class Credentials(BaseModel):
    username: str
    password: str


class UserOut(BaseModel):
    id: str
    username: str


engine = create_engine(os.environ["DATABASE_URL"], connect_args={"check_same_thread": False})
Base.metadata.create_all(engine)
password_hash = PasswordHash.recommended()
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="auth/login")
credentials_exception = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="Could not validate credentials",
    headers={"WWW-Authenticate": "Bearer"},
)
app = FastAPI()


def get_session() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_current_subject(token: Annotated[str, Depends(oauth2_scheme)]) -> str:
    try:
        payload = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
    except InvalidTokenError:
        raise credentials_exception from None
    subject: str | None = payload.get("sub")
    if subject is None:
        raise credentials_exception
    return subject


def get_current_user(
    session: SessionDep, subject: Annotated[str, Depends(get_current_subject)]
) -> User:
    user = session.get(User, uuid.UUID(subject))
    if user is None:
        raise credentials_exception
    return user


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/auth/register", status_code=201)
def register(body: Credentials, session: SessionDep) -> UserOut:
    user = User(username=body.username, password_hash=password_hash.hash(body.password))
    try:
        session.add(user)
        session.commit()
    except IntegrityError:
        raise HTTPException(status_code=409, detail="username taken") from None
    return UserOut(id=str(user.id), username=user.username)


@app.post("/auth/login")
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep
) -> dict[str, str]:
    user = session.scalar(select(User).where(User.username == form.username))
    if user is None or not password_hash.verify(form.password, user.password_hash):
        raise credentials_exception
    expire = datetime.now(UTC) + timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    token = jwt.encode({"sub": str(user.id), "exp": expire}, SECRET_KEY, algorithm=ALGORITHM)
    return {"access_token": token, "token_type": "bearer"}


@app.get("/protected")
async def protected(subject: Annotated[str, Depends(get_current_subject)]) -> dict[str, str]:
    return {"sub": subject}


@app.get("/users/me")
async def users_me(user: Annotated[User, Depends(get_current_user)]) -> UserOut:
    return UserOut(id=str(user.id), username=user.username)
