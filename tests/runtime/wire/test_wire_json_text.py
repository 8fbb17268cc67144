"""runtime/wire/json_text.py and the bounds of the wire validators, through a real `archc serve`.

Bodies that Python's json would take but JSON (or any upstream) would not: NaN/Infinity literals,
numbers beyond a double or 64 bits, UTF-16/UTF-32 text. Each gets a 400 in the caller's format
naming the field, and nothing reaches the upstream. Also the request-side disagreements
/openapi.json once had with the gateway (count_tokens, ?format=, max_tokens: null).
"""

from __future__ import annotations

import json

from runtime.wire import json_text
from typing import Any, Iterator

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import Gateway, bundle_dict, provider, write_bundle

pytestmark = pytest.mark.e2e

CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
OPENAI_MODEL, ANTHROPIC_MODEL = "openai/gpt-4o", "anthropic/claude-x"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[Gateway]:
    providers = [provider(OPENAI_MODEL, upstream.openai_endpoint(), default=True),
                 provider(ANTHROPIC_MODEL, upstream.anthropic_endpoint(), wire="anthropic_messages")]
    with Gateway(write_bundle(tmp_path_factory.mktemp("json"), bundle_dict(providers)), args=["--log-level", "error"]) as gw:
        yield gw


@pytest.fixture
def client(gateway: Gateway, upstream: FakeUpstream) -> Iterator[httpx.Client]:
    upstream.reset()
    with httpx.Client(base_url=gateway.url, timeout=10) as c:
        yield c


def _text(path: str, model: str = OPENAI_MODEL, **fields: str) -> str:
    """A request body as JSON text, with ``fields`` spliced in as raw JSON literals."""
    extra = "".join(f', "{k}": {v}' for k, v in fields.items())
    return f'{{"model": "{model}", "max_tokens": 16, "messages": [{{"role": "user", "content": "hi"}}]{extra}}}'


def _error(response: httpx.Response, path: str) -> str:
    """The error message, after checking the answer is a 400 in the caller's format."""
    assert response.status_code == 400, response.text
    body = response.json()
    if path.startswith(MESSAGES):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    else:
        assert body["error"]["type"] == "invalid_request_error", body
    assert response.headers["x-arch-bundle"]
    return body["error"]["message"]


# (endpoint, raw fields spliced into a valid body, the JSON path the error must name first)
NON_JSON_NUMBERS = [
    (CHAT, {"temperature": "NaN"}, "temperature"),
    (MESSAGES, {"temperature": "Infinity"}, "temperature"),
    (CHAT, {"top_p": "-Infinity"}, "top_p"),
    (CHAT, {"metadata": '{"trace": [1, {"score": NaN}]}'}, "metadata.trace[1].score"),  # unvalidated fields too
    (MESSAGES, {"temperature": "1e400"}, "temperature"),  # overflows a double: json would read inf
    (CHAT, {"max_tokens": "1" + "0" * 400}, "max_tokens"),
    (MESSAGES, {"max_tokens": "9" * 5000}, "max_tokens"),  # past int()'s 4300-digit cap
    (CHAT, {"seed": str(2**64 + 1)}, "seed"),
]


@pytest.mark.parametrize("path, fields, field", NON_JSON_NUMBERS, ids=[f"{p} {f}" for p, _, f in NON_JSON_NUMBERS])
def test_non_json_numbers_are_refused_naming_the_field(client: httpx.Client, upstream: FakeUpstream,
                                                       path: str, fields: dict[str, str], field: str) -> None:
    r = client.post(path, content=_text(path, **fields), headers={"content-type": "application/json"})
    message = _error(r, path)
    assert message.startswith(f"{field}: "), message
    assert len(message) < 300  # a 5000-digit literal is not echoed back
    assert upstream.requests == []


# Integers JSON carries exactly but no API takes: each names its field.
OUT_OF_RANGE = [
    (CHAT, {"max_tokens": str(2**60)}, "max_tokens"),
    (CHAT, {"max_completion_tokens": str(2**53)}, "max_completion_tokens"),
    (CHAT, {"n": str(2**62)}, "n"),
    (CHAT, {"seed": str(2**63)}, "seed"),  # OpenAI documents an int64
    (MESSAGES, {"max_tokens": str(2**60)}, "max_tokens"),
    (MESSAGES, {"top_k": str(2**60)}, "top_k"),
    (MESSAGES, {"thinking": '{"type": "enabled", "budget_tokens": %d}' % 2**60}, "thinking.budget_tokens"),
]


@pytest.mark.parametrize("path, fields, field", OUT_OF_RANGE, ids=[f"{p} {f}" for p, _, f in OUT_OF_RANGE])
def test_integers_beyond_the_api_range_are_refused(client: httpx.Client, upstream: FakeUpstream,
                                                   path: str, fields: dict[str, str], field: str) -> None:
    model = ANTHROPIC_MODEL if path == MESSAGES else OPENAI_MODEL
    r = client.post(path, content=_text(path, model, **fields), headers={"content-type": "application/json"})
    assert _error(r, path).startswith(f"{field}: ")
    assert upstream.requests == []


def test_the_largest_seed_in_range_is_forwarded(client: httpx.Client, upstream: FakeUpstream) -> None:
    r = client.post(CHAT, content=_text(CHAT, seed=str(-(2**63))), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert upstream.requests[0].body["seed"] == -(2**63)


ENCODINGS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]


@pytest.mark.parametrize("path", [CHAT, MESSAGES, "/v1/messages/count_tokens", "/v1/route"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_bodies_not_in_utf8_are_refused(client: httpx.Client, upstream: FakeUpstream, path: str, encoding: str) -> None:
    r = client.post(path, content=_text(path).encode(encoding), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert ("type" in body) is path.startswith(MESSAGES)  # the caller's format
    assert "must be UTF-8" in body["error"]["message"]
    assert upstream.requests == []


def test_a_utf8_byte_order_mark_is_skipped(client: httpx.Client) -> None:
    r = client.post(CHAT, content=b"\xef\xbb\xbf" + _text(CHAT).encode(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_an_unknown_part_type_is_refused_before_translation(client: httpx.Client, upstream: FakeUpstream) -> None:
    """An OpenAI part Anthropic has no block for was dropped, and the error then spoke of a missing message."""
    body = {"model": ANTHROPIC_MODEL, "messages": [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "and"}, {"type": "hologram", "hologram": {}}]}]}
    message = _error(client.post(CHAT, json=body), CHAT)
    assert message.startswith("messages[2].content[1].type: ") and "'hologram'" in message
    assert upstream.requests == []
    body["model"] = OPENAI_MODEL  # same format: passed through, new part types are the upstream's to judge
    assert client.post(CHAT, json=body).status_code == 200
    assert upstream.requests[0].body["messages"][2]["content"][1]["type"] == "hologram"


def test_max_tokens_null_is_accepted_on_chat(client: httpx.Client) -> None:
    """The openai SDK sends null for an explicit None; OpenAI's own spec allows it (so does ours)."""
    r = client.post(CHAT, json={"model": OPENAI_MODEL, "max_tokens": None, "stream": None,
                                "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text


def test_count_tokens_checks_the_body_as_messages_does(client: httpx.Client) -> None:
    bad = {"messages": [{"role": "user", "content": [{"type": "text", "text": {}}]}]}
    message = _error(client.post("/v1/messages/count_tokens", json=bad), MESSAGES)
    assert message.startswith("messages[0].content[0].text: ")
    good = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]}  # no max_tokens needed
    r = client.post("/v1/messages/count_tokens", json=good)
    assert r.status_code == 200 and r.json()["input_tokens"] >= 1


@pytest.mark.parametrize("value", ["anthropics", "", "OPENAI"])
def test_route_refuses_an_unknown_format(client: httpx.Client, value: str) -> None:
    r = client.post("/v1/route", params={"format": value}, content=_text(CHAT))
    assert _error(r, CHAT).startswith("format: ")


def test_route_needs_no_max_tokens_in_either_format(client: httpx.Client, upstream: FakeUpstream) -> None:
    body = {"model": ANTHROPIC_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    for fmt in ("anthropic", "openai"):
        r = client.post("/v1/route", params={"format": fmt}, content=json.dumps(body))
        assert r.status_code == 200, r.text
        assert r.json()["model"] == ANTHROPIC_MODEL
    assert upstream.requests == []


@pytest.mark.parametrize("text", [
    '{"a":1,"b":"é","c":[true,null,1.5]}',
    '{"big":18446744073709551616,"neg":-18446744073709551616}',  # past orjson's 64 bits: the stdlib writes them
    '{"s":"\\ud800 lone"}',  # a lone surrogate escape: written back escaped, as ASCII
    '{"n":-0.0,"f":1e-7,"i":9007199254740993}',
])
def test_dumps_writes_back_every_value_parse_request_accepts(text: str) -> None:
    from runtime.wire.json_text import dumps, parse_request
    value = parse_request(text.encode())
    out = dumps(value)
    assert json.loads(out) == value
    assert b", " not in out and b": " not in out  # compact


# -- the fast parser (msgspec, then a 64-bit check) against the strict one -----------------------

_TRICKY = [b'{"a":"\\uDFFF"}', b'{"a":"\\ud800"}', b'\xef\xbb\xbf{"a":1}', b'{"a":-18446744073709551616}',
           b'{"a":-9223372036854775809}', b'{"a":18446744073709551616}', b'{"a":18446744073709551617}', b'{"a":1e400}',
           b'{"a":NaN}', b'{"a":"\t"}', b'{"a":"\x00"}', b'[1,]', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b'1' * 5000,
           b'[' * 300 + b']' * 300, b'[' * 5000 + b']' * 5000, b'{"a":1,"a":2}', b'-0', b'1e-999', b'[] x', b' [] ',
           '"é"'.encode("utf-16"), b'{"a":123456789012345678901234567890.5}',
           b'{"a":NaN,"b":}', b'{"a":1e400 x']  # refused literal, then broken text: once a 500


def _outcome(parse: Any, body: bytes) -> tuple[str, Any]:
    from runtime.errors import InvalidRequest
    try:
        return "ok", json.dumps(parse(body), sort_keys=True)  # -0.0 and 0 told apart, key order ignored
    except InvalidRequest as exc:
        return "refused", exc.message


@pytest.mark.parametrize("body", _TRICKY, ids=[repr(b[:30]) for b in _TRICKY])
def test_the_fast_parser_answers_as_the_strict_one(body: bytes) -> None:
    from runtime.wire import json_text
    assert _outcome(json_text.parse_request, body) == _outcome(json_text._parse_strict, body)


def test_the_fast_parser_agrees_on_generated_bodies() -> None:
    from hypothesis import given, settings, strategies as st
    from runtime.wire import json_text

    scalars = st.none() | st.booleans() | st.integers(min_value=-(2**66), max_value=2**66) | st.text() | \
        st.floats(allow_nan=False, allow_infinity=False)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                          max_leaves=20)

    @given(values, st.data())
    @settings(max_examples=400, deadline=None, derandomize=True, database=None)
    def check(value: Any, data: Any) -> None:
        body = json.dumps(value, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass")
        if data.draw(st.booleans()) and body:  # and a mutation: a byte changed, as fuzzers do
            at = data.draw(st.integers(0, len(body) - 1))
            body = body[:at] + bytes([data.draw(st.integers(0, 255))]) + body[at + 1:]
        assert _outcome(json_text.parse_request, body) == _outcome(json_text._parse_strict, body)

    check()


@pytest.mark.parametrize("raw", [b'{"a":1}', b'{"n":NaN,"i":-Infinity}', b'{"big":123456789012345678901234567890}',
                                 '{"t":"é"}'.encode("utf-16"), b'{"s":"\\ud800"}', b'{"f":1.1e-7,"d":{"x":1,"x":2}}',
                                 b' [1, 2.5, "x", null, true] '])
def test_an_upstream_answer_reads_as_the_standard_library_reads_it(raw):
    assert repr(json_text.parse_answer(raw)) == repr(json.loads(raw))  # ints exact, floats the same, NaN kept


@pytest.mark.parametrize("raw", [b"", b"<html>502</html>", b'{"a":1', b"[" * 100_000 + b"]" * 100_000, b'{"a":1}x'])
def test_what_is_not_an_answer_is_a_value_error(raw):
    with pytest.raises(ValueError):
        json_text.parse_answer(raw)
