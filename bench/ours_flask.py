"""A rendered Flask project (package `bench_service`) plus the benchmark's `/protected` view,
written the way the project's README tells users to protect a view."""

from bench_service.web.deps import token_required
from bench_service.wsgi import app
from flask import g


@app.get("/protected")  # type: ignore[untyped-decorator]  # bench_service: rendered at run time
@token_required  # type: ignore[untyped-decorator]
def protected() -> dict[str, str]:
    return {"sub": g.claims["sub"]}
