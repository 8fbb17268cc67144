"""Gateway keys: who may call the gateway. Pure ASGI middleware plus a key store.

Stage: runtime, outermost request check. Imports archc.bundle (via the caller), runtime.errors,
runtime.wire and the standard library; no starlette. Keys are compared in constant time and
never logged, stored or echoed: the store keeps sha256 digests only.

Config (``gateway.keys`` in the archc config)::

    gateway:
      require_keys: true            # default: true when keys are listed, false otherwise
      keys:
        - name: team-a
          sha256: 9f86d08...        # hex digest of the key (``archc`` never sees the key)
        - name: ci
          key_env: ARCHC_KEY_CI     # the key itself, read from this variable at start/reload

Clients present ``Authorization: Bearer <key>`` (OpenAI SDK, Claude Code) or ``x-api-key: <key>``
(Anthropic SDK). The matched key's *name* goes to ``scope["state"]["gateway_key"]`` for per-key
rate limits and the access log.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from runtime.http.asgi import ASGIApp, Receive, Scope, Send, format_for_path, request_state, send_error
from runtime.errors import Unauthorized
from runtime.settings import env_name as settings_env_name

LOG = logging.getLogger("archc.auth")

# Paths any caller may reach without a key: liveness probes and the API description.
PUBLIC_PATHS = frozenset({"/health", "/healthz", "/readyz", "/openapi.json", "/metrics"})


class KeyConfigError(ValueError):
    """A ``gateway.keys`` entry that cannot be used (message names the entry, never a key)."""


@dataclass(frozen=True)
class GatewayKey:
    name: str
    digest: bytes  # sha256 of the key bytes


class KeyStore:
    """The accepted keys, as sha256 digests; ``match`` is constant-time over every entry."""

    def __init__(self, keys: Iterable[GatewayKey], *, required: bool) -> None:
        self.keys = tuple(keys)
        self.required = required

    @classmethod
    def from_gateway(cls, gateway: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> "KeyStore":
        """Build from ``bundle.extensions["gateway"]``; env references are read from ``env`` (default os.environ)."""
        gateway = gateway or {}
        env = os.environ if env is None else env
        keys: list[GatewayKey] = []
        entries = gateway.get("keys") or []
        for i, entry in enumerate(entries):
            name = str(entry.get("name") or f"key{i}")
            env_name = settings_env_name(entry.get("key_env") or entry.get("env"))
            if entry.get("sha256"):
                hexdigest = str(entry["sha256"]).strip().lower().removeprefix("sha256:")
                try:
                    digest = bytes.fromhex(hexdigest)
                except ValueError as exc:
                    raise KeyConfigError(f"gateway.keys[{i}] ({name}): sha256 is not hex") from exc
                if len(digest) != 32:
                    raise KeyConfigError(f"gateway.keys[{i}] ({name}): sha256 must be 64 hex digits")
                keys.append(GatewayKey(name, digest))
            elif env_name:
                value = env.get(env_name)
                if not value:
                    # Fail closed for this key only: the others keep working.
                    LOG.warning("gateway key %r disabled: environment variable %s is unset", name, env_name)
                    continue
                keys.append(GatewayKey(name, hashlib.sha256(value.encode("utf-8")).digest()))
            else:
                raise KeyConfigError(f"gateway.keys[{i}] ({name}): give either sha256 or key_env")
        required = gateway.get("require_keys")
        if required is None:
            required = bool(entries)
        return cls(keys, required=bool(required))

    def match(self, presented: Iterable[str]) -> str | None:
        """The name of the key matching any presented credential, else None (no early exit)."""
        found: str | None = None
        for candidate in presented:
            digest = hashlib.sha256(candidate.encode("utf-8", "surrogateescape")).digest()
            for key in self.keys:
                if hmac.compare_digest(digest, key.digest) and found is None:
                    found = key.name
        return found


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` and ``localhost``: only this machine can connect."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure(host: str, port: int, gateway: Mapping[str, Any] | None, allow_unauthenticated: bool) -> tuple[str | None, str | None]:
    """(refusal, warning) for listening on ``host`` (Redis's protected mode is the model).

    A listener that is not loopback, with no gateway keys required, lets anyone who reaches the port
    spend the provider keys: refused unless the config says ``gateway.require_keys: false`` or the
    operator passes ``--allow-unauthenticated``; then one warning says who can call it."""
    if is_loopback(host):
        return None, None
    section = gateway or {}
    required = section.get("require_keys")
    if required is None:
        required = bool(section.get("keys"))
    if required:
        return None, None
    where = f"{host}:{port}"
    if section.get("require_keys") is False or allow_unauthenticated:
        why = "gateway.require_keys: false" if section.get("require_keys") is False else "--allow-unauthenticated"
        return None, (f"listening on {where} without gateway keys ({why}): anyone who can reach this port can call "
                      "the gateway and spend its provider keys")
    return (f"refusing to listen on {where} without gateway keys: anyone who could reach the port would spend the "
            "provider keys. Add gateway.keys to the config, listen on 127.0.0.1, or say so explicitly with "
            "gateway.require_keys: false or --allow-unauthenticated"), None


def presented_credentials(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The credentials a request carries: the Bearer token, then x-api-key (either may be absent)."""
    bearer: list[str] = []
    api_key: list[str] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name == "authorization":
            scheme, _, token = raw_value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer.append(token.strip())
        elif name == "x-api-key":
            token = raw_value.decode("latin-1").strip()
            if token:
                api_key.append(token)
    return bearer + api_key


class GatewayKeyMiddleware:
    """Rejects requests without a valid gateway key with 401 in the client's format.

    ``get_store(scope)`` returns the current KeyStore (it changes on hot reload) or None (off).
    """

    def __init__(self, app: ASGIApp, get_store: Callable[[Scope], KeyStore | None]) -> None:
        self.app = app
        self.get_store = get_store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        store = self.get_store(scope)
        if store is None or not store.required or scope.get("path", "") in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        presented = presented_credentials(scope.get("headers") or ())
        client_format = format_for_path(scope.get("path", ""))
        if not presented:
            error = Unauthorized(
                "missing gateway key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                headers={"www-authenticate": 'Bearer realm="archc"'},
                code="missing_api_key",
            )
            await send_error(send, error, client_format)
            return
        name = store.match(presented)
        if name is None:
            error = Unauthorized(
                "invalid gateway key", headers={"www-authenticate": 'Bearer realm="archc"'}, code="invalid_api_key"
            )
            await send_error(send, error, client_format)
            return
        request_state(scope).key_name = name
        await self.app(scope, receive, send)
