"""A rendered Flask project (package `bench_service`) plus the benchmark's `/protected` view,
written the way the project's README tells users to protect a view."""

from bench_service.web.deps import token_required
from bench_service.wsgi import app
from flask import g


@app.get("/protected")
@token_required
def protected() -> dict[str, str]:
    return {"sub": g.claims["sub"]}
