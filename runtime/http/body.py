"""The request body: read from the ASGI ``receive`` channel, bounded, and parsed as strict JSON.

Stage: http (framework-free: plain ASGI messages). Every endpoint that takes a JSON body reads it here.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import InvalidRequest, PayloadTooLarge
from runtime.http.asgi import Receive
from runtime.wire.json_text import parse_request


async def read_json(receive: Receive, content_length: str | None, limit: int) -> Any:
    """The request body (read from ``receive``) as JSON; 413 over ``limit`` bytes, 400 when it is not JSON."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(f"request body is {int(content_length)} bytes; this gateway accepts at most {limit} bytes")
    # The parts are joined once at the end: a growing buffer was copied again at each of its reallocations
    # (about 8 MB of copying for a 1 MB body arriving in 64 KB parts, the heap being kept: ARCHC_HEAP_KEEP_MB).
    parts: list[bytes] = []
    size = 0
    while True:  # what Request.stream() does, without a Request
        message = await receive()
        if message["type"] == "http.request":
            part = message.get("body", b"")
            if part:
                parts.append(part)
                size += len(part)
            if size > limit:
                raise PayloadTooLarge(f"request body is over {limit} bytes, the most this gateway accepts")
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise InvalidRequest("the client closed the connection before sending the whole body")
    if not size:
        raise InvalidRequest("request body is empty; expected a JSON object")
    return parse_request(parts[0] if len(parts) == 1 else b"".join(parts))  # strict: UTF-8 only, no NaN/Infinity, no number an upstream cannot read back
