"""runtime/auth.py: gateway keys from sha256 digests or env references, constant-time match, 401s."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import httpx
import pytest

from runtime.auth import GatewayKeyMiddleware, KeyConfigError, KeyStore, presented_credentials

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
    key = (scope.get("state") or {}).get("gateway_key")
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
