"""HotPathMiddleware: the two hot endpoints skip Starlette's router; everything else still goes through it."""

from __future__ import annotations

import asyncio

from starlette.testclient import TestClient

from archc.bundle import seal
from runtime.http import fastpath
from runtime.app import create_app
from runtime.settings import Settings
from tests.support.app_support import CHAT, Recorder
from tests.support.gateway import bundle_dict, provider

OAI = "http://up.test/v1/chat/completions"


def _scope(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path, "headers": [], "query_string": b"", "state": {}}


def test_other_paths_and_methods_reach_the_inner_app():
    reached = []

    async def inner(scope, receive, send):
        reached.append((scope["method"], scope["path"]))

    async def main():
        mw = fastpath.HotPathMiddleware(inner)
        for method, path in [("GET", "/v1/chat/completions"), ("POST", "/v1/route"), ("POST", "/v1/chat/completions/"),
                             ("GET", "/healthz"), ("POST", "/v1/messages/count_tokens")]:
            await mw(_scope(method, path), None, None)

    asyncio.run(main())
    assert reached == [("GET", "/v1/chat/completions"), ("POST", "/v1/route"), ("POST", "/v1/chat/completions/"),
                       ("GET", "/healthz"), ("POST", "/v1/messages/count_tokens")]


def test_hot_paths_are_served_without_the_router_and_keep_the_app_behaviour():
    assert set(fastpath.HOT) == {"/v1/chat/completions", "/v1/messages", "/v1/responses"}
    recorder = Recorder()
    bundle = seal(bundle_dict([provider("openai/gpt-4o", OAI, default=True)]))
    app = create_app(bundle, pool=recorder.pool(), settings=Settings())
    with TestClient(app) as client:
        ok = client.post("/v1/chat/completions", json=CHAT)
        bad = client.post("/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
        wrong_method = client.get("/v1/chat/completions")
    assert ok.status_code == 200 and ok.headers["x-arch-target"] == "openai/gpt-4o" and "x-request-id" in ok.headers
    assert ok.json()["choices"][0]["message"]["content"] == "hello"
    # Errors from the fast path are still in the client's format (Anthropic here).
    assert bad.status_code == 400 and bad.json()["type"] == "error" and bad.json()["error"]["type"] == "invalid_request_error"
    # Methods other than POST still get Starlette's 405, rendered by the app's handler.
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
