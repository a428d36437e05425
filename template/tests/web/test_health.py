from .api import Api


def test_health(api: Api) -> None:
    reply = api.get("/health")
    assert reply.status == 200
    assert reply.body == {"status": "ok"}
