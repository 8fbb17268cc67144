"""runtime/http/chat.py: the hot endpoints over raw ASGI answer as Starlette's responses did; per-bundle memos."""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace
from typing import Any

from starlette.responses import JSONResponse

from archc.bundle import seal
from runtime.decide.pool import PoolRanker
from runtime.http import decision
from runtime.http import chat
from runtime.errors import RateLimited, UpstreamStatus, render
from runtime.http.asgi import error_answer
from runtime.observe.metrics import Metrics
from runtime.decide.choose import Choice
from runtime.router.decision import Decision
from runtime.wire import WireFormat
from tests.support.app_support import ScriptedRouter
from tests.support.gateway import bundle_dict, provider

OAI = "http://up.test/v1/chat/completions"


def _bundle(tag: str = "a", **kw: Any):
    return seal({**bundle_dict([provider("openai/gpt-4o", OAI, default=True), provider("groq/llama", OAI)], **kw),
                 "source": {"tag": tag}})


def _state(bundle, router: Any = None) -> SimpleNamespace:
    return SimpleNamespace(bundle=bundle, memo={}, router=router, metrics=Metrics(), pools=PoolRanker(), pins=None)


def _decide(state: SimpleNamespace, model: str | None) -> Choice:
    body = {"messages": [{"role": "user", "content": "hi"}], **({"model": model} if model else {})}
    return asyncio.run(decision.decide_request(state, body, WireFormat.OPENAI_CHAT))  # type: ignore[arg-type]


def test_error_answer_is_what_jsonresponse_sent() -> None:
    state = _state(_bundle())
    headers = chat._decision(state, _decide(state, "openai/gpt-4o"))  # type: ignore[arg-type]
    decided = {k.decode(): v.decode() for k, v in headers}
    for err in (UpstreamStatus(503, "busy ünïcode"), RateLimited("slow down", headers={"Retry-After": "3", "x-arch-bundle": "x"})):
        err.headers.setdefault("x-arch-attempts", "openai/gpt-4o=503")
        answer = error_answer(err, WireFormat.OPENAI_CHAT, headers)
        expected = JSONResponse(render(err, WireFormat.OPENAI_CHAT), status_code=err.status, headers={**decided, **err.headers})
        assert (answer.status, answer.headers, answer.body) == (expected.status_code, expected.raw_headers, expected.body)
    assert headers == chat._decision(state, _decide(state, "openai/gpt-4o"))  # the memo is never written through


def test_decision_headers_are_remembered_per_bundle_digest() -> None:
    a, b = _bundle("a"), _bundle("b")
    state = _state(a)
    choice = _decide(state, "openai/gpt-4o")
    first = chat._decision(state, choice)  # type: ignore[arg-type]
    assert chat._decision(state, choice) is first  # type: ignore[arg-type]
    assert (b"x-arch-bundle", a.digest.encode()) in first and (b"x-arch-router-ms", b"0.00") in first
    # Even a memo that outlived its bundle cannot answer for the next one: the digest is in the key.
    reloaded = SimpleNamespace(**{**vars(state), "bundle": b})
    assert (b"x-arch-bundle", b.digest.encode()) in chat._decision(reloaded, choice)  # type: ignore[arg-type]


def test_router_runs_are_never_remembered() -> None:
    state = _state(_bundle())
    choice = dataclasses.replace(_decide(state, "openai/gpt-4o"), decision=Decision(None, "other", router_ms=12.345))
    size = len(state.memo)
    headers = chat._decision(state, choice)  # type: ignore[arg-type]
    assert (b"x-arch-router-ms", b"12.35") in headers and len(state.memo) == size


def test_decide_remembers_only_router_free_choices_of_known_models() -> None:
    state = _state(_bundle())
    known = _decide(state, "openai/gpt-4o")
    assert _decide(state, "openai/gpt-4o") is known and known.why == "literal"
    size = len(state.memo)
    unknown = [_decide(state, f"made-up-{i}") for i in range(3)]  # the default serves them: not remembered
    assert all(c.why == "default" and c.requested == f"made-up-{i}" for i, c in enumerate(unknown))
    assert _decide(state, None).why == "default" and len(state.memo) == size

    routed = _bundle(routes=[("code", "coding", "groq/llama")])
    router = ScriptedRouter(Decision(route="code", router_ms=3.0))
    state = _state(routed, router)
    assert _decide(state, "openai/gpt-4o").provider.name == "groq/llama"
    assert _decide(state, "openai/gpt-4o").provider.name == "groq/llama"
    assert len(router.calls) == 2 and not any(key[0] == "choice" for key in state.memo)
