"""Responses <-> chat <-> Anthropic translation, driven by the recorded fixtures in tests/fixtures/wire/.

Requests: ``openai_responses/<case>.request.json`` (a Responses request; ``codex_exec_tool_turn`` is
the real Codex CLI's, recorded through the gateway) translated for each upstream, expected beside it
as ``<case>.request.openai.json`` / ``<case>.request.anthropic.json``, or ``...<upstream>.error.json``
where the translation must refuse it (a 400 naming what cannot be carried).

Answers: every chat and Anthropic answer fixture (``openai_chat/`` and ``anthropic_messages/``,
``<case>.response.json`` and ``<case>.stream.sse``) as the Responses client receives it, expected as
``<case>.response.responses.json`` / ``<case>.stream.responses.sse`` (``.stream.responses.error.json``
for a stream that must fail). Generated ids and timestamps are replaced by stable placeholders.

``ARCHC_REGEN_WIRE=1`` rewrites the expected files: review the diff, they are the specification.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response

from runtime.errors import GatewayError
from runtime.wire import WireFormat, adapt
from runtime.wire import anthropic_messages as am
from runtime.wire import openai_chat as oc
from runtime.wire import openai_responses as orr

WIRE = Path(__file__).resolve().parents[2] / "fixtures" / "wire"
RESPONSES = WIRE / "openai_responses"
SOURCES = {WireFormat.OPENAI_CHAT: WIRE / "openai_chat", WireFormat.ANTHROPIC_MESSAGES: WIRE / "anthropic_messages"}
REGEN = os.environ.get("ARCHC_REGEN_WIRE") == "1"
CLIENT_MODEL = "client-model"
REQUEST = {"model": CLIENT_MODEL, "input": "hi", "instructions": "be brief", "max_output_tokens": 512, "metadata": {"run": "fixtures"}}
UPSTREAMS = {"openai": (WireFormat.OPENAI_CHAT, oc.validate_request), "anthropic": (WireFormat.ANTHROPIC_MESSAGES, am.validate_request)}

_GENERATED = re.compile(r"\b(resp|msg|rs|fc|call)_[0-9a-f]{48}\b")
_CREATED = re.compile(r'"created_at": ?\d+')


def _cases(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _stable(text: str) -> str:
    """Generated ids numbered in order of first appearance, timestamps zeroed: the same text every run."""
    seen: dict[str, str] = {}

    def number(m: re.Match[str]) -> str:
        return seen.setdefault(m.group(0), f"{m.group(1)}_{len(seen) + 1}")

    return _CREATED.sub('"created_at": 0', _GENERATED.sub(number, text))


def _expect(path: Path, actual: str) -> None:
    if REGEN:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing expected file {path.name} (run with ARCHC_REGEN_WIRE=1, then review it)"
    assert actual == path.read_text(encoding="utf-8")


def _json(value: Any) -> str:
    return _stable(json.dumps(value, indent=2, ensure_ascii=False)) + "\n"


def _error(exc: GatewayError) -> str:
    return json.dumps({"class": type(exc).__name__, "status": exc.status, "code": exc.code, "message": exc.message},
                      indent=2, ensure_ascii=False) + "\n"


def _expect_outcome(base: Path, produce: Any, check: Any = None) -> Any:
    """``produce()``'s result in ``base.json`` or, when it raises a GatewayError, the error in ``base.error.json``
    (exactly one of the two exists)."""
    ok, failed = base.with_name(base.name + ".json"), base.with_name(base.name + ".error.json")
    try:
        result = produce()
    except GatewayError as exc:
        if REGEN:
            ok.unlink(missing_ok=True)
        _expect(failed, _error(exc))
        assert not ok.exists()
        return None
    if REGEN:
        failed.unlink(missing_ok=True)
    if check is not None:
        check(result)
    _expect(ok, _json(result))
    assert not failed.exists()
    return result


# --- requests ---------------------------------------------------------------------------------------


def test_the_request_corpus_is_large_and_every_case_is_checked_both_ways() -> None:
    cases = _cases(RESPONSES, ".request.json")
    assert len(cases) >= 40
    for case in cases:
        for upstream in UPSTREAMS:
            assert (RESPONSES / f"{case}.request.{upstream}.json").exists() != (RESPONSES / f"{case}.request.{upstream}.error.json").exists(), case


@pytest.mark.parametrize("upstream", sorted(UPSTREAMS))
@pytest.mark.parametrize("case", _cases(RESPONSES, ".request.json"))
def test_request_for_each_upstream(case: str, upstream: str) -> None:
    body = orr.validate_request(_load(RESPONSES / f"{case}.request.json"))
    up_format, validate = UPSTREAMS[upstream]
    _expect_outcome(RESPONSES / f"{case}.request.{upstream}",
                    lambda: adapt.request_for_upstream(body, WireFormat.OPENAI_RESPONSES, up_format, "upstream-model"), validate)


def test_the_recorded_codex_turn_keeps_its_conversation_and_tools() -> None:
    body = _load(RESPONSES / "codex_exec_tool_turn.request.json")
    chat = _load(RESPONSES / "codex_exec_tool_turn.request.openai.json")
    assert [m["role"] for m in chat["messages"]] == ["system", "system", "user", "user", "assistant", "tool"]
    assert "archc-42" in chat["messages"][-1]["content"] and chat["messages"][-2]["tool_calls"][0]["function"]["name"] == "exec_command"
    offered = [t.get("name") or t["type"] for t in body["tools"]]
    assert [t["function"]["name"] for t in chat["tools"]] == [t["name"] for t in body["tools"] if t["type"] == "function"]
    assert {"multi_agent_v1", "web_search"} <= set(offered) - {t["function"]["name"] for t in chat["tools"]}
    assert orr.dropped_tools(body) == ["multi_agent_v1", "web_search"]


# --- answers ----------------------------------------------------------------------------------------


def _answer_cases(suffix: str) -> list[tuple[WireFormat, str]]:
    return [(fmt, case) for fmt, folder in SOURCES.items() for case in _cases(folder, suffix)]


def test_the_answer_corpus_is_large() -> None:
    assert len(_answer_cases(".response.json")) + len(_answer_cases(".stream.sse")) >= 40


def _sdk_accepts(response: dict[str, Any]) -> None:
    Response.model_validate(response)


@pytest.mark.parametrize("fmt, case", _answer_cases(".response.json"), ids=lambda v: getattr(v, "value", v))
def test_answer_for_a_responses_client(fmt: WireFormat, case: str) -> None:
    folder = SOURCES[fmt]
    resp = _load(folder / f"{case}.response.json")
    _expect_outcome(folder / f"{case}.response.responses",
                    lambda: adapt.response_for_client(resp, WireFormat.OPENAI_RESPONSES, fmt, model=CLIENT_MODEL, body=REQUEST),
                    _sdk_accepts)


def _stream(fmt: WireFormat, raw: bytes) -> bytes:
    converter = adapt.stream_adapter(WireFormat.OPENAI_RESPONSES, fmt, model=CLIENT_MODEL, body={**REQUEST, "stream": True})
    out = []
    for at in range(0, len(raw), 97):  # in pieces, as a socket delivers it
        out += converter.feed(raw[at:at + 97])
    return b"".join(out + converter.finish())


@pytest.mark.parametrize("fmt, case", _answer_cases(".stream.sse"), ids=lambda v: getattr(v, "value", v))
def test_stream_for_a_responses_client(fmt: WireFormat, case: str) -> None:
    folder = SOURCES[fmt]
    raw = (folder / f"{case}.stream.sse").read_bytes()
    ok, failed = folder / f"{case}.stream.responses.sse", folder / f"{case}.stream.responses.error.json"
    try:
        wire = _stream(fmt, raw)
    except GatewayError as exc:
        if REGEN:
            ok.unlink(missing_ok=True)
        _expect(failed, _error(exc))
        assert not ok.exists()
        return
    if REGEN:
        failed.unlink(missing_ok=True)
    _expect(ok, _stable(wire.decode("utf-8")))
    assert not failed.exists()
    # The unmodified SDK reads the whole stream, in order, to its terminal event.
    transport = httpx.MockTransport(lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=wire))
    with openai.OpenAI(api_key="k", base_url="http://gw.test/v1", http_client=httpx.Client(transport=transport), max_retries=0) as client:
        with client.responses.stream(model=CLIENT_MODEL, input="hi") as stream:
            seen = list(stream)
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    assert seen[0].type == "response.created" and seen[-1].type in ("response.completed", "response.incomplete")
