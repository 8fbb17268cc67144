"""Provider adapter: composes the wire modules for one (client format, upstream format) pair.

Stage: adapter (between resolve and upstream). Pure data in, data out; imports runtime.wire and
runtime.wire.sse only. OpenAI chat is the pivot; same-format pairs pass the body through untouched
except ``model``, so unknown fields survive (Responses to a Responses upstream included: built-in
tools go through). Streams: ``stream_adapter(...)`` gives an object
whose ``feed(bytes)``/``finish()`` return the bytes to send the client.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable, Mapping

import orjson

from runtime.errors import BadUpstreamResponse, UpstreamError
from runtime.wire.sse import DONE, SSEDecoder, encode_json, first_event
from runtime.wire import WireFormat
from runtime.wire import anthropic_messages as anthropic
from runtime.wire import openai_chat as openai
from runtime.wire import openai_responses as responses

OPENAI = WireFormat.OPENAI_CHAT
ANTHROPIC = WireFormat.ANTHROPIC_MESSAGES
RESPONSES = WireFormat.OPENAI_RESPONSES

VALIDATORS: Mapping[WireFormat, Callable[[object], dict[str, Any]]] = {
    OPENAI: openai.validate_request,
    ANTHROPIC: anthropic.validate_request,
    RESPONSES: responses.validate_request,
}
ERROR_EVENTS: Mapping[WireFormat, Callable[[dict[str, Any]], bytes]] = {
    OPENAI: openai.error_event,
    ANTHROPIC: anthropic.error_event,
    RESPONSES: responses.error_event,
}


def openai_messages(body: dict[str, Any], client_format: WireFormat) -> list[Any]:
    """The conversation as OpenAI chat messages (what the router reads)."""
    if client_format is OPENAI:
        return body["messages"]
    if client_format is RESPONSES:  # leniently: the request may be passed through to a Responses upstream
        return responses.chat_messages(body)
    return anthropic.request_to_openai(body)["messages"]


def request_for_upstream(body: dict[str, Any], client_format: WireFormat, upstream_format: WireFormat, model: str,
                         *, keep_reasoning: bool = False) -> dict[str, Any]:
    """The body to send upstream, in its format, naming the upstream's model id.

    ``keep_reasoning``: send earlier turns' thinking as ``reasoning_content`` to an OpenAI-format
    upstream (off by default: DeepSeek answers 400 when input messages carry it).
    """
    if client_format is upstream_format:
        if client_format is RESPONSES:  # its input already holds the stored history (runtime/http/stored.py)
            return {**{k: v for k, v in body.items() if k != "previous_response_id"}, "model": model}
        return {**body, "model": model}
    if client_format is RESPONSES:  # through the pivot
        chat = {**responses.request_to_chat(body, keep_reasoning=keep_reasoning), "model": model}
        return chat if upstream_format is OPENAI else anthropic.request_from_openai(chat)
    if client_format is ANTHROPIC:
        return {**anthropic.request_to_openai(body, keep_reasoning=keep_reasoning), "model": model}
    return anthropic.request_from_openai({**body, "model": model})


def check_answer(resp: Any, upstream_format: WireFormat, who: str) -> None:
    """Refuse (BadUpstreamResponse) a 200 whose JSON is not ``upstream_format``'s answer object:
    a chat completion with ``choices`` (each with a ``message``), or a ``message`` with ``content``.
    ``who`` names the upstream in the error ("upstream 'x'")."""
    if upstream_format is OPENAI:
        choices = resp.get("choices") if isinstance(resp, dict) else None
        if isinstance(choices, list) and all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices):
            return
        what = "a chat completion (choices[].message)"
    elif upstream_format is RESPONSES:
        if isinstance(resp, dict) and resp.get("object", "response") == "response" and isinstance(resp.get("output"), list):
            return
        what = 'a response (object "response" with output[])'
    else:
        if isinstance(resp, dict) and resp.get("type", "message") == "message" and isinstance(resp.get("content"), list):
            return
        what = 'a message (type "message" with content[])'
    raise BadUpstreamResponse(f"{who} answered 200 with JSON that is not {what}: {_outline(resp)}")


def _outline(value: Any) -> str:
    """What a JSON value is, without its contents (they may be long, or hold what should not be logged)."""
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:6]) + (", ..." if len(value) > 6 else "")
        return f"an object with keys {keys}" if value else "an empty object"
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def response_for_client(resp: Any, client_format: WireFormat, upstream_format: WireFormat, *, model: str,
                        body: Mapping[str, Any] | None = None) -> Any:
    """The upstream's (non-streamed) answer in the client's format (``check_answer`` has passed it);
    ``body``: the client's request (a Responses answer echoes its settings)."""
    if not isinstance(resp, dict):
        raise UpstreamError("upstream answered with JSON that is not an object")
    if client_format is upstream_format:
        return resp
    try:
        if client_format is RESPONSES:
            chat = resp if upstream_format is OPENAI else anthropic.response_to_openai(resp, model=model, created=int(time.time()))
            return responses.response_from_chat(chat, dict(body or {}), model=model)
        if client_format is ANTHROPIC:
            return anthropic.response_from_openai(resp, model=model)
        return anthropic.response_to_openai(resp, model=model, created=int(time.time()))
    except _SHAPE_ERRORS as exc:
        raise UpstreamError(f"upstream answered in an unexpected shape ({type(exc).__name__}: {exc})") from exc


def usage_of(resp: Any, upstream_format: WireFormat) -> tuple[int, int]:
    if not isinstance(resp, dict):
        return (0, 0)
    if upstream_format is OPENAI:
        return openai.usage_from_response(resp)
    usage = resp.get("usage") if isinstance(resp.get("usage"), dict) else {}
    ins, outs = usage.get("input_tokens"), usage.get("output_tokens")
    return (ins if isinstance(ins, int) else 0, outs if isinstance(outs, int) else 0)


# Lines that end a stream: the format's terminal event, or an error event (the upstream's own ending).
# At a line start (a JSON string cannot hold a raw newline, so content never matches).
_TERMINALS: Mapping[WireFormat, re.Pattern[bytes]] = {
    OPENAI: re.compile(rb'\ndata: ?(?:\[DONE\]|\{"error")'),
    ANTHROPIC: re.compile(rb"\nevent: ?(?:message_stop|error)\r?\n"),
    RESPONSES: re.compile(rb"\nevent: ?(?:response\.(?:completed|incomplete|failed)|error)\r?\n"),
}
_TERMINAL_NAME = {OPENAI: "data: [DONE]", ANTHROPIC: "message_stop", RESPONSES: "response.completed"}
# Each terminal's distinctive bytes and how far its line start can be before them (with and without
# the optional space): bytes.find (C's fast search) finds candidates and the pattern is matched only
# there. A regex search stepped through every byte of the stream (about 5 instructions a byte here).
_TERMINAL_TOKENS: Mapping[WireFormat, tuple[tuple[bytes, ...], tuple[int, int]]] = {
    OPENAI: ((b"[DONE]", b'{"error"'), (len(b"\ndata: "), len(b"\ndata:"))),
    ANTHROPIC: ((b"message_stop", b"error"), (len(b"\nevent: "), len(b"\nevent:"))),
    RESPONSES: ((b"response.completed", b"response.incomplete", b"response.failed", b"error"),
                (len(b"\nevent: "), len(b"\nevent:"))),
}


def _has_terminal(window: bytes, upstream_format: WireFormat) -> bool:
    """``_TERMINALS[upstream_format].search(window) is not None``, at a fraction of the cost: every
    match holds one of the tokens at one of the offsets from its start, so only those are tried,
    from the end back (a terminal event ends its stream: found after its own bytes, not the stream's)."""
    pattern = _TERMINALS[upstream_format]
    tokens, offsets = _TERMINAL_TOKENS[upstream_format]
    for token in tokens:
        at = window.rfind(token)
        while at != -1:
            for offset in offsets:
                if at >= offset and pattern.match(window, at - offset) is not None:
                    return True
            at = window.rfind(token, 0, at + len(token) - 1)
    return False


def _incomplete(upstream_format: WireFormat) -> BadUpstreamResponse:
    return BadUpstreamResponse(f"the upstream's stream ended before {_TERMINAL_NAME[upstream_format]}: "
                               "the answer is incomplete")


_FIRST_EVENT_LIMIT = 1024 * 1024  # bytes of a stream read without one whole event: not an event stream
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")  # a blank line ends an event (WHATWG: CRLF, LF or CR)


def _event_end(pending: bytes) -> tuple[int, int] | None:
    """The span of the first blank line in ``pending``: ``_EVENT_END``'s, by bytes.find when there
    is no CR (most streams; the regex's search steps through every byte)."""
    if b"\r" not in pending:
        at = pending.find(b"\n\n")
        return None if at < 0 else (at, at + 2)
    cut = _EVENT_END.search(pending)
    return None if cut is None else cut.span()


class FirstEvent:
    """Judges a stream by its first event before anything is committed to the client: ``feed``
    returns True once the first event parses as the wire's (a JSON object; not an error), False
    while more bytes are needed, and raises BadUpstreamResponse for anything else (``end`` when the
    stream stops first). Comments (``: ping``) and blank lines before it are skipped."""

    __slots__ = ("format", "who", "size", "pending", "fresh")

    def __init__(self, upstream_format: WireFormat, who: str) -> None:
        self.format = upstream_format
        self.who = who
        self.size = 0
        self.pending = b""
        self.fresh = True  # ``pending`` starts the stream (a BOM there is skipped)

    def feed(self, chunk: bytes) -> bool:
        # Only the bytes up to each blank line are parsed: a first chunk that holds the whole
        # answer costs one event's parse, not the stream's.
        self.size += len(chunk)
        pending = self.pending + chunk if self.pending else chunk
        while (cut := _event_end(pending)) is not None:
            event = first_event(pending[:cut[0]], stream_start=self.fresh)
            if event is not None:
                self._check(event)
                return True
            pending, self.fresh = pending[cut[1]:], False
        if self.size > _FIRST_EVENT_LIMIT:
            raise BadUpstreamResponse(f"{self.who} sent {self.size} bytes without a complete stream event")
        self.pending = pending
        return False

    def end(self) -> None:
        event = first_event(self.pending, stream_start=self.fresh)  # some servers omit the last blank line
        if event is not None:
            self._check(event)
            return
        raise BadUpstreamResponse(f"{self.who}'s stream ended before its first event")

    def _check(self, event: Any) -> None:
        if self.format is OPENAI and event.data == "[DONE]":
            raise BadUpstreamResponse(f"{self.who}'s stream ended ([DONE]) before any chunk")
        try:
            data = orjson.loads(event.data)  # the common case, fast
        except orjson.JSONDecodeError:
            data = self._stdlib_json(event.data)  # what orjson refuses, the stdlib decides (a lone surrogate escape)
        if not isinstance(data, dict):
            raise BadUpstreamResponse(f"{self.who}'s stream began with an event that is not a JSON object")
        if "error" in data and (self.format is OPENAI or data.get("type") == "error") or event.event == "error":
            err = data.get("error")
            detail = err.get("message") if isinstance(err, dict) else err
            raise BadUpstreamResponse(f"{self.who}'s stream began with an error event: {str(detail)[:300]}")

    def _stdlib_json(self, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise BadUpstreamResponse(f"{self.who}'s stream began with an event that is not JSON: {text[:80]!r}") from None


# An OpenAI choice that finished: ``"finish_reason":"stop"`` (a string, not null). Raw bytes: inside a
# JSON string the quotes would be escaped, so content never matches.
_FINISHED = (b'"finish_reason":"', b'"finish_reason": "')  # bytes.find for each: a regex search stepped through every byte


class _Passthrough:
    """Same format: bytes go out exactly as they came in; a stream that ends before its terminal
    event is an error (found by scanning line starts, so nothing is parsed). An OpenAI stream whose
    choice finished is whole without ``[DONE]`` too (some self-hosted servers never send it; the
    openai SDK and the translated path accept it)."""

    whole = False  # bytes go out as they come: nothing to finish early (see _OpenAIToAnthropic.whole)

    def __init__(self, upstream_format: WireFormat) -> None:
        self.format = upstream_format
        self.finished = upstream_format is not OPENAI  # an OpenAI choice with its finish_reason seen
        self.tail = b"\n"  # the stream starts at a line start
        self.complete = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self.complete:
            window = self.tail + chunk
            if _has_terminal(window, self.format):
                self.complete = True  # whatever finished before: one scan for a stream read in one piece
            elif not self.finished and (window.find(_FINISHED[0]) != -1 or window.find(_FINISHED[1]) != -1):
                self.finished = True  # whole even if [DONE] never comes
            self.tail = window[-40:]  # a marker split across two chunks (the longest, "\nevent: response.incomplete\r\n", is 30 bytes)
        return [chunk]

    def finish(self) -> list[bytes]:
        if not self.complete and not (self.format is OPENAI and self.finished):
            raise _incomplete(self.format)
        return []


_SEQUENCE = re.compile(rb'"sequence_number": ?(\d+)')


class _ResponsesPassthrough(_Passthrough):
    """A Responses stream passed through. When the client's request is to be stored, the final
    response (the data of its ``response.completed`` or ``response.incomplete`` event) is kept in
    ``response`` for the gateway's store: the bytes from the line where that name first appears
    are kept and read once the stream ends (a bytes.find per chunk until then: the events before
    it are never decoded). Written as most servers write it (one ``event:`` line, one ``data:`` line,
    the response's ``id`` its first key), it is not parsed at all: ``final_event`` holds its id and
    data, for the store to parse if the response is ever read back; anything else is parsed here,
    into ``response``. ``store: false``: nothing is kept. A failure mid-stream ends the stream
    as the API does, numbered after the upstream's last event: ``error``, then ``response.failed``
    (read back from the first and last chunks, kept by reference: only then)."""

    _FINAL = frozenset({"response.completed", "response.incomplete"})
    _MARKERS = (b"response.completed", b"response.incomplete")

    def __init__(self, store: bool) -> None:
        super().__init__(RESPONSES)
        self.store = store
        self.final: list[bytes] | None = None  # the stream from the final event's line on, once seen
        self.before = b""  # the last bytes before this chunk (a name split across two chunks)
        self.response: dict[str, Any] | None = None
        self.final_event: tuple[str, bytes] | None = None  # (response id, the final event's data), unparsed
        self.first = self.last = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self.first:
            self.first = chunk
        self.last = chunk
        if self.store:
            if self.final is not None:
                self.final.append(chunk)
            else:
                window = self.before + chunk if self.before else chunk
                completed, incomplete = self._MARKERS
                at = window.find(completed)
                # the other name counts only before it (the names cannot overlap)
                other = window.find(incomplete) if at == -1 else window.find(incomplete, 0, at)
                if at == -1 or other != -1 and other < at:
                    at = other
                if at != -1:
                    self.final = [window[window.rfind(b"\n", 0, at) + 1:]]
                else:
                    self.before = window[-32:]
        return super().feed(chunk)

    def finish(self) -> list[bytes]:
        out = super().finish()
        if self.final is not None:
            raw = b"".join(self.final)
            one = self._one_event(raw)
            if one is not None and one[0] in self._FINAL and (rid := response_id_of(one[1])) is not None:
                self.final_event = (rid, one[1])
                return out
            for name, data in self._events(raw):
                final = data.get("response") if isinstance(data, dict) and (name or data.get("type")) in self._FINAL else None
                if isinstance(final, dict) and isinstance(final.get("id"), str):
                    self.response = final
        return out

    @staticmethod
    def _one_event(raw: bytes) -> tuple[str, bytes] | None:
        """``raw`` as one event written as one ``event:`` line and one ``data:`` line (most streams):
        its name and data, found by bytes.find (a regex's character class steps through the data
        at tens of instructions a byte); None for anything else."""
        if not raw.startswith(b"event:") or not raw.endswith(b"\n\n") or b"\r" in raw:
            return None
        line = raw.find(b"\n")
        end = len(raw) - 2
        if raw[line + 1:line + 6] != b"data:" or raw.find(b"\n", line + 1, end) != -1:
            return None
        name = raw[7:line] if raw[6:7] == b" " else raw[6:line]
        return name.decode("utf-8", "replace"), raw[line + 7:end] if raw[line + 6:line + 7] == b" " else raw[line + 6:end]

    @classmethod
    def _events(cls, raw: bytes) -> list[tuple[str | None, Any]]:
        """The events of ``raw`` with their data parsed: most streams write each as one ``event:`` and one
        ``data:`` line (``_one_event``); anything else (comments, data split over lines, CR endings)
        goes through the SSE decoder."""
        one = cls._one_event(raw)
        if one is not None:
            pairs: list[tuple[str | None, bytes | str]] = [one]
        else:
            decoder = SSEDecoder()
            pairs = [(ev.event, ev.data) for ev in decoder.feed(raw) + decoder.flush()]
        out: list[tuple[str | None, Any]] = []
        for name, data in pairs:
            try:
                out.append((name, orjson.loads(data)))
            except orjson.JSONDecodeError:
                try:  # what orjson refuses, the stdlib decides (a lone surrogate escape)
                    out.append((name, json.loads(data)))
                except ValueError:
                    continue  # not the final event's data (its name appeared in some text): the final one follows
        return out

    def error_event(self, error_body: dict[str, Any]) -> bytes:
        err = error_body.get("error", error_body)
        code, message = err.get("code") or err.get("type") or "server_error", err.get("message", "")
        numbers = _SEQUENCE.findall(self.last[-4096:])
        at = int(numbers[-1]) + 1 if numbers else 0
        out = encode_json({"type": "error", "code": code, "message": message, "param": None, "sequence_number": at},
                          event="error")
        started = None
        for ev in SSEDecoder().feed(self.first + b"\n\n"):
            if ev.event == "response.created":
                try:
                    started = json.loads(ev.data).get("response")
                except (ValueError, AttributeError):
                    started = None
                break
        if isinstance(started, dict):
            failed = {**started, "status": "failed", "error": {"code": code, "message": message}}
            out += encode_json({"type": "response.failed", "response": failed, "sequence_number": at + 1},
                               event="response.failed")
        return out


_RESPONSE_ID = b'"response":{"id":"'


def response_id_of(data: bytes) -> str | None:
    """The id of the response a Responses stream event's data carries, read without parsing: where
    the ``response`` key is the object's first nested value and the id its first key, as OpenAI
    writes them (``{"type":...,"sequence_number":N,"response":{"id":"resp_...``); None otherwise.
    (A raw ``"`` in JSON always delimits a string: the bytes cannot match inside one.)"""
    at = data.find(_RESPONSE_ID)
    if at == -1 or data[:1] != b"{" or data.find(b"{", 1, at) != -1 or data.find(b"[", 1, at) != -1:
        return None  # not found, or not at the top level
    start = at + len(_RESPONSE_ID)
    end = data.find(b'"', start, start + 257)
    if end <= start or data.find(b"\\", start, end) != -1:
        return None
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        return None


# What a translation raises when an upstream answer is not shaped as its API documents.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def _load(data: str | bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    if isinstance(data, bytes):  # SSEDecoder.data_only's: invalid UTF-8 reads as U+FFFD, as SSEDecoder.feed reads it
        data = data.decode("utf-8", "replace")
    try:  # what orjson refuses, the stdlib decides (a lone surrogate escape is valid JSON)
        return json.loads(data)
    except ValueError as exc:
        raise BadUpstreamResponse("upstream sent a stream event that is not valid JSON") from exc


def _chat_chunks(payloads: list[str] | list[bytes]) -> tuple[list[dict[str, Any]], bool]:
    """An OpenAI stream's event data as its chunks, and whether ``[DONE]`` was among them."""
    chunks: list[dict[str, Any]] = []
    done = False
    for data in payloads:
        if data == "[DONE]" or data == b"[DONE]":
            done = True
            continue
        chunk = _load(data)
        if not isinstance(chunk, dict):
            raise BadUpstreamResponse("upstream sent a stream chunk that is not a JSON object")
        chunks.append(chunk)
    return chunks, done


class _OpenAIToAnthropic:
    """OpenAI chunks from upstream -> Anthropic events for the client."""

    def __init__(self, model: str) -> None:
        self.decoder = SSEDecoder()
        self.convert = anthropic.StreamFromOpenAI(model=model)
        self.complete = False

    def _events(self, payloads: list[str] | list[bytes]) -> list[bytes]:
        chunks, done = _chat_chunks(payloads)
        self.complete = self.complete or done
        out: list[bytes] = []
        try:
            for chunk in chunks:
                out += [encode_json(data, event=name) for name, data in self.convert.feed(chunk)]
        except _SHAPE_ERRORS as exc:
            raise UpstreamError(f"upstream sent a stream chunk in an unexpected shape ({type(exc).__name__})") from exc
        return out

    @property
    def whole(self) -> bool:
        """The upstream's answer is in (its terminal event, or the finish and usage that end the
        client's message): ``finish()`` may be called now, so its events go out in the same write
        as the last ones, and whatever the upstream sends after is not part of the answer."""
        return self.complete or self.convert.stopped

    def feed(self, chunk: bytes) -> list[bytes]:
        payloads = self.decoder.data_only(chunk)  # most reads: no event objects, no decoding
        return self._events(payloads if payloads is not None else [ev.data for ev in self.decoder.feed(chunk)])

    def finish(self) -> list[bytes]:
        out = self._events([ev.data for ev in self.decoder.flush()])
        if not (self.complete or self.convert.stopped):  # stopped: the client's message is whole already
            raise _incomplete(OPENAI)
        return out + [encode_json(data, event=name) for name, data in self.convert.finish()]


class _AnthropicToOpenAI:
    """Anthropic events from upstream -> OpenAI chunks for the client (then ``[DONE]``)."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.decoder = SSEDecoder()
        self.convert = anthropic.StreamToOpenAI(model, created=int(time.time()), include_usage=include_usage)
        self.complete = False

    def _events(self, events: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        for ev in events:
            data = _load(ev.data)
            if not isinstance(data, dict):
                raise BadUpstreamResponse("upstream sent a stream event that is not a JSON object")
            if data.get("type", ev.event) == "message_stop":
                self.complete = True
            try:
                out += [encode_json(chunk) for chunk in self.convert.feed(ev.event or "", data)]
            except _SHAPE_ERRORS as exc:
                raise UpstreamError(f"upstream sent a stream event in an unexpected shape ({type(exc).__name__})") from exc
        return out

    @property
    def whole(self) -> bool:
        """``message_stop`` is in (see _OpenAIToAnthropic.whole)."""
        return self.complete

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._events(self.decoder.feed(chunk))

    def finish(self) -> list[bytes]:
        out = self._events(self.decoder.flush())
        if not self.complete:
            raise _incomplete(ANTHROPIC)
        return out + [encode_json(chunk) for chunk in self.convert.finish()] + [DONE]


class _ToResponses:
    """Chat chunks (from an OpenAI upstream, or an Anthropic one through ``_AnthropicToOpenAI``'s
    converter) -> Responses events for the client; ``final_event``: the id and the JSON data of the
    final event (the whole answer as ``response``) once finished, for the store."""

    def __init__(self, upstream_format: WireFormat, model: str, body: Mapping[str, Any]) -> None:
        self.decoder = SSEDecoder()
        self.upstream_format = upstream_format
        self.pivot = anthropic.StreamToOpenAI(model, created=int(time.time()), include_usage=True) \
            if upstream_format is ANTHROPIC else None
        self.convert = responses.StreamFromChat(dict(body), model=model)
        self.complete = False
        self.response: dict[str, Any] | None = None  # never set: the answer is kept from ``final_event``
        self.final_event: tuple[str, bytes] | None = None  # (response id, the final event's data) once finished

    def _chat(self, payloads: list[str] | list[bytes]) -> list[dict[str, Any]]:
        """A chat upstream's event data as its chunks (``[DONE]`` marks the answer whole)."""
        chunks, done = _chat_chunks(payloads)
        self.complete = self.complete or done
        return chunks

    def _chunks(self, events: list[Any]) -> list[dict[str, Any]]:
        """The chat chunks of ``events``: a chat upstream's as they are, an Anthropic one's through the pivot."""
        if self.pivot is None:
            return self._chat([ev.data for ev in events])
        chunks = []
        for ev in events:
            data = _load(ev.data)
            if not isinstance(data, dict):
                raise BadUpstreamResponse("upstream sent a stream event that is not a JSON object")
            if data.get("type", ev.event) == "message_stop":
                self.complete = True
            chunks += self.pivot.feed(ev.event or "", data)
        return chunks

    def _events(self, chunks: list[dict[str, Any]]) -> list[bytes]:
        out: list[bytes] = []
        try:
            for chunk in chunks:
                event = self.convert.text_delta(chunk)  # most chunks of a long answer: one event, read less
                if event is not None:
                    out.append(event)
                else:
                    out += self.convert.feed(chunk)
        except _SHAPE_ERRORS as exc:
            raise UpstreamError(f"upstream sent a stream chunk in an unexpected shape ({type(exc).__name__})") from exc
        return out

    @property
    def whole(self) -> bool:
        """``[DONE]`` (or an Anthropic upstream's ``message_stop``) is in (see _OpenAIToAnthropic.whole)."""
        return self.complete

    def feed(self, chunk: bytes) -> list[bytes]:
        payloads = self.decoder.data_only(chunk) if self.pivot is None else None  # most reads of a chat stream
        return self._events(self._chat(payloads) if payloads is not None else self._chunks(self.decoder.feed(chunk)))

    def finish(self) -> list[bytes]:
        out = self._events(self._chunks(self.decoder.flush()))
        if self.pivot is not None:
            out += self._events(self.pivot.finish())
        if not (self.complete or self.convert.finish_reason):
            raise _incomplete(self.upstream_format)
        out += self.convert.finish()
        self.final_event = (self.convert.response["id"], self.convert.final_data)  # kept as sent: no second write-out
        return out

    def error_event(self, error_body: dict[str, Any]) -> bytes:
        return b"".join(self.convert.error(error_body))


def stream_adapter(client_format: WireFormat, upstream_format: WireFormat, *, model: str, body: Mapping[str, Any]) -> Any:
    """A fresh per-stream converter with ``feed(bytes) -> list[bytes]`` and ``finish() -> list[bytes]``;
    ``whole`` says when the upstream's answer is in and ``finish()`` may be called before the stream ends.

    ``model`` is the name the client sees; ``body`` the client's request (its ``stream_options``).
    """
    if client_format is upstream_format:
        return _ResponsesPassthrough(body.get("store") is not False) if client_format is RESPONSES else _Passthrough(upstream_format)
    if client_format is RESPONSES:
        return _ToResponses(upstream_format, model, body)
    if client_format is ANTHROPIC:
        return _OpenAIToAnthropic(model)
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return _AnthropicToOpenAI(model, include_usage)
