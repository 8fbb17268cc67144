"""Request bytes -> JSON value, as strictly as both APIs define JSON (runtime wire stage; stdlib and
`runtime.errors` only).

`json.loads` is laxer than RFC 8259 in three ways a gateway must not pass on: it decodes UTF-16
and UTF-32 bodies, it reads ``NaN``/``Infinity``/``-Infinity`` (not JSON), and it reads numbers
no upstream can read back (``1e400`` becomes ``inf``, a 400-digit integer stays exact).
``parse_request`` refuses all three with an InvalidRequest naming the JSON path of the value;
the path is found by a second parse, on the error path only. A UTF-8 byte-order mark is skipped.

Parsing takes msgspec's decoder first (a 1 MB agent request: about 0.35 ms against 0.75-0.9 ms
for the strict standard-library parse): it is as strict (UTF-8 only, no NaN/Infinity, ``1e400``
refused) and keeps integers exact, so one orjson write-out checks the 64-bit bound. A body either
of them refuses (a lone surrogate escape, an integer between -2**64 and -2**63, a UTF-8 byte-order
mark, any error) is parsed again by the strict standard-library decoder, which decides and words
the error: the fast path never accepts a body the strict one refuses.

``dumps`` writes compact UTF-8 JSON with orjson (a 1 MB agent request: about 0.1 ms against 2.7 ms
for the standard library), falling back to the standard library for what orjson refuses (a lone
surrogate, an integer beyond 64 bits), so every value the strict parser accepted is written back.
orjson is not the parser: it turns integers beyond 64 bits into floats silently.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import orjson

from runtime.errors import InvalidRequest

__all__ = ["INT_LIMIT", "SAFE_INT", "dumps", "parse_answer", "parse_request"]

# The largest integer every JSON reader keeps exact (a double's 53-bit mantissa; RFC 7493 I-JSON):
# the bound of counts (max_tokens, n, top_k, budget_tokens) unless a field says otherwise.
SAFE_INT = 2**53 - 1
# No upstream's JSON reader keeps an integer beyond 64 bits (Go and Rust read int64/uint64).
INT_LIMIT = 2**64
_INT_DIGITS = len(str(INT_LIMIT))


class _Rejected(Exception):
    """A literal the strict decoder refuses (raised from inside the C scanner's hooks)."""


def _constant(text: str) -> Any:
    raise _Rejected(text)


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: the literal overflows a double
        raise _Rejected(text)
    return value


def _int(text: str) -> int:
    if len(text) < _INT_DIGITS:  # the common case: far from the limit (and from int()'s 4300-digit cap)
        return int(text)
    if len(text) > _INT_DIGITS + 1 or abs(int(text)) > INT_LIMIT:
        raise _Rejected(text)
    return int(text)


_STRICT = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)


class _Marker:
    """Stands for a refused literal in the error-path parse, so its place can be found."""

    def __init__(self, text: str) -> None:
        self.text = text


def _locate_float(text: str) -> Any:
    return _Marker(text) if math.isinf(float(text)) else 0.0


def _locate_int(text: str) -> Any:
    try:
        return _int(text)
    except _Rejected:
        return _Marker(text)


_LOCATE = json.JSONDecoder(parse_constant=_Marker, parse_float=_locate_float, parse_int=_locate_int)


_FAST = msgspec.json.Decoder().decode


def parse_request(body: bytes | bytearray) -> Any:
    """The request body as a JSON value; InvalidRequest (400) when it is not UTF-8 JSON text that
    every upstream reads the same way."""
    try:
        value = _FAST(body)
        orjson.dumps(value)  # refuses integers beyond 64 bits, which msgspec keeps exact
        return value
    except Exception:  # anything the fast pair refuses is the strict parser's to judge and word
        pass
    return _parse_strict(body)


def parse_answer(body: bytes | bytearray) -> Any:
    """An upstream's JSON answer as the standard library reads it (ValueError when it is not JSON):
    msgspec first (integers exact, as the standard library keeps them; several times faster on a
    Responses answer), the standard library for what msgspec refuses (NaN, other encodings, a lone
    surrogate escape), so no answer that parsed before is refused now."""
    try:
        try:
            return _FAST(body)
        except msgspec.DecodeError:
            return json.loads(body)
    except RecursionError as exc:  # nested past either parser's depth: not an answer anyone can read
        raise ValueError("nested too deeply") from exc


def _parse_strict(body: bytes | bytearray) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(_not_utf8(body, f"byte 0x{body[exc.start]:02x} at offset {exc.start} is not UTF-8")) from exc
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return _STRICT.decode(text)
    except _Rejected as exc:
        raise InvalidRequest(_refused(text, str(exc)), code="invalid_request") from None
    except json.JSONDecodeError as exc:
        if "\x00" in text:  # UTF-16/32 without a byte-order mark is valid UTF-8, full of NUL bytes
            raise InvalidRequest(_not_utf8(body, "it holds NUL bytes")) from exc
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise InvalidRequest("request body is nested too deeply") from exc


def _not_utf8(body: bytes | bytearray, why: str) -> str:
    encoding = json.detect_encoding(bytes(body[:4]))
    if encoding.startswith(("utf-16", "utf-32")):
        why = f"it looks like {encoding.upper()}"
    return f"request body must be UTF-8 JSON text; {why}"


def _refused(text: str, literal: str) -> str:
    try:
        path = _path_of_marker(_LOCATE.decode(text))
    except (json.JSONDecodeError, RecursionError):  # the text breaks after the literal: no path to name
        path = None
    where = f"{path}: " if path else "request body: "
    if literal in ("NaN", "Infinity", "-Infinity"):
        return f"{where}expected a finite number, got {literal} (not a JSON value)"
    shown = literal if len(literal) <= 40 else f"{literal[:20]}...({len(literal)} characters)"
    if "." in literal or "e" in literal or "E" in literal:
        return f"{where}number {shown} is out of range (it overflows a 64-bit float)"
    return f"{where}integer {shown} is out of range (at most 2**64 in magnitude)"


def _path_of_marker(value: Any, path: str = "") -> str | None:
    """The JSON path (``messages[0].content``) of the first refused literal in ``value``."""
    if isinstance(value, _Marker):
        return path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _path_of_marker(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _path_of_marker(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


_STDLIB = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (no spaces, non-ASCII as is)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, an integer past 64 bits, a non-str key
        pass
    try:
        return _STDLIB.encode(value).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (a valid JSON escape, not encodable as UTF-8): escape it
        return json.dumps(value, separators=(",", ":")).encode("ascii")
