"""/openapi.json against the real gateway: schemathesis drives every operation of the served document
at an `archc serve` process with fake upstreams behind it (OpenAI and Anthropic wires, passthrough
and translated), and every answer must be one the document describes.

Checks: no 5xx; the status code, content type, headers and JSON body are documented; data the
document forbids is refused (4xx). Streamed answers are read event by event and each event's data
is validated against the schema the document names for it (``x-event-schema``). Bounded and
derandomized: the same cases on every run, well under a minute on 2 cores.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Iterator

import httpx
import jsonschema
import pytest
import schemathesis  # a hard dependency of the test extra: a missing one fails collection, never skips
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from runtime.http.openapi import spec
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle

pytestmark = pytest.mark.e2e

# Per operation and mode (40: 560 cases, about 30 s on 2 cores). A longer derandomized
# run (ARCHC_CONFORMANCE_EXAMPLES=300: about 4,000 cases) is how the spec/gateway mismatches are hunted.
EXAMPLES = int(os.environ.get("ARCHC_CONFORMANCE_EXAMPLES", "40"))
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]
NEGATIVE_CHECKS = [*CHECKS, checks.negative_data_rejection]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(record=False) as up:
        yield up


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[Gateway]:
    providers = [
        provider("openai/gpt-4o", upstream.openai_endpoint(), default=True),
        provider("anthropic/claude-x", upstream.anthropic_endpoint(), wire="anthropic_messages"),
    ]
    bundle = bundle_dict(providers, aliases={"arch.fast.v1": "openai/gpt-4o", "arch.claude.v1": "anthropic/claude-x"})
    with Gateway(write_bundle(tmp_path_factory.mktemp("conformance"), bundle), args=["--log-level", "error"]) as gw:
        yield gw


def _schema() -> Any:
    return schemathesis.openapi.from_dict(spec())


OPERATIONS = [result.ok() for result in _schema().get_all_operations()]
MODES = list(schemathesis.GenerationMode)
CASES = [(op, mode) for op in OPERATIONS for mode in MODES
         if mode is schemathesis.GenerationMode.POSITIVE or op.body or op.query]


def test_the_served_document_is_the_tested_one(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/openapi.json").json() == spec()


@pytest.mark.parametrize("operation, mode", CASES, ids=[f"{op.label} {mode.value}" for op, mode in CASES])
def test_every_answer_is_documented(gateway: Gateway, operation: Any, mode: Any) -> None:
    statuses: list[int] = []
    wanted = NEGATIVE_CHECKS if mode is schemathesis.GenerationMode.NEGATIVE else CHECKS

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(base_url=gateway.url, timeout=10)
        statuses.append(response.status_code)
        case.validate_response(response, checks=wanted)

    run()
    assert statuses, "no case reached the gateway"


# -- the happy paths, every wire combination, whole bodies and streams ---------------------------

_OPENAI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
_ANTHROPIC = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
HAPPY = [
    ("/v1/chat/completions", "openai/gpt-4o", _OPENAI),  # passthrough
    ("/v1/chat/completions", "anthropic/claude-x", _OPENAI),  # translated
    ("/v1/messages", "anthropic/claude-x", _ANTHROPIC),
    ("/v1/messages", "openai/gpt-4o", _ANTHROPIC),
    ("/v1/responses", "openai/gpt-4o", {"input": "hi", "max_output_tokens": 20}),  # translated to chat
    ("/v1/responses", "anthropic/claude-x", {"input": [{"role": "user", "content": "hi"}]}),  # through chat to Anthropic
]


def _operation(path: str) -> Any:
    return next(op for op in OPERATIONS if op.path == path)


def _json_schema(name: str | None = None, schema: Any = None) -> dict[str, Any]:
    """A component schema (or ``schema``, which may refer to them) as plain JSON Schema: OpenAPI 3.0's
    ``nullable`` becomes a type list."""
    document = copy.deepcopy(spec())
    schema = copy.deepcopy(schema)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            for key, value in list(node.items()):
                if key == "$ref" and isinstance(value, str):
                    node[key] = value.replace("#/components/schemas/", "#/$defs/")
                fix(value)
        elif isinstance(node, list):
            for item in node:
                fix(item)

    schemas = document["components"]["schemas"]
    fix(schemas)
    if name is not None:
        return {"$defs": schemas, "$ref": f"#/$defs/{name}"}
    fix(schema)
    return {"$defs": schemas, **schema}


def _events(text: str) -> list[tuple[str | None, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((fields.get("event"), fields["data"]))
    return out


@pytest.mark.parametrize("path, model, body", HAPPY, ids=[f"{p} {m}" for p, m, _ in HAPPY])
def test_whole_answers_match_the_document(gateway: Gateway, path: str, model: str, body: dict[str, Any]) -> None:
    operation = _operation(path)
    case = operation.Case(body={**body, "model": model}, media_type="application/json")
    response = case.call(base_url=gateway.url, timeout=10)
    assert response.status_code == 200, response.text
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("path, model, body", HAPPY, ids=[f"{p} {m}" for p, m, _ in HAPPY])
def test_streamed_events_match_the_document(gateway: Gateway, path: str, model: str, body: dict[str, Any]) -> None:
    operation = _operation(path)
    case = operation.Case(body={**body, "model": model, "stream": True}, media_type="application/json")
    response = case.call(base_url=gateway.url, timeout=10)
    assert response.status_code == 200, response.text
    case.validate_response(response, checks=CHECKS)  # status, content type and headers
    media = spec()["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"]
    validator = jsonschema.Draft202012Validator(_json_schema(media["x-event-schema"]["$ref"].rsplit("/", 1)[1]))
    events = _events(response.text)
    if path == "/v1/chat/completions":
        assert events[-1] == (None, "[DONE]")
        events = events[:-1]
    assert events
    for name, data in events:
        event = json.loads(data)
        validator.validate(event)
        if name is not None:  # Anthropic: the event name repeats the data's type
            assert name == event["type"]


# -- the spec and the gateway agree on the edges they once disagreed on ---------------------------

_HI = [{"role": "user", "content": "hi"}]
EDGES = [  # (path, query, body): the document accepts the body exactly when the gateway does
    ("/v1/chat/completions", {}, {"messages": _HI, "max_tokens": None}),  # the openai SDK sends null for None
    ("/v1/chat/completions", {}, {"messages": _HI, "stream": None}),
    ("/v1/chat/completions", {}, {"messages": _HI, "max_tokens": 0}),
    ("/v1/chat/completions", {}, {"messages": _HI, "max_tokens": 2**60}),
    ("/v1/chat/completions", {}, {"messages": [{"role": "user", "content": [{"type": "hologram"}]}]}),  # passthrough
    ("/v1/chat/completions", {}, {"messages": [{"role": "user", "content": [{"type": "text", "text": {}}]}]}),
    ("/v1/messages", {}, {"messages": _HI, "max_tokens": None}),
    ("/v1/messages", {}, {"messages": _HI, "max_tokens": 2**60}),
    ("/v1/messages", {}, {"messages": [{"role": "system", "content": "be brief"}, *_HI], "max_tokens": 8}),
    ("/v1/messages/count_tokens", {}, {"messages": [{"role": "user", "content": [{"type": "text", "text": {}}]}]}),
    ("/v1/messages/count_tokens", {}, {"messages": _HI}),
    ("/v1/messages/count_tokens", {}, {"messages": []}),
    ("/v1/route", {"format": "anthropic"}, {"messages": _HI}),  # no max_tokens needed for a decision
    ("/v1/route", {"format": "openai"}, {"messages": _HI}),
    ("/v1/route", {"format": "anthropics"}, {"messages": _HI}),
    # found by a longer seeded schemathesis run (egress issue): tool results name their call; system: null is absent
    ("/v1/chat/completions", {}, {"messages": [*_HI, {"role": "tool", "content": "42"}]}),
    ("/v1/chat/completions", {}, {"messages": [*_HI, {"role": "tool", "content": "42", "tool_call_id": "call_1"}]}),
    ("/v1/route", {"format": "anthropic"}, {"messages": [*_HI, {"role": "tool", "content": "42"}]}),
    ("/v1/route", {"format": "openai"}, {"messages": [*_HI, {"role": "tool", "content": "42"}]}),
    ("/v1/messages", {}, {"messages": _HI, "max_tokens": 8, "system": None}),
    ("/v1/messages/count_tokens", {}, {"messages": _HI, "system": None}),
    ("/v1/route", {"format": "openai"}, {"model": None, "messages": _HI}),
    # a block type the gateway does not know is the upstream's to judge: forwarded on passthrough
    ("/v1/messages", {}, {"model": "anthropic/claude-x", "messages": [{"role": "user", "content": [{"type": "AAA"}]}], "max_tokens": 8}),
    ("/v1/messages/count_tokens", {}, {"messages": _HI, "metadata": {"n": 2**64}}),
    ("/v1/messages/count_tokens", {}, {"messages": _HI, "metadata": {"n": -(2**63) - 1}}),
]


def _documented(path: str, query: dict[str, str], body: Any) -> bool:
    operation = spec()["paths"][path]["post"]
    for param in operation.get("parameters", ()):
        if param["in"] == "query" and param["name"] in query:
            if not jsonschema.Draft202012Validator(_json_schema(schema=param["schema"])).is_valid(query[param["name"]]):
                return False
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator(_json_schema(schema=request)).is_valid(body)


@pytest.mark.parametrize("path, query, body", EDGES, ids=[f"{p} {q} {json.dumps(b)[:60]}" for p, q, b in EDGES])
def test_the_document_accepts_what_the_gateway_accepts(gateway: Gateway, path: str, query: dict[str, str], body: Any) -> None:
    response = httpx.post(gateway.url + path, params=query, json={"model": "openai/gpt-4o", **body}, timeout=10)
    assert response.status_code in (200, 400), response.text
    assert (response.status_code == 200) is _documented(path, query, {"model": "openai/gpt-4o", **body}), response.text


def test_a_request_the_chosen_upstream_cannot_carry_is_a_documented_400(gateway: Gateway) -> None:
    """Whether a body can be translated depends on the model it is routed to, which no request schema
    can say: the document names that 400, and the message speaks the caller's format."""
    body = {"model": "openai/gpt-4o", "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "AAA"}]}]}
    response = httpx.post(gateway.url + "/v1/messages", json=body, timeout=10)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "'AAA'" in message and "openai/gpt-4o" in message and "text" in message, message
    described = spec()["paths"]["/v1/messages"]["post"]["responses"]["400"]["description"]
    assert "untranslatable" in described or "cannot carry" in described, described
