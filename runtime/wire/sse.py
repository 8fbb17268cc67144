"""Server-sent events: bytes <-> events, shared by every wire format (runtime, no I/O).

Imports the stdlib and runtime.wire.json_text (compact JSON). Parsing follows the WHATWG "event stream interpretation" rules.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any

from runtime.wire.json_text import dumps

__all__ = ["DONE", "SSEDecoder", "SSEEvent", "encode_event", "encode_json", "first_event"]

DONE = b"data: [DONE]\n\n"
"""The OpenAI end-of-stream sentinel."""

# Lines end in CRLF, LF or CR (WHATWG HTML, "Parsing an event stream").
_LINE_END = re.compile(r"\r\n|\r|\n")
_LINE_END_BYTES = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
_UTF8 = codecs.getincrementaldecoder("utf-8")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: ``event`` is the ``event:`` field (None when absent), ``data`` the
    ``data:`` lines joined by "\\n", ``id`` the last ``id:`` field seen (None when never set)."""

    event: str | None
    data: str
    id: str | None = None


class SSEDecoder:
    """Incremental SSE parser: ``feed`` bytes as they arrive, ``flush`` once at end of stream.

    Events split across chunks, multi-byte UTF-8 characters split across chunks, any of the
    three line endings (including a CRLF split between two chunks), comments, multi-line
    ``data:`` and ``event:``/``id:`` fields are handled. ``retry:`` and unknown fields are ignored.
    """

    __slots__ = ("_decoder", "_buf", "_parts", "_cr", "_event", "_data", "_id", "_started")

    def __init__(self) -> None:
        self._decoder: Any = None  # the incremental UTF-8 decoder, made by the first ``feed`` (``data_only`` needs none)
        self._buf = ""
        self._parts: list[str] = []
        self._cr = False  # the text so far ended in "\r": a leading "\n" next belongs to it
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse ``chunk`` and return the events it completes (possibly none)."""
        if self._decoder is None:
            self._decoder = _UTF8(errors="replace")
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):  # a leading BOM is skipped (WHATWG)
                text = text[1:]
        if self._cr and text.startswith("\n"):
            text = text[1:]
        if not text:
            return []
        self._cr = text.endswith("\r")
        if not (self._buf or self._parts or self._data or self._event is not None) and text.endswith("\n\n") \
                and "\r" not in text:
            # Whole events only, nothing pending (most upstream reads): if each is one "data: " line,
            # they are read by one split, not line by line.
            blocks = text[:-2].split("\n\n")
            if all(block[:6] == "data: " and "\n" not in block for block in blocks):
                return [SSEEvent(None, block[6:], self._id) for block in blocks]
        if "\n" not in text and "\r" not in text:
            self._parts.append(text)  # a long line in many chunks: join once, not per chunk
            return []
        if self._parts:
            self._buf += "".join(self._parts)
            self._parts.clear()
        joined = self._buf + text
        # No CR (most streams): str.split, in C; the regex steps through every character.
        lines = joined.split("\n") if "\r" not in joined else _LINE_END.split(joined)
        self._buf = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            self._line(line, events)
        return events

    def data_only(self, chunk: bytes) -> list[bytes] | None:
        """The data of ``chunk``'s events when nothing is pending and ``chunk`` is whole events of one
        ``data: `` line each, LF-ended (most reads of an OpenAI stream), as bytes, without decoding
        them or building events; None for anything else (``feed`` it). Invalid UTF-8 is left as is:
        where ``feed`` would replace it, the caller decides (adapt._load)."""
        if chunk[-2:] != b"\n\n" or b"\r" in chunk or self._buf or self._parts or self._data or self._event is not None \
                or (self._decoder is not None and self._decoder.getstate()[0]):
            return None
        blocks = chunk[:-2].split(b"\n\n")
        for block in blocks:
            if block[:6] != b"data: " or b"\n" in block:
                return None
        self._started = True  # a BOM is one only at the stream's start, as ``feed`` reads it
        return [block[6:] for block in blocks]

    def flush(self) -> list[SSEEvent]:
        """End of stream: the unterminated last line and a pending event (even without its blank
        line, which some servers omit) are delivered."""
        if self._decoder is None:  # only data_only read this stream: nothing is pending
            return []
        events: list[SSEEvent] = []
        tail = self._buf + "".join(self._parts) + self._decoder.decode(b"", final=True)
        self._buf = ""
        self._parts.clear()
        if tail:
            for line in _LINE_END.split(tail):
                self._line(line, events)
        self._line("", events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(self._event, "\n".join(self._data), self._id))
            self._data = []
            self._event = None
            return
        if line[0] == ":":
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value


def first_event(block: bytes, *, stream_start: bool = False) -> SSEEvent | None:
    """The first event that whole lines ``block`` dispatch (a blank line, or the block's end, ends
    an event), or None when they hold only comments and fields without data. What SSEDecoder
    gives for the same bytes, without its incremental state: for judging a stream's start.
    ``stream_start``: ``block`` opens the stream (a leading BOM is skipped)."""
    if stream_start and block.startswith(_BOM):
        block = block[3:]
    if block.startswith(b"data:") and b"\n" not in block and b"\r" not in block:  # one data line: most first events
        value = block[6:] if block[5:6] == b" " else block[5:]
        return SSEEvent(None, value.decode("utf-8", "replace"), None)
    if block.startswith(b"event:") and b"\r" not in block:  # one event line and one data line: the rest
        line = block.find(b"\n")
        if line != -1 and block.startswith(b"data:", line + 1) and block.find(b"\n", line + 1) == -1:
            name = block[7:line] if block[6:7] == b" " else block[6:line]
            value = block[line + 7:] if block[line + 6:line + 7] == b" " else block[line + 6:]
            return SSEEvent(name.decode("utf-8", "replace"), value.decode("utf-8", "replace"), None)
    event: str | None = None
    data: list[str] = []
    last_id: str | None = None
    for raw in block.split(b"\n") if b"\r" not in block else _LINE_END_BYTES.split(block):  # no CR: split by bytes
        if not raw:
            if data:
                break
            event = None
            continue
        if raw[:1] == b":":
            continue
        name, sep, value = raw.decode("utf-8", "replace").partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
    return SSEEvent(event, "\n".join(data), last_id) if data else None


def encode_event(data: str, event: str | None = None) -> bytes:
    """One SSE event as bytes: ``event: X`` (when given), one ``data:`` line per line of ``data``."""
    if event is not None and _LINE_END.search(event):
        raise ValueError("an SSE event name cannot contain a line break")
    head = f"event: {event}\n" if event is not None else ""
    body = "".join(f"data: {part}\n" for part in _LINE_END.split(data))
    return f"{head}{body}\n".encode("utf-8")


_HEADS: dict[str, bytes] = {}  # event name -> its checked "event: NAME\ndata: " (a stream's few names, over and over)


def encode_json(obj: Any, event: str | None = None) -> bytes:
    """``obj`` as compact JSON in one SSE event (compact JSON has no raw line breaks)."""
    if event is None:
        return b"data: " + dumps(obj) + b"\n\n"
    head = _HEADS.get(event)
    if head is None:
        if _LINE_END.search(event):
            raise ValueError("an SSE event name cannot contain a line break")
        head = b"event: " + event.encode("utf-8") + b"\ndata: "
        if len(_HEADS) < 256:  # names come from the code, but stay bounded whatever calls this
            _HEADS[event] = head
    return head + dumps(obj) + b"\n\n"
