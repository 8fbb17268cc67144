"""Plano's provider ``passthrough_auth`` and ``headers`` through a real `archc serve`: the client's own
key goes upstream as it came, and nothing else; a request without one is refused in the client's
format; the key never reaches the gateway's log, even when the upstream quotes it back; fixed
headers (text, or $ENV references read where the gateway runs) go with every request."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import anthropic
import httpx
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream, error
from tests.support.gateway import Gateway

pytestmark = pytest.mark.e2e

CONFIG = """version: v0.4.0
listeners: [{{type: model, name: llm, port: 12000}}]
model_providers:
  - name: litellm
    model: openai/gpt-4o
    base_url: {up}/v1
    passthrough_auth: true
    default: true
    headers:
      ChatGPT-Account-Id: acct-123
      X-Upstream-Token: $PASSTHROUGH_TEST_TOKEN
  - name: claude-proxy
    model: anthropic/claude-sonnet-4-6
    base_url: {up}
    passthrough_auth: true
    access_key: this-literal-is-ignored
"""


@pytest.fixture
def served(tmp_path: Path, start_gateway: Callable[..., Gateway]) -> Any:
    with FakeUpstream() as up:
        config = tmp_path / "plano.yaml"
        config.write_text(CONFIG.format(up=up.url))
        yield start_gateway(config, env={"PASSTHROUGH_TEST_TOKEN": "tok-from-env"}), up


def test_the_clients_own_key_goes_upstream_and_nothing_else(served) -> None:
    gw, up = served
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client-own-key", max_retries=0)
    answer = client.chat.completions.create(model="litellm", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "ok"
    sent = {k.lower(): v for k, v in up.requests[-1].headers.items()}
    assert sent["authorization"] == "Bearer sk-client-own-key" and "x-api-key" not in sent
    assert sent["chatgpt-account-id"] == "acct-123" and sent["x-upstream-token"] == "tok-from-env"
    ant = anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-client-key", max_retries=0)
    message = ant.messages.create(model="claude-proxy", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "ok"
    sent = {k.lower(): v for k, v in up.requests[-1].headers.items()}
    assert sent["authorization"] == "Bearer sk-ant-client-key"  # as this SDK sends it
    assert "this-literal-is-ignored" not in str(sent) and "x-upstream-token" not in sent
    r = httpx.post(gw.url + "/v1/messages", timeout=10, headers={"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-raw"},
                   json={"model": "claude-proxy", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    sent = {k.lower(): v for k, v in up.requests[-1].headers.items()}
    assert sent["x-api-key"] == "sk-ant-raw" and "authorization" not in sent


def test_without_a_client_key_the_request_is_refused_in_its_format(served) -> None:
    gw, up = served
    r = httpx.post(gw.url + "/v1/messages", timeout=10, headers={"anthropic-version": "2023-06-01"},
                   json={"model": "claude-proxy", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401 and r.json()["type"] == "error"
    assert "passthrough_auth" in r.json()["error"]["message"] and up.requests == []


def test_the_key_never_reaches_the_log_even_when_the_upstream_quotes_it(served) -> None:
    gw, up = served
    up.script(error(401, "Incorrect API key provided: sk-client-quoted-key. Check it."))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client-quoted-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="litellm", messages=[{"role": "user", "content": "hi"}])
    assert "sk-client-quoted-key" not in str(raised.value) and "[redacted]" in str(raised.value)
    assert "sk-client-quoted-key" not in gw.logs()
