"""A rendered FastAPI project (package `bench_service`) plus the benchmark's `/protected`
route, written the way the project's README tells users to protect a route."""

from bench_service.asgi import app
from bench_service.web.deps import AccessClaims


@app.get("/protected")  # type: ignore[untyped-decorator]  # bench_service: rendered at run time
async def protected(claims: AccessClaims) -> dict[str, str]:
    return {"sub": claims["sub"]}
