"""A rendered FastAPI project (package `bench_service`) plus the benchmark's `/protected`
route, written the way the project's README tells users to protect a route: on the router of
`web/routes/custom.py`, which `create_app` includes."""

from bench_service.web.deps import AccessClaims
from bench_service.web.routes.custom import router


@router.get("/protected")  # type: ignore[untyped-decorator]  # bench_service: rendered at run time
async def protected(claims: AccessClaims) -> dict[str, str]:
    return {"sub": claims["sub"]}


# The app is made on import, after the route is on the router (as if custom.py had it).
from bench_service.asgi import app  # noqa: E402

__all__ = ["app"]
