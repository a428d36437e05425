"""A rendered Flask project (package `bench_service`) plus the benchmark's `/protected` view,
written the way the project's README tells users to protect a view: on the blueprint of
`web/routes/custom.py`, which `create_app` registers."""

from bench_service.web.deps import current_claims, token_required
from bench_service.web.routes.custom import bp


@bp.get("/protected")  # type: ignore[untyped-decorator]  # bench_service: rendered at run time
@token_required  # type: ignore[untyped-decorator]
def protected() -> dict[str, str]:
    return {"sub": current_claims()["sub"]}


# The app is made on import, after the view is on the blueprint (as if custom.py had it).
from bench_service.wsgi import app  # noqa: E402

__all__ = ["app"]
