"""Claude Code's status line command: session JSON on stdin, one line about the routing decision out.

CLI entry of its own (`python -m archc.statusline`, also `archc statusline`): Claude Code runs it
after every message, so it imports the standard library only, not the whole CLI (over 1 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Sequence

DEFAULT_URL = "http://127.0.0.1:12000"
MAX_SESSION_ID_LENGTH = 128


def open_url(url: str, timeout: float) -> Any:
    # The gateway is addressed directly: an inherited HTTP proxy setting must not capture it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(urllib.request.Request(url, headers={"accept": "application/json"}), timeout=timeout)


def get_json(url: str, timeout: float) -> Any:
    with open_url(url, timeout) as resp:
        return json.loads(resp.read())


def answers(url: str, timeout: float) -> bool:
    """Whether GET ``url`` answers 2xx within ``timeout``."""
    try:
        with open_url(url, timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def format_status(status: dict[str, Any]) -> str:
    """One line from the gateway's session JSON: ``route → provider/model (router ms, cache hit/miss)``."""
    route = status.get("route") or f"fallback:{status.get('fallback') or 'none'}"
    provider, model = status.get("provider"), status.get("model")
    if provider and model and not str(model).startswith(f"{provider}/"):
        target = f"{provider}/{model}"
    else:
        target = str(model or provider or "?")
    try:
        ms = float(status.get("router_ms") or 0.0)
    except (TypeError, ValueError):
        ms = 0.0
    shown = f"{ms:.0f}" if ms >= 10 else f"{ms:.1f}"
    cache = "cache hit" if status.get("cache_hit") else "cache miss"
    return f"{route} → {target} ({shown} ms, {cache})"


def statusline_text(url: str, session_id: str | None, timeout: float = 1.0) -> str:
    """``route → provider/model (router ms, cache hit/miss)`` for the session, or why not."""
    if not session_id or len(session_id) > MAX_SESSION_ID_LENGTH:
        return "archc: no session yet"
    try:
        status = get_json(f"{url}/v1/arch/sessions/{urllib.parse.quote(session_id, safe='')}", timeout)
    except urllib.error.HTTPError as exc:
        return "archc: no routing decision yet" if exc.code == 404 else f"archc: gateway answered {exc.code}"
    except (urllib.error.URLError, OSError, ValueError):
        return f"archc: gateway unreachable at {url}"
    return format_status(status) if isinstance(status, dict) else "archc: unexpected gateway answer"


def text_for_input(raw: str, url: str, timeout: float = 1.0) -> str:
    """The line for Claude Code's status JSON ``raw`` (it carries ``session_id``)."""
    try:
        payload = json.loads(raw or "{}")
    except ValueError:
        payload = None
    session_id = payload.get("session_id") if isinstance(payload, dict) else None
    return statusline_text(url.rstrip("/"), session_id if isinstance(session_id, str) else None, timeout)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"gateway base URL (default {DEFAULT_URL})")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for the gateway (default 1)")


def main(argv: Sequence[str] | None = None) -> int:
    """Print one line and exit 0 whatever happens: a failing command blanks Claude Code's status line."""
    parser = argparse.ArgumentParser(prog="archc statusline", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        raw = sys.stdin.read()
    except (OSError, UnicodeDecodeError):
        raw = ""
    print(text_for_input(raw, args.url, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
