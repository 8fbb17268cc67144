"""Small shape checks shared by the wire modules' ``validate_request`` (runtime, wire stage).

Imports only the stdlib and `runtime.errors`. Every failure is an InvalidRequest naming the JSON path.
Checks of list items report paths relative to the item (``""``, ``".text"``); ``each`` puts the
item's own path in front when one fails, so no path string is built for the items that pass.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, NoReturn

from runtime.errors import InvalidRequest
from runtime.wire.json_text import SAFE_INT

JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}


class _Missing:
    """Stands for an absent key, so ``string(body.get(k, MISSING), path)`` reports "missing"."""

    def __repr__(self) -> str:
        return "missing"


MISSING: Any = _Missing()


def fail(path: str, message: str) -> NoReturn:
    raise InvalidRequest(f"{path}: {message}", code="invalid_request")


def each(items: list[Any], path: str, check: Callable[..., None], *args: Any) -> None:
    """``check(item, *args)`` for every item; a failure (its path relative to the item) is raised
    again with ``path[i]`` in front."""
    for i, item in enumerate(items):
        try:
            check(item, *args)
        except InvalidRequest as exc:
            raise InvalidRequest(f"{path}[{i}]{exc.message}", code=exc.code) from None


def kind(value: Any) -> str:
    """The JSON name of ``value``'s type, for messages like 'expected string, got array'."""
    return JSON_TYPES.get(type(value), type(value).__name__)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def obj(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, dict):  # the common case first
        return value
    if value is MISSING:
        fail(path, "missing (expected object)")
    fail(path, f"expected object, got {kind(value)}")


def array(value: Any, path: str, *, non_empty: bool = False) -> list[Any]:
    if isinstance(value, list) and (value or not non_empty):
        return value
    if value is MISSING:
        fail(path, "missing (expected array)")
    if not isinstance(value, list):
        fail(path, f"expected array, got {kind(value)}")
    fail(path, "expected a non-empty array")


def string(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    if value is MISSING:
        fail(path, "missing (expected string)")
    fail(path, f"expected string, got {kind(value)}")


def opt_string(body: dict[str, Any], key: str, path: str) -> None:
    if body.get(key) is not None:
        string(body[key], f"{path}{key}")


def opt_bool(body: dict[str, Any], key: str, path: str) -> None:
    if body.get(key) is not None and not isinstance(body[key], bool):
        fail(f"{path}{key}", f"expected boolean, got {kind(body[key])}")


def opt_object(body: dict[str, Any], key: str, path: str) -> None:
    if body.get(key) is not None:
        obj(body[key], f"{path}{key}")


INT64 = (-(2**63), 2**63 - 1)


def opt_int(body: dict[str, Any], key: str, path: str, *, minimum: int | None = None, maximum: int = SAFE_INT) -> None:
    value = body.get(key)
    if value is None:
        return
    if not is_int(value):
        fail(f"{path}{key}", f"expected integer, got {kind(value)}")
    if minimum is not None and value < minimum:
        fail(f"{path}{key}", f"expected an integer >= {minimum}, got {value}")
    if value > maximum:  # the value itself is not echoed: it may have hundreds of digits
        fail(f"{path}{key}", f"expected an integer <= {maximum}, got a larger one")
    if minimum is None and value < -maximum - 1:
        fail(f"{path}{key}", f"expected an integer >= {-maximum - 1}, got a smaller one")


def opt_number(body: dict[str, Any], key: str, path: str, *, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if not is_number(value):
        if isinstance(value, float):  # NaN or an infinity (the strict request parser refuses them first)
            fail(f"{path}{key}", f"expected a finite number, got {value}")
        fail(f"{path}{key}", f"expected number, got {kind(value)}")
    if not low <= value <= high:
        fail(f"{path}{key}", f"expected a number between {low:g} and {high:g}, got {value}")


def one_of(value: Any, allowed: Iterable[str], path: str) -> str:
    if isinstance(value, str) and isinstance(allowed, tuple) and value in allowed:  # the common case first
        return value
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        shown = value if isinstance(value, str) else kind(value)
        fail(path, f"expected one of {', '.join(repr(a) for a in allowed)}, got {shown!r}")
    return value
