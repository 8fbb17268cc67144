"""The unmodified `openai` SDK's Responses calls (`client.responses.*`) against a real `archc serve`
process: translated to an OpenAI-chat and an Anthropic fake upstream on 127.0.0.1, and passed through
to a Responses one (``arch.resp.v1``: a provider with a Responses endpoint)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream, anthropic_text, anthropic_tool_use, openai_text, openai_tool_call
from tests.support.gateway import Gateway, write_bundle
from tests.support.upstream_fixtures import E2E_ENV, e2e_bundle

pytestmark = pytest.mark.e2e

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
MODELS = ["arch.oai.v1", "arch.ant.v1", "arch.resp.v1"]  # an OpenAI-chat upstream, an Anthropic one, a Responses one
PASSTHROUGH = "arch.resp.v1"


@pytest.fixture(scope="module")
def e2e_gateway(shared_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory):
    """The shared e2e bundle with a Responses-speaking provider too."""
    path = write_bundle(tmp_path_factory.mktemp("e2e"), e2e_bundle(shared_upstream, responses=True))
    with Gateway(path, env=E2E_ENV) as gw:
        yield gw


@pytest.fixture
def client(e2e_gateway: Gateway):
    with openai.OpenAI(base_url=e2e_gateway.url + "/v1", api_key="client-key", max_retries=0, timeout=20) as c:
        yield c


def _text(model: str, text: str, **kw):
    return openai_text(text, **kw) if model != "arch.ant.v1" else anthropic_text(text, **{k.replace("reasoning", "thinking"): v for k, v in kw.items()})


@pytest.mark.parametrize("model", MODELS)
def test_text_streamed_and_not_agree(client, upstream: FakeUpstream, model: str):
    upstream.script(_text(model, "one two three"), _text(model, "one two three"))
    raw = client.responses.with_raw_response.create(model=model, input="count", instructions="be brief", max_output_tokens=50)
    whole = raw.parse()
    with client.responses.stream(model=model, input="count", instructions="be brief", max_output_tokens=50) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert whole.output_text == final.output_text == "".join(deltas) == "one two three"
    # Passed through, the answer is the upstream's own (it names the upstream's model id).
    assert whole.status == final.status == "completed" and whole.model == final.model == ("o3" if model == PASSTHROUGH else model)
    assert whole.usage.total_tokens == final.usage.total_tokens > 0
    assert raw.headers["x-arch-why"] == "alias"
    assert raw.headers["x-arch-target"] == {"arch.oai.v1": "openai/gpt-4o", "arch.ant.v1": "anthropic/claude-x", PASSTHROUGH: "openai/o3"}[model]
    first, second = upstream.requests
    if model == PASSTHROUGH:
        assert first.path == second.path == "/v1/responses" and first.headers["Authorization"] == "Bearer sk-test-openai"
        assert first.body == {"model": "o3", "input": "count", "instructions": "be brief", "max_output_tokens": 50}
        assert second.body["stream"] is True
    elif model == "arch.oai.v1":
        assert first.path == "/v1/chat/completions" and first.body["messages"][0] == {"role": "system", "content": "be brief"}
        assert first.body["max_tokens"] == 50 and second.body["stream"] is True
    else:
        assert first.path == "/v1/messages" and first.body["system"] == "be brief" and first.body["max_tokens"] == 50


@pytest.mark.parametrize("model", MODELS)
def test_a_function_tool_round_trip(client, upstream: FakeUpstream, model: str):
    if model != "arch.ant.v1":
        upstream.script(openai_tool_call("get_weather", {"city": "Paris"}, call_id="call_w1"), openai_text("Sunny."))
    else:
        upstream.script(anthropic_tool_use("get_weather", {"city": "Paris"}, tool_id="call_w1"), anthropic_text("Sunny."))
    first = client.responses.create(model=model, input="Weather in Paris?", tools=TOOLS)
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"} and call.call_id == "call_w1"
    second = client.responses.create(model=model, tools=TOOLS, input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "22 C and sunny"}])
    assert second.output_text == "Sunny."
    sent = upstream.requests[1].body
    if model == PASSTHROUGH:
        assert sent["input"][-1] == {"type": "function_call_output", "call_id": "call_w1", "output": "22 C and sunny"}
        assert sent["tools"] == TOOLS
    elif model == "arch.oai.v1":
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_w1", "content": "22 C and sunny"}
        assert sent["tools"][0]["function"]["name"] == "get_weather"
    else:
        result = sent["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and result["tool_use_id"] == "call_w1"


def test_previous_response_id_carries_the_conversation(client, upstream: FakeUpstream):
    upstream.script(openai_text("Paris."), openai_text("About 2 million."))
    first = client.responses.create(model="arch.oai.v1", input="Capital of France?")
    second = client.responses.create(model="arch.oai.v1", input="Its population?", previous_response_id=first.id)
    assert second.output_text == "About 2 million." and second.previous_response_id == first.id
    assert upstream.requests[1].body["messages"] == [
        {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Its population?"}]
    assert client.responses.retrieve(second.id).output_text == "About 2 million."
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="arch.oai.v1", input="again", previous_response_id=first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_store_false_keeps_nothing(client, upstream: FakeUpstream):
    upstream.script(openai_text("kept?"))
    out = client.responses.create(model="arch.oai.v1", input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(out.id)


@pytest.mark.parametrize("model", ["arch.oai.v1", PASSTHROUGH])
def test_reasoning_comes_back_as_a_reasoning_item(client, upstream: FakeUpstream, model: str):
    upstream.script(openai_text("9.8", reasoning="compare tenths"))
    with client.responses.stream(model=model, input="9.11 or 9.8?") as stream:
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == "compare tenths" and final.output_text == "9.8"


def test_built_in_tools_are_left_out_and_named_in_a_header(client, upstream: FakeUpstream):
    upstream.script(openai_text("no search here"))
    raw = client.responses.with_raw_response.create(model="arch.oai.v1", input="news?", tools=[{"type": "web_search"}, *TOOLS])
    assert raw.parse().output_text == "no search here" and raw.headers["x-arch-dropped-tools"] == "web_search"
    assert [t["function"]["name"] for t in upstream.requests[0].body["tools"]] == ["get_weather"]


def test_bad_requests_are_400_in_openai_shape(client, upstream: FakeUpstream):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="arch.oai.v1", input="hi", tools=[{"type": "web_search"}], tool_choice={"type": "web_search"})
    assert "'web_search'" in caught.value.message and caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="input"):
        client.responses.create(model="arch.oai.v1", input=[{"role": "robot", "content": "x"}])
    assert upstream.requests == []


def test_route_reads_a_responses_body_with_its_stored_history(client, upstream: FakeUpstream, e2e_gateway: Gateway):
    upstream.script(anthropic_text("Paris."))
    first = client.responses.create(model="arch.ant.v1", input="Capital of France?")
    r = httpx.post(e2e_gateway.url + "/v1/route?format=responses", timeout=10,
                   json={"model": "arch.oai.v1", "input": "and Spain?", "previous_response_id": first.id})
    assert r.status_code == 200 and r.json()["model"] == "openai/gpt-4o" and r.json()["why"] == "alias"
    gone = httpx.post(e2e_gateway.url + "/v1/route?format=responses", timeout=10,
                      json={"model": "arch.oai.v1", "input": "x", "previous_response_id": "resp_unknown"})
    assert gone.status_code == 404 and "resp_unknown" in gone.json()["error"]["message"]


def test_input_tokens_counts_the_stored_history_too(client, upstream: FakeUpstream):
    upstream.script(openai_text("Paris is the capital of France, on the Seine."))
    first = client.responses.create(model="arch.oai.v1", input="Capital of France?")
    alone = client.responses.input_tokens.count(model="arch.oai.v1", input="And of Spain?")
    after = client.responses.input_tokens.count(model="arch.oai.v1", input="And of Spain?", previous_response_id=first.id)
    assert alone.input_tokens >= 1 and after.input_tokens > alone.input_tokens
    assert len(upstream.requests) == 1  # counting calls no upstream


def test_previous_response_id_passed_through_sends_the_whole_conversation(client, upstream: FakeUpstream):
    """The gateway keeps passed-through turns too: the follow-up goes upstream as the whole
    conversation (no previous_response_id the upstream may not know), and may be routed anywhere."""
    upstream.script(openai_text("Paris.", reasoning="easy"), openai_text("About 2 million."), anthropic_text("About 48 million."))
    first = client.responses.create(model=PASSTHROUGH, input="Capital of France?")
    second = client.responses.create(model=PASSTHROUGH, input="Its population?", previous_response_id=first.id)
    assert second.output_text == "About 2 million."
    sent = upstream.requests[1].body
    assert "previous_response_id" not in sent and sent["input"] == [
        {"type": "message", "role": "user", "content": "Capital of France?"},
        {"type": "reasoning", "id": "rs_fake_1", "summary": [{"type": "summary_text", "text": "easy"}]},
        {"type": "message", "role": "assistant", "content": "Paris."},
        {"type": "message", "role": "user", "content": "Its population?"}]
    assert client.responses.retrieve(first.id).output_text == "Paris."
    third = client.responses.create(model="arch.ant.v1", input="And Spain's?", previous_response_id=second.id)
    assert third.output_text == "About 48 million."
    # Translated for Anthropic: the OpenAI reasoning item has no signature Anthropic would take, so it stays out.
    assert upstream.requests[2].body["messages"] == [
        {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Its population?"}, {"role": "assistant", "content": "About 2 million."},
        {"role": "user", "content": "And Spain's?"}]


def test_built_in_tools_and_items_go_through_to_a_responses_upstream(client, upstream: FakeUpstream):
    upstream.script(openai_text("Searched."))
    tools = [{"type": "web_search"}, *TOOLS]
    history = [{"role": "user", "content": "news?"},
               {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "news"}},
               {"role": "assistant", "content": "Quiet day."}, {"role": "user", "content": "and now?"}]
    raw = client.responses.with_raw_response.create(model=PASSTHROUGH, input=history, tools=tools, tool_choice={"type": "web_search"})
    assert raw.parse().output_text == "Searched." and "x-arch-dropped-tools" not in raw.headers
    sent = upstream.requests[0].body
    assert sent["tools"] == tools and sent["tool_choice"] == {"type": "web_search"} and sent["input"][1]["type"] == "web_search_call"
    # The same history to a chat upstream: the search's record is left out (its result is in the next message).
    upstream.script(openai_text("Chatted."))
    assert client.responses.create(model="arch.oai.v1", input=history, tools=TOOLS).output_text == "Chatted."
    assert [m["content"] for m in upstream.requests[1].body["messages"]] == ["news?", "Quiet day.", "and now?"]


def test_items_only_a_responses_upstream_takes_are_400_elsewhere(client, upstream: FakeUpstream):
    upstream.script(openai_text("Patched."))
    call = {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"}
    out = {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done!"}
    body = [{"role": "user", "content": "fix it"}, call, out]
    assert client.responses.create(model=PASSTHROUGH, input=body).output_text == "Patched."
    assert upstream.requests[0].body["input"][1:] == [call, out]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="arch.ant.v1", input=body)
    assert "'custom_tool_call'" in caught.value.message and "'anthropic/claude-x'" in caught.value.message
    assert len(upstream.requests) == 1


def test_input_items_list_the_whole_conversation_a_response_came_from(client, upstream: FakeUpstream, e2e_gateway: Gateway):
    """``client.responses.input_items.list``: earlier turns included, newest first by default, paged by ``after``;
    the same for a passed-through and a translated turn (the gateway keeps both)."""
    upstream.script(openai_text("Paris."), openai_text("About 2 million."))
    first = client.responses.create(model=PASSTHROUGH, input="Capital of France?", instructions="be brief")
    second = client.responses.create(model="arch.oai.v1", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Its population?"}]}], previous_response_id=first.id)
    listed = client.responses.input_items.list(second.id)
    assert [(i.type, i.role, i.content[0].text) for i in listed.data] == [
        ("message", "user", "Its population?"), ("message", "assistant", "Paris."), ("message", "user", "Capital of France?")]
    assert len({i.id for i in listed.data}) == 3 and not listed.has_more
    oldest = client.responses.input_items.list(second.id, order="asc", limit=1)
    assert [i.content[0].text for i in oldest.data] == ["Capital of France?"] and oldest.has_more
    rest = client.responses.input_items.list(second.id, order="asc", after=oldest.data[0].id)
    assert [i.content[0].text for i in rest.data] == ["Paris.", "Its population?"] and not rest.has_more
    assert [i.content[0].text for i in client.responses.input_items.list(first.id).data] == ["Capital of France?"]
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list("resp_unknown")
    bad = httpx.get(f"{e2e_gateway.url}/v1/responses/{second.id}/input_items?limit=500", timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("limit: expected an integer from 1 to 100")
    assert httpx.get(f"{e2e_gateway.url}/v1/responses/{second.id}/input_items?after=nope", timeout=10).status_code == 400
