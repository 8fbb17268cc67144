"""runtime/http/openapi.py: /openapi.json describes every route the app serves, as valid OpenAPI 3.0."""

from __future__ import annotations

from starlette.routing import Route
from starlette.testclient import TestClient

from archc.bundle import seal
from runtime.app import create_app, routes
from runtime.http.openapi import spec
from runtime.settings import Settings
from tests.support.gateway import bundle_dict, provider


def test_every_route_is_described_and_nothing_else() -> None:
    served = {(r.path, m.lower()) for r in routes() if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"}
    described = {(path, method) for path, ops in spec()["paths"].items() for method in ops}
    assert served == described


def test_spec_is_fresh_each_call_and_errors_are_referenced() -> None:
    a, b = spec(), spec()
    assert a == b and a is not b and a["paths"] is not b["paths"]
    assert a["openapi"].startswith("3.0")
    chat = a["paths"]["/v1/chat/completions"]["post"]
    assert chat["responses"]["429"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "text/event-stream" in chat["responses"]["200"]["content"]


def test_served_by_the_app() -> None:
    bundle = seal(bundle_dict([provider("openai/gpt-4o", "http://127.0.0.1:9/v1/chat/completions", default=True)]))
    with TestClient(create_app(bundle, settings=Settings(env={}))) as client:
        r = client.get("/openapi.json")
    assert r.status_code == 200 and r.json() == spec()
