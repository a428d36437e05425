"""What a Flask user would otherwise write: flask-jwt-extended, as its documentation shows.

HS256 with a shared secret; `/protected` answers the identity, `/users/me` reads the user.
No revocation check (flask-jwt-extended leaves a blocklist to the application).
Run: gunicorn bench.reference_flask:app (DATABASE_URL and JWT_SECRET set).
"""

from __future__ import annotations

import os
import uuid

from flask import Flask, Response, jsonify, request
from flask_jwt_extended import JWTManager, create_access_token, get_jwt_identity, jwt_required
from pwdlib import PasswordHash
from sqlalchemy import String, Uuid, create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))


engine = create_engine(os.environ["DATABASE_URL"])
Base.metadata.create_all(engine)
password_hash = PasswordHash.recommended()

app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = os.environ["JWT_SECRET"]
JWTManager(app)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/auth/register")
def register() -> tuple[dict[str, str], int]:
    body = request.get_json()
    user = User(username=body["username"], password_hash=password_hash.hash(body["password"]))
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            session.add(user)
    except IntegrityError:
        return {"msg": "username taken"}, 409
    return {"id": str(user.id), "username": user.username}, 201


@app.post("/auth/login")
def login() -> dict[str, str] | tuple[dict[str, str], int]:
    username, password = request.form["username"], request.form["password"]
    with Session(engine) as session:
        user = session.scalar(select(User).where(User.username == username))
    if user is None or not password_hash.verify(password, user.password_hash):
        return {"msg": "Bad username or password"}, 401
    return {"access_token": create_access_token(identity=str(user.id)), "token_type": "bearer"}


@app.get("/protected")
@jwt_required()  # type: ignore[untyped-decorator]  # flask-jwt-extended types it as Any
def protected() -> Response:
    return jsonify(sub=get_jwt_identity())


@app.get("/users/me")
@jwt_required()  # type: ignore[untyped-decorator]
def users_me() -> dict[str, str] | tuple[dict[str, str], int]:
    with Session(engine) as session:
        user = session.get(User, uuid.UUID(get_jwt_identity()))
    if user is None:
        return {"msg": "not found"}, 404
    return {"id": str(user.id), "username": user.username}
