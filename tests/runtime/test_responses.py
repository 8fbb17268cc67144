"""SSEResponse: streams like StreamingResponse; a client that leaves cancels the body iterator."""

from __future__ import annotations

import asyncio

import pytest

from runtime.responses import SSEResponse

SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.1"}, "method": "POST", "path": "/", "headers": []}


def test_streams_every_chunk_then_ends():
    sent = []

    async def body():
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    async def receive():
        await asyncio.sleep(3600)  # the client stays

    async def send(message):
        sent.append(message)

    asyncio.run(SSEResponse(body(), media_type="text/event-stream")(SCOPE, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    assert [m["body"] for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b""]
    assert [m["more_body"] for m in sent[1:]] == [True, True, False]


def test_client_leaving_cancels_the_body_and_runs_its_cleanup():
    state = {"closed": False, "sent": 0}

    async def body():
        try:
            yield b"data: first\n\n"
            await asyncio.sleep(3600)  # an upstream that stalls
            yield b"never"
        finally:
            state["closed"] = True

    async def main():
        leave = asyncio.Event()

        async def receive():
            await leave.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            state["sent"] += 1
            if message.get("body") == b"data: first\n\n":
                leave.set()

        await asyncio.wait_for(SSEResponse(body())(SCOPE, receive, send), 5)

    asyncio.run(main())
    assert state["closed"] is True and state["sent"] == 2


def test_an_outside_cancel_is_not_swallowed():
    async def body():
        yield b"a"
        await asyncio.sleep(3600)

    async def main():
        async def receive():
            await asyncio.sleep(3600)

        async def send(message):
            pass

        task = asyncio.create_task(SSEResponse(body())(SCOPE, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
