"""Per-provider upstream data from the bundle: URL, auth headers, wire format. A table, not if/elif.

Stage: provider adapter data (built once in the lifespan). Imports archc.bundle, runtime.errors and
runtime.upstream.egress (proxy and trust per provider) only.
Keys are read from the environment once, at startup; a key never appears in a repr, log or error.
"""

from __future__ import annotations

import re

import ssl
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from archc.bundle import AUTH_API_KEY, AUTH_BEARER, AUTH_NONE, AUTH_X_API_KEY, Bundle, Provider
from runtime.upstream.egress import EgressError, Route, TrustStore, route_for
from runtime.errors import ProviderUnavailable
from runtime.wire import WireFormat

ANTHROPIC_VERSION = "2023-06-01"
ECHO_PROVIDER = "echo"
ECHO_SCHEME = "echo://"

# Auth style -> the header that carries the key (Anthropic: x-api-key; Azure OpenAI: api-key).
_AUTH_HEADER: Mapping[str, Callable[[str], tuple[str, str]]] = {
    AUTH_BEARER: lambda key: ("authorization", f"Bearer {key}"),
    AUTH_X_API_KEY: lambda key: ("x-api-key", key),
    AUTH_API_KEY: lambda key: ("api-key", key),
}

# Wire format -> fixed headers every request to such an upstream carries.
_WIRE_HEADERS: Mapping[WireFormat, tuple[tuple[str, str], ...]] = {
    WireFormat.OPENAI_CHAT: (("content-type", "application/json"),),
    WireFormat.ANTHROPIC_MESSAGES: (("content-type", "application/json"), ("anthropic-version", ANTHROPIC_VERSION)),
    WireFormat.OPENAI_RESPONSES: (("content-type", "application/json"),),
}


@dataclass(frozen=True)
class Target:
    """Where and how to send a request for one bundle provider.

    ``echo``: answered in-process by runtime/upstream/echo.py. ``missing_key``: the name of the unset key
    variable (the provider answers 503 naming it). ``unserved``: compiled but not callable here.
    ``headers`` hold the key, so they stay out of repr. ``route``: the proxy and TLS trust requests
    take (runtime/upstream/egress.py); ``egress_error``: why they cannot be set up (the provider answers 503).
    ``responses``: the same provider at its Responses endpoint (``upstream_format`` OPENAI_RESPONSES), where
    Responses clients are passed through; None when they are translated to this target's format.
    """

    provider: Provider
    upstream_format: WireFormat
    url: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    secret: str | None = field(default=None, repr=False)
    echo: bool = False
    missing_key: str | None = None
    unserved: bool = False
    route: Route = field(default=Route(None, None), repr=False)
    egress_error: str | None = None
    responses: "Target | None" = field(default=None, repr=False, compare=False)

    def for_client(self, client_format: WireFormat) -> "Target":
        """The endpoint a request from ``client_format`` goes to: the Responses one for a Responses client where there is one."""
        if client_format is WireFormat.OPENAI_RESPONSES and self.responses is not None:
            return self.responses
        return self

    @property
    def name(self) -> str:
        return self.provider.name

    def check_usable(self) -> None:
        """Raise ProviderUnavailable (503) when this provider cannot be called."""
        if self.unserved:
            raise ProviderUnavailable(f"provider {self.name!r} ({self.provider.provider}) is not served by this runtime yet")
        if self.egress_error:
            raise ProviderUnavailable(f"provider {self.name!r} cannot be reached as configured: {self.egress_error}")
        if self.missing_key:
            raise ProviderUnavailable(
                f"provider {self.name!r} needs an API key: the environment variable {self.missing_key} is not set "
                "where the gateway runs (or start it with --echo to answer with the built-in echo upstream)"
            )

    def scrub(self, text: str) -> str:
        """``text`` with this provider's key removed (upstream errors sometimes quote it)."""
        return text.replace(self.secret, "[redacted]") if self.secret else text


@dataclass(frozen=True)
class Targets:
    by_name: Mapping[str, Target]
    warnings: tuple[str, ...]
    echoed: tuple[str, ...]  # providers answered by echo because their key is unset (echo mode)

    def __getitem__(self, name: str) -> Target:
        return self.by_name[name]


_ENV_REF = re.compile(r"^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$")


def env_name(value: str) -> str | None:
    """The variable a ``$NAME`` / ``${NAME}`` value refers to (None for plain text)."""
    found = _ENV_REF.match(value)
    return (found.group(1) or found.group(2)) if found else None


def is_echo(provider: Provider) -> bool:
    return provider.provider == ECHO_PROVIDER or provider.endpoint.startswith(ECHO_SCHEME)


def build_targets(bundle: Bundle, env: Mapping[str, str], *, echo_missing: bool = False) -> Targets:
    """One Target per provider; keys read from ``env``. ``echo_missing``: unset keys answer via echo.
    Proxies and trust (runtime/upstream/egress.py) come from ``env`` and the bundle's ``gateway.egress``."""
    targets: dict[str, Target] = {}
    warnings: list[str] = []
    echoed: list[str] = []
    store = TrustStore(env)
    egress_section = (bundle.extensions.get("gateway") or {}).get("egress")
    for p in bundle.providers:
        fmt = WireFormat(p.wire)
        headers = list(_WIRE_HEADERS[fmt])
        if fmt is WireFormat.ANTHROPIC_MESSAGES and p.options.get("anthropic_version"):
            headers = [(k, str(p.options["anthropic_version"]) if k == "anthropic-version" else v) for k, v in headers]
        if is_echo(p):
            targets[p.name] = Target(p, WireFormat.OPENAI_CHAT, p.endpoint, echo=True)
            continue
        key = env.get(p.key_env) if p.key_env and p.auth != AUTH_NONE else None
        missing = p.key_env if (p.key_env and p.auth != AUTH_NONE and not key) else None
        if key and p.auth in _AUTH_HEADER:
            headers.append(_AUTH_HEADER[p.auth](key))
        for option, value in p.options.items():  # the provider's own headers (config ``headers``), $ENV read here
            if isinstance(option, str) and option.startswith("header:") and isinstance(value, str):
                name = env_name(value)
                if name is not None and not env.get(name):
                    missing = missing or name
                    continue
                headers.append((option[len("header:"):], env[name] if name is not None else value))
        if missing and echo_missing:
            echoed.append(p.name)
            targets[p.name] = Target(p, WireFormat.OPENAI_CHAT, ECHO_SCHEME + "local", echo=True)
            continue
        if missing:
            warnings.append(f"provider {p.name!r}: environment variable {missing} is not set; requests for it will get 503")
        if not p.served:
            warnings.append(f"provider {p.name!r} ({p.provider}) is not served by this runtime yet; requests for it will get 503")
        route, egress_error = Route(None, None), None
        try:
            route = route_for(p.endpoint, egress_section, p.options, env, store)
        except EgressError as exc:
            egress_error = str(exc)
            warnings.append(f"provider {p.name!r}: {egress_error}; requests for it will get 503")
        if route.ssl_context is not None and route.ssl_context.verify_mode == ssl.CERT_NONE:
            warnings.append(f"provider {p.name!r}: TLS certificates are NOT verified (verify: false); anyone on the path "
                            "can read and change its traffic, provider key included")
        target = Target(p, fmt, p.endpoint, tuple(headers), key, missing_key=missing, unserved=not p.served,
                        route=route, egress_error=egress_error)
        if p.responses_endpoint and fmt is WireFormat.OPENAI_CHAT:  # same key, proxy and trust; its own URL
            target = replace(target, responses=replace(target, upstream_format=WireFormat.OPENAI_RESPONSES,
                                                       url=p.responses_endpoint))
        targets[p.name] = target
    return Targets(targets, tuple(warnings), tuple(echoed))
