"""The unmodified `anthropic` SDK against a real `archc serve` process and a fake upstream on 127.0.0.1."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, anthropic_text, error, openai_text, openai_tool_call, stalling
from tests.support.gateway import Gateway

pytestmark = pytest.mark.e2e

TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture
def client(e2e_gateway: Gateway):
    with anthropic.Anthropic(base_url=e2e_gateway.url, api_key="client-key", max_retries=0, timeout=20) as c:
        yield c


def test_text_to_openai_upstream_non_streamed(client, upstream: FakeUpstream):
    upstream.script(openai_text("Hello there", usage=(12, 3)))
    raw = client.messages.with_raw_response.create(model="arch.oai.v1", max_tokens=64, system="Be terse.",
                                                   messages=[{"role": "user", "content": "hi"}])
    msg = raw.parse()
    assert msg.content[0].text == "Hello there" and msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (12, 3)
    assert raw.headers["x-arch-target"] == "openai/gpt-4o" and raw.headers["x-arch-why"] == "alias"
    sent = upstream.requests[0].body
    assert sent["model"] == "gpt-4o" and sent["max_tokens"] == 64
    assert sent["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]


def test_text_to_openai_upstream_streamed(client, upstream):
    upstream.script(openai_text("streaming works fine", usage=(9, 5)))
    with client.messages.stream(model="openai/gpt-4o", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streaming works fine" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5
    assert upstream.requests[0].body["stream_options"] == {"include_usage": True}


def test_tool_use_streamed_from_openai_upstream_then_tool_result(client, upstream):
    args = {"city": "Zürich"}
    upstream.script(openai_tool_call("get_weather", args, call_id="call_77"), openai_text("Cold."))
    with client.messages.stream(model="openai/gpt-4o", max_tokens=64, tools=TOOLS, tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = stream.get_final_message()
    tool = [b for b in final.content if b.type == "tool_use"][0]
    assert final.stop_reason == "tool_use" and tool.name == "get_weather" and tool.input == args
    assert upstream.requests[0].body["tool_choice"] == "required"
    assert upstream.requests[0].body["tools"][0]["function"]["parameters"]["required"] == ["city"]
    follow = client.messages.create(model="openai/gpt-4o", max_tokens=64, tools=TOOLS, messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "-3 C, snow"}]},
    ])
    assert follow.content[0].text == "Cold."
    sent = upstream.requests[1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == tool.id and json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == args
    assert sent[2] == {"role": "tool", "tool_call_id": tool.id, "content": "-3 C, snow"}


def test_error_tool_result_carried_with_marker(client, upstream):
    upstream.script(openai_text("Sorry."))
    client.messages.create(model="openai/gpt-4o", max_tokens=64, messages=[
        {"role": "user", "content": "run it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {"command": "false"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "exit 1", "is_error": True}]},
    ])
    tool_msg = upstream.requests[0].body["messages"][2]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "toolu_9" and "exit 1" in tool_msg["content"]
    assert tool_msg["content"].startswith("Error")


def test_reasoning_content_from_openai_upstream_becomes_thinking(client, upstream):
    upstream.script(openai_text("4", reasoning="2 plus 2"))
    msg = client.messages.create(model="openai/gpt-4o", max_tokens=64, messages=[{"role": "user", "content": "2+2"}])
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == "2 plus 2" and msg.content[1].text == "4"


def test_passthrough_to_anthropic_upstream_keeps_thinking_signature_streamed(client, upstream):
    upstream.script(anthropic_text("done", thinking="hmm, think", signature="EqQBCgIYAhIM-signature"))
    with client.messages.stream(model="anthropic/claude-x", max_tokens=64, messages=[{"role": "user", "content": "q"}],
                                extra_body={"context_management": {"edits": []}},
                                extra_headers={"anthropic-beta": "context-management-2025-06-27"}) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].signature == "EqQBCgIYAhIM-signature"
    assert final.content[1].text == "done"
    sent = upstream.requests[0]
    assert sent.body["context_management"] == {"edits": []} and sent.body["model"] == "claude-x"
    assert sent.headers["anthropic-beta"] == "context-management-2025-06-27"
    assert sent.headers["x-api-key"] == "sk-test-anthropic"


def test_upstream_500_and_oversized_body(client, upstream):
    upstream.script(error(500, "boom upstream"))
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model="openai/gpt-4o", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert "boom upstream" in str(info.value)
    with pytest.raises(anthropic.APIStatusError) as big:
        client.messages.create(model="openai/gpt-4o", max_tokens=8, messages=[{"role": "user", "content": "x" * (11 * 1024 * 1024)}])
    assert big.value.status_code == 413 and big.value.body["error"]["type"] == "request_too_large"


def test_unknown_field_types_give_anthropic_errors(client, upstream):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="openai/gpt-4o", max_tokens="many", messages=[{"role": "user", "content": "hi"}])  # type: ignore[arg-type]
    assert info.value.body["type"] == "error" and "max_tokens" in info.value.body["error"]["message"]
    assert upstream.requests == []


def test_models_list_and_count_tokens(client, upstream):
    assert [m.id for m in client.models.list()][:2] == ["arch.oai.v1", "arch.ant.v1"]
    count = client.messages.count_tokens(model="openai/gpt-4o", messages=[{"role": "user", "content": "hello " * 50}])
    assert count.input_tokens > 10


def test_translated_stream_is_not_buffered_and_disconnect_reaches_upstream(e2e_gateway, upstream):
    """Anthropic client, OpenAI upstream that sends a few chunks then stalls: the translated events
    arrive while the upstream is still open, and leaving closes the upstream connection."""
    upstream.script(stalling(openai_text("alpha beta gamma delta"), keep=3))
    body = {"model": "openai/gpt-4o", "max_tokens": 32, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    seen = ""
    with httpx.Client(timeout=10) as http:
        with http.stream("POST", e2e_gateway.url + "/v1/messages", json=body) as r:
            assert r.status_code == 200
            for chunk in r.iter_text():
                seen += chunk
                if "text_delta" in seen:
                    break
    assert "event: message_start" in seen and "text_delta" in seen
    assert upstream.wait_disconnect(10), "the upstream never saw the client leave"


def test_image_block_reaches_openai_upstream_as_data_url(client, upstream):
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    upstream.script(openai_text("A pixel."))
    msg = client.messages.create(model="openai/gpt-4o", max_tokens=32, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "text", "text": "What is this?"}]}])
    assert msg.content[0].text == "A pixel."
    parts = upstream.requests[0].body["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    assert parts[1] == {"type": "text", "text": "What is this?"}
