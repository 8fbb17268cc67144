"""Helpers for in-process app tests: a scripted router and a recording upstream (tests/support/mock_pool.py)."""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Sequence

import httpx

from runtime.router.decision import Decision
from tests.support.mock_pool import MockPool


class ScriptedRouter:
    """A RouterService that answers a fixed Decision and records what it was asked."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.calls: list[list[Any]] = []
        self.closed = False

    async def decide(self, messages: Sequence[Mapping[str, Any]]) -> Decision:
        self.calls.append(list(messages))
        return self.decision

    async def aclose(self) -> None:
        self.closed = True


class Recorder:
    """The upstream's handler: records requests, answers with ``respond(request, body)``."""

    def __init__(self, respond: Callable[[httpx.Request, Any], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[Any] = []
        self.respond = respond or openai_ok

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append(request)
        self.bodies.append(body)
        return self.respond(request, body)

    def pool(self) -> MockPool:
        """An upstream pool for ``create_app(pool=...)`` whose provider is this recorder."""
        return MockPool(self)


def openai_ok(request: httpx.Request, body: Any) -> httpx.Response:
    if request.url.path.endswith("/messages"):
        return httpx.Response(200, json={"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                                         "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
                                         "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 2}})
    return httpx.Response(200, json={"id": "c1", "object": "chat.completion", "created": 1, "model": body["model"],
                                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                                                  "finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})


CHAT = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "openai/gpt-4o", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
