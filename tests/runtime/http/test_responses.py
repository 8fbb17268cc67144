"""SSEResponse: streams like StreamingResponse; a client that leaves cancels the body iterator."""

from __future__ import annotations

import asyncio

import pytest

from runtime.http.responses import SSEResponse

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


def _sent(app) -> list:
    sent = []

    async def receive():
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    async def main():
        await app(SCOPE, receive, send)

    asyncio.run(main())
    return sent


def test_answers_send_what_starlettes_responses_sent():
    from starlette.responses import Response, StreamingResponse

    from runtime.http.asgi import JSONAnswer
    from runtime.http.responses import SSEAnswer

    raw = [(b"x-arch-route", b"none"), (b"x-arch-bundle", b"sha256:00")]
    named = {"x-arch-route": "none", "x-arch-bundle": "sha256:00"}
    for status in (200, 404, 503, 204):
        assert _sent(JSONAnswer(status, raw, b'{"a":1}')) == _sent(
            Response(b'{"a":1}', status_code=status, headers=named, media_type="application/json"))

    async def chunks():
        yield b"data: 1\n\n"
        yield b"data: [DONE]\n\n"

    assert _sent(SSEAnswer(raw, chunks())) == _sent(
        StreamingResponse(chunks(), headers={**named, "cache-control": "no-cache"}, media_type="text/event-stream"))


def test_a_stream_that_never_waits_starts_no_watcher():
    from runtime.http.responses import SSEAnswer

    tasks = []

    async def chunks():
        tasks.append(len(asyncio.all_tasks()))
        yield b"data: 1\n\n"
        tasks.append(len(asyncio.all_tasks()))

    _sent(SSEAnswer([], chunks()))
    assert tasks == [1, 1]  # only the request's own task
