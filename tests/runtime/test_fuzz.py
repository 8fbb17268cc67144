"""Fuzz: schemathesis against a real gateway's /openapi.json, and hypothesis on request parsing.

No input may produce a 5xx or a traceback; every error is in the caller's format. The gateway runs
with --echo (the built-in echo upstream answers), so any 5xx would be the gateway's own.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from archc.bundle import seal
from runtime.app import create_app
from runtime.http.openapi import spec
from runtime.settings import Settings
from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle

EXAMPLES = 20  # per operation; bounded so the suite stays fast on 2 cores


def _bundle() -> dict[str, Any]:
    providers = [
        provider("openai/gpt-4o", "http://127.0.0.1:9/v1/chat/completions", auth="bearer", key_env="ARCHC_FUZZ_UNSET", default=True),
        provider("anthropic/claude-x", "http://127.0.0.1:9/v1/messages", wire="anthropic_messages", auth="x-api-key",
                 key_env="ARCHC_FUZZ_UNSET"),
    ]
    return bundle_dict(providers, aliases={"arch.fast.v1": "openai/gpt-4o"})


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    path = write_bundle(tmp_path_factory.mktemp("fuzz"), _bundle())
    with Gateway(path, args=["--echo", "--log-level", "error"], env={"ARCHC_FUZZ_UNSET": ""}) as gw:
        yield gw


# The document is loaded from the module, then checked against the served one; operations are
# driven with schemathesis' strategies directly (its pytest plugin does not support pytest 9).
SCHEMA = schemathesis.openapi.from_dict(spec())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def _negatable(op: Any) -> bool:
    return "requestBody" in spec()["paths"][op.path][op.method.lower()]


# Negative cases need something to break: a body (a string path parameter has no invalid value).
CASES = [(op, mode) for op in OPERATIONS for mode in schemathesis.GenerationMode
         if mode is schemathesis.GenerationMode.POSITIVE or _negatable(op)]


@pytest.mark.e2e
def test_served_document_is_the_fuzzed_one(fuzz_gateway: Gateway) -> None:
    with httpx.Client(base_url=fuzz_gateway.url) as client:
        assert client.get("/openapi.json").json() == spec()


@pytest.mark.e2e
@pytest.mark.parametrize("operation, mode", CASES, ids=[f"{op.label} {mode.value}" for op, mode in CASES])
def test_schemathesis_no_5xx_no_traceback(fuzz_gateway: Gateway, operation: Any, mode: Any) -> None:
    """Positive cases follow the document; negative ones break it on purpose (wrong types, missing fields)."""
    tried: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        response = case.call(base_url=fuzz_gateway.url, timeout=10)
        tried.append(response.status_code)
        assert response.status_code < 500, (case.path, case.body, response.status_code, response.text[:500])
        assert "Traceback" not in response.text
        if response.status_code >= 400 and operation.path != "/metrics":
            body = response.json()
            assert isinstance(body, dict) and "error" in body, body

    run()
    assert tried  # the operation really was exercised


# -- hypothesis on request parsing, in process ---------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "bogus", ""]),
                           "content": _json}, optional={"tool_calls": _json, "name": _json}),
    max_size=4,
)
_bodies = st.one_of(
    _json,
    st.fixed_dictionaries({"messages": _messages},
                          optional={"model": st.sampled_from(["openai/gpt-4o", "arch.fast.v1", "anthropic/claude-x", "nope"]) | _json,
                                    "stream": _json, "max_tokens": _json, "tools": _json, "tool_choice": _json,
                                    "system": _json, "temperature": _json, "thinking": _json}),
)


@pytest.fixture(scope="module")
def app_client() -> Iterator[TestClient]:
    settings_ = Settings(echo=True, env={})
    with TestClient(create_app(seal(_bundle()), settings=settings_), raise_server_exceptions=False) as client:
        yield client


@given(body=_bodies, path=st.sampled_from(["/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/route"]))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_json_body_gets_a_clean_answer(app_client: TestClient, body: Any, path: str) -> None:
    r = app_client.post(path, content=json.dumps(body))
    assert r.status_code < 500, (path, body, r.text[:300])
    if r.status_code >= 400:
        payload = r.json()
        if path.startswith("/v1/messages"):
            assert payload["type"] == "error" and payload["error"]["message"]
        else:
            assert payload["error"]["message"]


@given(raw=st.binary(max_size=200), ctype=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=latin-1"]))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_bytes_get_a_clean_answer(app_client: TestClient, raw: bytes, ctype: str) -> None:
    for path in ("/v1/chat/completions", "/v1/messages"):
        r = app_client.post(path, content=raw, headers={"content-type": ctype} if ctype else {})
        assert r.status_code < 500 and "Traceback" not in r.text, (path, raw, r.text[:300])
