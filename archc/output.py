"""Text that archc writes survives any Unicode in its input.

Stage: output (the CLI's reports; archc/bundle.py escapes its canonical JSON the same way). Stdlib only.

YAML and JSON configs can carry lone surrogates (``"\\ud800"``, or a surrogate pair escaped as two
halves, which the YAML parser keeps as two lone code points). They are not encodable as UTF-8, so a
diagnostic quoting one, or a route description holding one, must not crash the writer: in JSON they
go out as ``\\uXXXX`` escapes (what JSON itself uses for them), and the CLI's streams escape
whatever their encoding cannot carry (``LANG=C``, ``PYTHONIOENCODING=ascii``).
"""

from __future__ import annotations

import io
import json
import re
import sys
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(value: Any, **kwargs: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **kwargs)``, lone surrogates escaped: always encodable as UTF-8."""
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def safe_streams() -> None:
    """Make stdout and stderr escape what their encoding cannot carry, instead of raising."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
