"""Stored Responses: what ``previous_response_id`` names, and ``GET``/``DELETE /v1/responses/{id}``.

Stage: http data (no I/O; the clock is injected). Each kept response holds the conversation items
up to and including its own output (``input_items`` of the expanded request + ``output_items``), so
a follow-up that names it is expanded in one lookup, whatever the upstream's API: the gateway
translates every turn, so it must remember every turn. In memory, bounded by count (least recently
used first) and by age; ``store: false`` keeps nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from runtime.errors import NotFound
from runtime.wire import openai_responses as orr

DEFAULT_MAX_RESPONSES = 10_000
DEFAULT_TTL_S = 24 * 3600.0


@dataclass
class _Kept:
    response: dict[str, Any]
    items: list[dict[str, Any]]  # the whole conversation through this response's output
    at: float


class ResponseStore:
    def __init__(self, max_responses: int = DEFAULT_MAX_RESPONSES, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_responses = max_responses
        self.ttl_s = ttl_s
        self.clock = clock
        self._kept: OrderedDict[str, _Kept] = OrderedDict()

    def _get(self, rid: str) -> _Kept | None:
        kept = self._kept.get(rid)
        if kept is None:
            return None
        if self.clock() - kept.at > self.ttl_s:
            del self._kept[rid]
            return None
        self._kept.move_to_end(rid)
        return kept

    def expand(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with ``input`` as the whole conversation: the stored items of its
        ``previous_response_id`` (404 when unknown or expired), then its own input items."""
        rid = body.get("previous_response_id")
        items = orr.input_items(body)
        if not rid:
            return {**body, "input": items}
        kept = self._get(rid)
        if kept is None:
            raise NotFound(f"previous_response_id: no stored response with id {rid!r} (unknown, expired, deleted, "
                           "or created with store: false)", code="previous_response_not_found")
        return {**body, "input": [*kept.items, *items]}

    def keep(self, body: dict[str, Any], response: dict[str, Any]) -> None:
        """Keep ``response`` for follow-ups unless the (expanded) request said ``store: false``."""
        if body.get("store") is False:
            return
        self._kept[response["id"]] = _Kept(response, [*body["input"], *orr.output_items(response)], self.clock())
        self._kept.move_to_end(response["id"])
        while len(self._kept) > self.max_responses:
            self._kept.popitem(last=False)

    def get(self, rid: str) -> dict[str, Any]:
        kept = self._get(rid)
        if kept is None:
            raise NotFound(f"no stored response with id {rid!r}", code="response_not_found")
        return kept.response

    def delete(self, rid: str) -> dict[str, Any]:
        if self._get(rid) is None:
            raise NotFound(f"no stored response with id {rid!r}", code="response_not_found")
        del self._kept[rid]
        return {"id": rid, "object": "response", "deleted": True}

    def __len__(self) -> int:
        return len(self._kept)
