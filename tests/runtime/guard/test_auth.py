"""runtime/guard/auth.py: gateway keys from sha256 digests or env references, constant-time match, 401s."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import httpx
import pytest

from runtime.http.asgi import request_state
from runtime.guard.auth import GatewayKeyMiddleware, KeyConfigError, KeyStore, presented_credentials

pytestmark = pytest.mark.anyio

SECRET = "sk-archc-test-0123456789"
OTHER = "sk-archc-other-key"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_store_from_digest_and_env() -> None:
    store = KeyStore.from_gateway(
        {"keys": [{"name": "team-a", "sha256": _sha(SECRET)}, {"name": "ci", "key_env": "${ARCHC_TEST_KEY}"},
                  {"name": "prefixed", "sha256": "sha256:" + _sha("third")}]},
        env={"ARCHC_TEST_KEY": OTHER},
    )
    assert store.required
    assert store.match([SECRET]) == "team-a"
    assert store.match([OTHER]) == "ci"
    assert store.match(["wrong", OTHER]) == "ci"
    assert store.match(["third"]) == "prefixed"
    assert store.match(["wrong"]) is None
    assert store.match([]) is None


def test_off_by_default_and_explicit_require() -> None:
    assert not KeyStore.from_gateway(None).required
    assert not KeyStore.from_gateway({}).required
    assert not KeyStore.from_gateway({"keys": [{"name": "a", "sha256": _sha(SECRET)}], "require_keys": False}).required
    empty = KeyStore.from_gateway({"require_keys": True})
    assert empty.required and empty.match([SECRET]) is None  # required with no keys: everything is refused


def test_unset_env_key_is_disabled_and_logged_without_value(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        store = KeyStore.from_gateway({"keys": [{"name": "ci", "key_env": "ARCHC_UNSET_VAR"}]}, env={})
    assert store.required and store.keys == ()
    assert "ARCHC_UNSET_VAR" in caplog.text


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"name": "a", "sha256": "zz"}, "not hex"),
        ({"name": "a", "sha256": "abcd"}, "64 hex digits"),
        ({"name": "a"}, "either sha256 or key_env"),
    ],
)
def test_bad_entries_are_config_errors(entry: dict, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message):
        KeyStore.from_gateway({"keys": [entry]})


def test_presented_credentials() -> None:
    headers = [(b"Authorization", b"Bearer  tok1 "), (b"x-api-key", b"tok2"), (b"authorization", b"Basic abc")]
    assert presented_credentials(headers) == ["tok1", "tok2"]
    assert presented_credentials([(b"authorization", b"Bearer ")]) == []


async def _ok_app(scope: dict, receive: Any, send: Any) -> None:
    key = request_state(scope).key_name
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps({"key": key}).encode()})


def _client(store: KeyStore | None) -> httpx.AsyncClient:
    app = GatewayKeyMiddleware(_ok_app, lambda scope: store)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_middleware_accepts_bearer_and_x_api_key() -> None:
    store = KeyStore.from_gateway({"keys": [{"name": "team-a", "sha256": _sha(SECRET)}]})
    async with _client(store) as client:
        r = await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {SECRET}"})
        assert r.status_code == 200 and r.json() == {"key": "team-a"}
        r = await client.post("/v1/messages", headers={"x-api-key": SECRET})
        assert r.status_code == 200 and r.json() == {"key": "team-a"}


async def test_middleware_401_in_client_format_never_echoes_key() -> None:
    store = KeyStore.from_gateway({"keys": [{"name": "team-a", "sha256": _sha(SECRET)}]})
    async with _client(store) as client:
        missing = await client.post("/v1/chat/completions")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "missing_api_key"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.post("/v1/messages", headers={"x-api-key": "sk-wrong-guess"})
        assert wrong.status_code == 401
        assert wrong.json()["type"] == "error" and wrong.json()["error"]["type"] == "authentication_error"
        assert "sk-wrong-guess" not in wrong.text
        assert (await client.get("/healthz")).status_code == 200  # probes stay public
        assert (await client.get("/openapi.json")).status_code == 200


async def test_middleware_off_passes_everything() -> None:
    async with _client(KeyStore.from_gateway({})) as client:
        assert (await client.post("/v1/chat/completions")).json() == {"key": None}
    async with _client(None) as client:
        assert (await client.post("/v1/chat/completions")).status_code == 200


# -- the real process, unmodified SDKs ---------------------------------------------------------

@pytest.mark.e2e
def test_gateway_keys_with_real_sdks_and_access_log(tmp_path, fake_upstream) -> None:
    import anthropic
    import openai

    from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle

    providers = [
        provider("openai/gpt-4o", fake_upstream.openai_endpoint(), auth="bearer", key_env="ARCHC_AUTH_OPENAI", default=True),
        provider("anthropic/claude-x", "http://127.0.0.1:9/v1/messages", wire="anthropic_messages", auth="x-api-key",
                 key_env="ARCHC_AUTH_UNSET"),
    ]
    gateway = {"keys": [{"name": "team-a", "sha256": _sha(SECRET)}, {"name": "ci", "key_env": "ARCHC_AUTH_CI_KEY"}],
               "request_limits": [{"requests": 1000, "unit": "minute", "gateway_key": "*"}]}
    path = write_bundle(tmp_path, bundle_dict(providers, extensions={"gateway": gateway}))
    env = {"ARCHC_AUTH_UNSET": "", "ARCHC_AUTH_CI_KEY": OTHER, "ARCHC_AUTH_OPENAI": "sk-provider-key"}
    with Gateway(path, args=["--echo"], env=env) as gw:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key=SECRET, max_retries=0) as oai:
            answer = oai.chat.completions.with_raw_response.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert answer.http_response.status_code == 200
            assert answer.headers["x-ratelimit-limit"] == "1000"  # the per-key limit applied to team-a
        with anthropic.Anthropic(base_url=gw.url, api_key=OTHER, max_retries=0) as ant:
            msg = ant.messages.create(model="anthropic/claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
            assert msg.type == "message"
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-guess-0000", max_retries=0) as bad_oai:
            with pytest.raises(openai.AuthenticationError) as oai_err:
                bad_oai.models.list()
        assert oai_err.value.status_code == 401
        with anthropic.Anthropic(base_url=gw.url, api_key="sk-guess-1111", max_retries=0) as bad_ant:
            with pytest.raises(anthropic.AuthenticationError) as ant_err:
                bad_ant.messages.create(model="anthropic/claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert ant_err.value.body["type"] == "error"
        assert ant_err.value.body["error"]["type"] == "authentication_error"
        logs = gw.logs()
    access = [json.loads(line.split("archc.access: ", 1)[1]) for line in logs.splitlines() if "archc.access: " in line]
    assert {a["gateway_key"] for a in access if a["status"] == 200} >= {"team-a", "ci"}
    assert sorted(a["status"] for a in access if a["status"] == 401) == [401, 401]
    assert all(s not in logs for s in (SECRET, OTHER, "sk-guess-0000", "sk-guess-1111", "sk-provider-key"))
    # The upstream got the provider's key, never the client's gateway key.
    (sent,) = fake_upstream.requests
    assert {k.lower(): v for k, v in sent.headers.items()}["authorization"] == "Bearer sk-provider-key"
    assert SECRET not in json.dumps(sent.headers)
